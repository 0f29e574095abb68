"""The CSTA model: one module for every switch of :class:`~csta_lib.config.ModelConfig`.

The forward pass is specified step by step on the book's method page (book/method.md, sections
method-stacking to method-classifier).

Forward pass of one video, features X of shape (T, 1024) (D = the backbone's width, T' = T+1 with the
CLS token, else T):

1. E: three identical channels of X, each with its own learnable CLS row prepended (3, T', 1024).
2. Key image K = key_embedding(E) (or E), fed as one 3-channel image of height T' to the CNN trunk;
   the trunk's map is resized to T' rows: A = CNN(K) (T', D).
3. Attention logits: A (+ K[channel 0] for the KC skip, then the norm), optionally scaled, plus the
   positional encoding.
4. Softmax over time (A_T, per column) and/or over D (A_D, per row), attention dropout.
5. V = value_embedding(E[0]) (or E[0]; or A for the direct-CNN models); M = V⊙A_T + V⊙A_D.
6. T' -> T rows by the official adaptive average pool (row i = mean of rows i and i+1), classifier
   Linear -> ReLU -> Dropout -> LayerNorm -> Linear -> sigmoid (or a mean over D): (T,) scores.

Speed without changing results: the three channels differ only in their CLS rows, so the key embedding
runs once on channel 0 and on the three CLS rows, and is expanded; no module is built in ``forward``;
the trunk's classifier and GoogLeNet's aux heads never run; the trunk's faster path is described in
:mod:`csta_lib.backbones` (fused inception 1x1s, the stem's input gradient, a matrix-product resize to T'
rows); the T'->T pool is a mean of neighbouring rows and the value embedding of the CLS row runs apart
(same sums). :meth:`CSTA.forward_as_specified` computes the key
embedding on all three channels and runs the trunk module by module with the official pooling layer
(used by the MAC counter and by tests).

Short videos: the GoogLeNet trunk needs 15 input rows. Shorter key images are replicate-padded (last
row repeated) for the trunk only, whose output is resized to the padded height and cut back to the
first T' rows; everything else sees the true T' rows. Every T the official code accepts gives the
official outputs unchanged.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from csta_lib.backbones import EqualChannels, Trunk, load_weights_into
from csta_lib.config import INPUT_DIM, ModelConfig, backbone_spec, get_config
from csta_lib.errors import CstaInputError, DataFormatError

PE_MAX_LEN = 5000


# ---------------------------------------------------------------------------------------------------
# Building blocks


def sinusoidal_table(max_len: int, dim: int) -> torch.Tensor:
    """Fixed absolute sinusoidal table (Vaswani): pe[p, 2i] = sin(p/10000^(2i/dim)), pe[p, 2i+1] = cos(...)."""
    position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(max_len, dim)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term[: dim // 2])
    return table


def relative_table(rows: int, dim: int) -> torch.Tensor:
    """The official "RPE" table (method page, section method-positional): r = j - i + (rows-1),
    d = rows + dim; even rows get sin(r / 10000^((i+j)/d)), odd rows cos(...); rows are filled in pairs,
    so the last row of an odd count stays 0. ``dim=1`` is the shape-"T" variant (j = 0, broadcast over D)."""
    i = torch.arange(rows, dtype=torch.float).unsqueeze(1)
    j = torch.arange(dim, dtype=torch.float).unsqueeze(0)
    angle = (j - i + (rows - 1)) / torch.pow(10000.0, (i + j) / (rows + dim))
    table = torch.where((torch.arange(rows) % 2 == 0).unsqueeze(1), torch.sin(angle), torch.cos(angle))
    if rows % 2 == 1:
        table[-1] = 0.0
    return table


def pool_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """The official ``AdaptiveAvgPool`` over rows (n, ...) -> (rows, ...); n = rows+1 gives (x[i]+x[i+1])/2."""
    if x.shape[0] == rows:
        return x
    if x.shape[0] == rows + 1:  # the CLS case: the same sums and division as the pooling kernel, cheaper
        return (x[:-1] + x[1:]) / 2
    flat = x.reshape(x.shape[0], -1).transpose(0, 1).unsqueeze(0)  # (1, C, n)
    return F.adaptive_avg_pool1d(flat, rows)[0].transpose(0, 1).reshape(rows, *x.shape[1:])


class PositionalEncoding(nn.Module):
    """The official positional encodings: FPE (fixed sinusoidal), LPE (learned), RPE, CPE (conv1d)."""

    def __init__(self, kind: str, shape: str, dim: int) -> None:
        super().__init__()
        self.kind = kind
        width = dim if shape == "TD" else 1
        self.width = width
        if kind == "FPE":
            # shape "T": div_term is exp(0) = 1, so every position gets sin(p) broadcast over D.
            # Computed on the CPU, then put where the model is being built: on the meta device (checkpoints
            # are loaded by building there) torch.arange goes through decompositions that import
            # torch._dynamo, about 1.3 s of a 2-core CPU, the longest part of loading a checkpoint.
            with torch.device("cpu"):
                if width > 1:
                    table = sinusoidal_table(PE_MAX_LEN, width)
                else:
                    table = torch.sin(torch.arange(PE_MAX_LEN, dtype=torch.float)).unsqueeze(1)
            self.register_buffer("table", table.to(torch.get_default_device()))
        elif kind == "LPE":
            self.table = nn.Parameter(torch.randn(PE_MAX_LEN, width))
        elif kind == "CPE":
            self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1, groups=1 if shape == "TD" else dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the encoding to a (rows, D) map."""
        rows = x.shape[0]
        if rows > PE_MAX_LEN:
            raise CstaInputError(f"{rows} rows exceed the positional encoding's maximum length {PE_MAX_LEN}")
        if self.kind in ("FPE", "LPE"):
            return x + self.table[:rows]
        if self.kind == "RPE":
            return x + relative_table(rows, self.width).to(x)
        return x + self.conv(x.transpose(0, 1).unsqueeze(0))[0].transpose(0, 1)

    def forward_on_input(self, e: torch.Tensor) -> torch.Tensor:
        """The official "Transformer" way on the (3, T', 1024) input. Reproduces the official bug
        (method page, section method-positional): FPE/LPE/RPE index by the leading axis of a 4-D tensor,
        i.e. use position 0 only."""
        if self.kind in ("FPE", "LPE"):
            return e + self.table[:1]
        if self.kind == "RPE":
            return e + relative_table(1, self.width).to(e)
        return torch.stack([self.forward(channel) for channel in e])


class ScoreClassifier(nn.Module):
    """Eq. 7-8: Linear -> ReLU -> Dropout -> LayerNorm(eps 1e-6) -> Linear(D, 1) -> sigmoid."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.hidden = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.output = nn.Linear(dim, 1)
        for linear in (self.hidden, self.output):  # the official init (method page, method-classifier)
            nn.init.xavier_uniform_(linear.weight, gain=math.sqrt(2.0))
            nn.init.constant_(linear.bias, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(self.dropout(F.relu(self.hidden(x))))
        return torch.sigmoid(self.output(hidden)).squeeze(-1)


# ---------------------------------------------------------------------------------------------------
# The model


def validate_features(features: Any) -> torch.Tensor:
    """Check one video's features before any layer runs; raise :class:`CstaInputError` naming the problem."""
    if not isinstance(features, torch.Tensor):
        raise CstaInputError(
            f"features must be a torch.Tensor of shape (T, {INPUT_DIM}), got {type(features).__name__}"
        )
    if not features.is_floating_point():
        raise CstaInputError(f"features must be a floating-point tensor, got dtype {features.dtype}")
    if features.dim() != 2:
        raise CstaInputError(f"features must be 2-D (T, {INPUT_DIM}) for one video, got shape {tuple(features.shape)}")
    if features.shape[1] != INPUT_DIM:
        raise CstaInputError(f"features must be {INPUT_DIM} wide (GoogLeNet pool5), got shape {tuple(features.shape)}")
    if features.shape[0] < 1:
        raise CstaInputError("features are empty: a video needs at least one step (T >= 1), got T = 0")
    if features.shape[0] > PE_MAX_LEN:
        raise CstaInputError(f"features have T = {features.shape[0]} steps; at most {PE_MAX_LEN} are supported")
    if features.device.type != "meta" and not bool(torch.isfinite(features).all()):  # meta: shapes, no values
        bad = int((~torch.isfinite(features)).any(dim=1).nonzero()[0, 0])
        raise CstaInputError(f"features contain NaN or infinite values (first at step {bad})")
    return features


class CSTA(nn.Module):
    """CSTA for one video: ``model(features (T, 1024)) -> scores (T,)``; see the module docstring."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.cnn = Trunk(config.backbone, config.cnn_resize)
        self.cls_token = nn.Parameter(torch.zeros(3, INPUT_DIM)) if config.cls_token else None
        self.input_projection = (
            nn.Linear(INPUT_DIM, INPUT_DIM) if config.positional_encoding_way == "Transformer" else None
        )
        self.key_embedding = nn.Linear(INPUT_DIM, dim) if config.embeds_key else None
        self.value_embedding = (
            nn.Linear(INPUT_DIM, dim) if config.embeds_value and config.value_source == "input" else None
        )
        self.skip_norm: nn.Module | None = None
        if config.has_skip_norm:
            self.skip_norm = nn.BatchNorm2d(1) if config.skip_norm == "batchnorm" else nn.LayerNorm(dim)
        self.positional_encoding = (
            PositionalEncoding(config.positional_encoding, config.positional_encoding_shape, dim)
            if config.positional_encoding
            else None
        )
        self.attention_dropout = nn.Dropout(config.attention_dropout_rate) if config.attention_dropout else None
        self.classifier = ScoreClassifier(dim, config.classifier_dropout) if config.classifier else None

    # -- pieces ---------------------------------------------------------------------------------

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip_norm is None:
            return x
        if isinstance(self.skip_norm, nn.BatchNorm2d):  # one "image" of one channel: the whole map
            return self.skip_norm(x[None, None])[0, 0]
        return self.skip_norm(x)

    def _input_channels(self, features: torch.Tensor) -> torch.Tensor:
        """E as specified: (3, T', 1024), for the Transformer way and the literal forward."""
        x = features
        if self.input_projection is not None:
            x = self.input_projection(x)
        e = x.unsqueeze(0).expand(3, -1, -1)
        if self.cls_token is not None:
            e = torch.cat([self.cls_token.unsqueeze(1), e], dim=1)
        if self.input_projection is not None:
            if self.positional_encoding is not None:
                e = self.positional_encoding.forward_on_input(e)
            if self.attention_dropout is not None:
                e = self.attention_dropout(e)
        return e

    def _key_image_fast(self, features: torch.Tensor) -> tuple[EqualChannels, torch.Tensor, torch.Tensor]:
        """(key image, its channel 0 (T', Dk), input channel 0 (T', 1024)) using that the channels differ only
        in their CLS rows: the key embedding runs once, and the trunk sees the image as one channel."""
        body = self.key_embedding(features) if self.key_embedding is not None else features
        if self.cls_token is None:
            return EqualChannels(body), body, features
        cls = self.key_embedding(self.cls_token) if self.key_embedding is not None else self.cls_token
        return (EqualChannels(body, cls), torch.cat([cls[:1], body]),
                torch.cat([self.cls_token[:1], features], dim=0))

    def _key_image_literal(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = self._input_channels(features)
        key = self.key_embedding(e) if self.key_embedding is not None else e
        return key.unsqueeze(0), key[0], e[0]

    # -- forward --------------------------------------------------------------------------------

    def forward(
        self, features: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scores (T,) for one video's features (T, 1024), T >= 1 (any T; short videos: module docstring).

        With ``return_attention=True`` also a dict of (T', D) tensors (T' = T+1 with the CLS token,
        else T; T when ``cls_pool`` pools earlier): ``attention_logits`` (after skip, norm, scale and
        positional encoding), ``temporal_attention`` (softmax over rows, each column sums to 1),
        ``spatial_attention`` (softmax over D, each row sums to 1) and ``mixed_features`` (M, before
        the T'->T pooling). Both maps are given for every preset, before attention dropout, even where
        the configuration mixes with only one or none of them (``used_maps`` in ``attention_info``).
        """
        features = validate_features(features)
        literal = self.input_projection is not None
        return self._forward(features, literal=literal, return_attention=return_attention, as_specified=False)

    def forward_as_specified(self, features: torch.Tensor, return_attention: bool = False):
        """Same results as :meth:`forward` (up to float rounding), computing all three input channels and
        running the trunk module by module with the official pooling head (for MAC counts)."""
        features = validate_features(features)
        return self._forward(features, literal=True, return_attention=return_attention, as_specified=True)

    def _forward(self, features: torch.Tensor, *, literal: bool, return_attention: bool, as_specified: bool):
        """``literal``: the three input channels computed as specified; ``as_specified``: also the trunk
        module by module with the official pooling head."""
        cfg = self.config
        reference = next(self.parameters())  # float64 / CPU input follows the model's dtype and device
        features = features.to(device=reference.device, dtype=reference.dtype)
        n_steps = features.shape[0]
        image, key, x = self._key_image_literal(features) if literal else self._key_image_fast(features)
        cnn_out = self.cnn(image, literal=as_specified)  # (T', D)

        logits = cnn_out
        if cfg.skip_connection == "KC":
            logits = self._norm(cnn_out + key)
        if cfg.cls_token and cfg.cls_pool == "CNN":
            logits, x, cnn_out = pool_rows(logits, n_steps), pool_rows(x, n_steps), pool_rows(cnn_out, n_steps)
        if cfg.scale is not None:
            rows, dim = logits.shape
            logits = logits / math.sqrt({"D": dim, "T": rows, "T_D": rows * dim}[cfg.scale])
        if self.positional_encoding is not None and cfg.positional_encoding_way == "PGL_SUM":
            logits = self.positional_encoding(logits)

        temporal = spatial = None
        if cfg.softmax_axis in ("T", "TD"):
            temporal = torch.softmax(logits, dim=0)
        if cfg.softmax_axis in ("D", "TD"):
            spatial = torch.softmax(logits, dim=1)
        maps_for_report = (temporal, spatial)
        if self.attention_dropout is not None and cfg.positional_encoding_way == "PGL_SUM":
            temporal = self.attention_dropout(temporal) if temporal is not None else None
            spatial = self.attention_dropout(spatial) if spatial is not None else None

        if self.value_embedding is not None and not literal and self.cls_token is not None and cfg.cls_pool != "CNN":
            # x = [CLS row; features]: rows of a Linear are independent, and embedding the CLS row apart
            # spares the backward pass the gradient of the (T, 1024) features, which nothing needs
            value = torch.cat([self.value_embedding(self.cls_token[:1]), self.value_embedding(features)])
        elif self.value_embedding is not None:
            value = self.value_embedding(x)
        else:
            value = x if cfg.value_source == "input" else cnn_out
        if cfg.cls_token and cfg.cls_pool == "SM":
            temporal = pool_rows(temporal, n_steps) if temporal is not None else None
            spatial = pool_rows(spatial, n_steps) if spatial is not None else None
            value = pool_rows(value, n_steps)

        mixed = self._mix(value, temporal, spatial, logits)
        if cfg.skip_connection in ("CF", "IF"):
            residual = logits if cfg.skip_connection == "CF" else x
            mixed = self._norm(mixed + pool_rows(residual, mixed.shape[0]))
        pooled = pool_rows(mixed, n_steps)
        scores = self.classifier(pooled) if self.classifier is not None else pooled.mean(dim=1)
        if not return_attention:
            return scores
        with torch.no_grad():
            report_t = maps_for_report[0] if maps_for_report[0] is not None else torch.softmax(logits, dim=0)
            report_d = maps_for_report[1] if maps_for_report[1] is not None else torch.softmax(logits, dim=1)
        attention = {
            "attention_logits": logits,
            "temporal_attention": report_t,
            "spatial_attention": report_d,
            "mixed_features": mixed,
        }
        return scores, attention

    def _mix(self, value, temporal, spatial, logits) -> torch.Tensor:
        """Eq. 6 with the official Balance options (T, D = the shape of V)."""
        cfg = self.config
        if temporal is not None and spatial is not None:
            rows, dim = value.shape
            rule = cfg.balance
            if rule == "BD":  # scale down the larger term (our reading of the code's flag)
                rule = "T" if rows < dim else "D"
            elif rule == "BU":  # scale up the smaller term
                rule = "D" if rows < dim else "T"
            if rule == "T":
                return value * temporal * (rows / dim) + value * spatial
            if rule == "D":
                return value * temporal + value * spatial * (dim / rows)
            return value * temporal + value * spatial
        if temporal is not None:
            return value * temporal
        if spatial is not None:
            return value * spatial
        return value * logits  # softmax_axis None: the value times the raw attention map

    @property
    def attention_info(self) -> dict[str, Any]:
        """Which maps enter the mix (for captions of the attention figures)."""
        axis = self.config.softmax_axis
        used = {"TD": ["temporal", "spatial"], "T": ["temporal"], "D": ["spatial"], None: []}[axis]
        return {"used_maps": used, "rows_include_cls": self.config.cls_token and self.config.cls_pool == "Final"}


# ---------------------------------------------------------------------------------------------------
# Construction, parameter counts


def build_model(config_or_preset_name: str | ModelConfig, weights: str | os.PathLike[str] | None = None) -> CSTA:
    """Build CSTA from a :class:`ModelConfig` or a preset name.

    ``weights=None``: random init as torchvision builds the trunk plus the official head init.
    ``weights``: the path of a torchvision state_dict file for the trunk (never downloaded);
    :func:`csta_lib.runs.locator.backbone_weights` finds torchvision's ImageNet file (``"imagenet"``) or a
    logical data name (``"weights.converted.mobilenet_v2_coral"``) and checks its sha256.
    """
    config = get_config(config_or_preset_name)
    model = CSTA(config)
    if weights is not None:
        load_weights_into(model.cnn.net, config.backbone, weights)
    return model


def count_parameters(model: CSTA, convention: str = "official") -> int:
    """Trainable parameters of a CSTA model.

    ``convention="official"`` mirrors the official counter (method page, method-cost): every parameter
    whose official name contains ``fc`` or ``classifier`` is left out. That drops the trunk's unused
    ImageNet head and, as a side effect of matching on the name, EfficientNet's squeeze-excitation
    convolutions (``fc1``/``fc2``, 636,540 parameters): hence 7,641,603 for ``paper.efficientnet_b0``.
    ``"trainable"``: everything that trains, i.e. all but the unused head. ``"all"``: every parameter.
    """
    names = official_key_names(model)
    total = 0
    for key, param in model.named_parameters():
        official = names[key]
        if convention == "official" and ("fc" in official or "classifier" in official):
            continue
        if convention == "trainable" and _is_unused_head(model, official):
            continue
        if convention not in ("official", "trainable", "all"):
            raise ValueError(f"unknown parameter-count convention {convention!r}")
        total += param.numel()
    return total


def _is_unused_head(model: CSTA, official_key: str) -> bool:
    prefix = backbone_spec(model.config.backbone).official_prefix
    return official_key.startswith((f"{prefix}.fc.", f"{prefix}.classifier."))


# ---------------------------------------------------------------------------------------------------
# Official state_dict import / export


def official_key_names(model: CSTA) -> dict[str, str]:
    """Our state_dict key -> the official implementation's key for the same tensor."""
    prefix = backbone_spec(model.config.backbone).official_prefix
    fixed = {
        "cls_token": "CLS",
        "skip_norm.": "layernorm1.",
        "classifier.hidden.": "linear1.0.",
        "classifier.norm.": "linear1.3.",
        "classifier.output.": "linear2.0.",
        "positional_encoding.table": "Positional_encoding_op.pe",
        "positional_encoding.conv.": "Positional_encoding_op.conv.",
        "input_projection.": "input_linear.",
        "cnn.net.": prefix + ".",
    }
    out = {}
    for key in model.state_dict():
        official = key
        for ours, theirs in fixed.items():
            if key.startswith(ours):
                official = theirs + key[len(ours):]
                break
        out[key] = official
    return out


def _to_official_tensor(key: str, value: torch.Tensor) -> torch.Tensor:
    return value.reshape(1, 3, 1, INPUT_DIM) if key == "cls_token" else value


def to_official_state_dict(model: CSTA) -> dict[str, torch.Tensor]:
    """Our model's state in the official code's key names and shapes (inverse of the import)."""
    names = official_key_names(model)
    return {names[k]: _to_official_tensor(k, v.detach().clone()) for k, v in model.state_dict().items()}


def load_official_state_dict(model: CSTA, state_dict: dict[str, torch.Tensor]) -> CSTA:
    """Load a state_dict saved by the official code (their key names and shapes), strictly.

    Unknown, missing or mis-shaped keys raise :class:`DataFormatError` listing them all. The fixed
    positional table is loaded too, so the numerics are the checkpoint's own.
    """
    if not isinstance(state_dict, dict):
        raise DataFormatError(f"expected an official state_dict (dict of tensors), got {type(state_dict).__name__}")
    names = official_key_names(model)
    ours = model.state_dict()
    theirs_to_ours = {v: k for k, v in names.items()}
    unknown = sorted(k for k in state_dict if k not in theirs_to_ours)
    missing = sorted(k for k in theirs_to_ours if k not in state_dict)
    bad_shape = []
    converted: dict[str, torch.Tensor] = {}
    for theirs, value in state_dict.items():
        if theirs not in theirs_to_ours:
            continue
        key = theirs_to_ours[theirs]
        expected = tuple(_to_official_tensor(key, ours[key]).shape)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            bad_shape.append(f"{theirs}: expected {expected}, got {got}")
            continue
        converted[key] = value.reshape(ours[key].shape)
    if unknown or missing or bad_shape:
        raise DataFormatError(
            f"official state_dict does not fit a {model.config.backbone} CSTA with these switches: "
            f"unknown keys {unknown}; missing keys {missing}; mis-shaped keys {bad_shape}"
        )
    model.load_state_dict(converted, strict=True)
    return model

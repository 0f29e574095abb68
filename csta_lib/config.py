"""Model configuration: the backbones, every switch of the official CSTA code, and the named presets.

:data:`BACKBONES` is the registry of the four CNN backbones: one entry per backbone holds every fact about it
(width, official names, torchvision builder, trunk layers, the preprocessing of its ImageNet weights).

:class:`ModelConfig` holds the official code's switches under names that say what they do; the
official command-line flag each one mirrors is given in its comment, and :func:`official_flags` gives them.
Values keep the official spellings (``"TD"``, ``"FPE"``, ``"KC"``, ...) so that a flag setting reads the same
in the paper, the official code and here.

Two switches exist only here, for the places where the paper and the code disagree (the book's method
page, section method-differences); both default to the code, which produced the paper's numbers:

* ``skip_norm``: ``"batchnorm"`` (the code's ``BatchNorm2d(1)`` over the whole (T+1)×D map) or
  ``"layernorm"`` (a true ``LayerNorm(D)`` per row, as Eq. 3 says);
* ``cnn_resize``: ``"adaptive_avg"`` (the code's ``AdaptiveAvgPool2d((T+1, 1))``) or ``"bilinear"``
  (the text: bilinear interpolation of the CNN map to (T+1) rows, then a mean over the width).

The Figure-4 direct-CNN head (method page, method-classifier) has two readings in the code; both are plain
settings of ``softmax_axis`` on a ``value_source="cnn"`` model: ``None`` gives the literal ``S_t = mean_c A[t,c]²``
(the presets' choice), ``"T"`` gives ``mean_c A[t,c]·softmax_t(A)[t,c]``. :func:`direct_cnn_config`
builds either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from csta_lib.errors import ConfigError

#: Normalisation of torchvision's ImageNet weights (every backbone's, and the GoogLeNet frame encoder's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """What an image must look like for a backbone's ImageNet weights (torchvision's ``weights.transforms()``):
    resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``, scale to [0, 1], normalise."""

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone's registry entry: every fact about it, in one place.

    Kept here, free of torch, so that configurations, the CLI and the frame encoders read it without importing
    torch; :mod:`csta_lib.backbones` builds the trunks from it."""

    name: str
    dim: int  # D: output channels of the trunk (the attention map width)
    official_name: str  # class-name stem in the official code (``<stem>`` / ``<stem>_Attention``)
    official_prefix: str  # attribute name of the trunk in the official CSTA_<backbone> class
    min_height: int  # smallest input height the trunk's pooling stack accepts
    torchvision_builder: str
    trunk_layers: tuple[str, ...]  # torchvision submodules run in order (the rest is never run)
    preprocessing: Preprocessing = Preprocessing()  # of the ImageNet weights (torchvision's IMAGENET1K_V1)


BACKBONES: dict[str, BackboneSpec] = {
    "googlenet": BackboneSpec(
        "googlenet", 1024, "GoogleNet", "googlenet", 15, "googlenet",
        ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
         "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
         "inception5a", "inception5b"),
    ),
    "mobilenet_v2": BackboneSpec("mobilenet_v2", 1280, "MobileNet", "mobilenet", 1, "mobilenet_v2", ("features",)),
    "efficientnet_b0": BackboneSpec(
        "efficientnet_b0", 1280, "EfficientNet", "efficientnet", 1, "efficientnet_b0", ("features",),
        Preprocessing(interpolation="bicubic"),
    ),
    "resnet18": BackboneSpec(
        "resnet18", 512, "ResNet", "resnet", 1, "resnet18",
        ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
    ),
}


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry of a backbone; unknown names list the valid ones."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    return BACKBONES[name]


#: Width of the input features: GoogLeNet pool5, the googlenet trunk's output (1024).
INPUT_DIM = BACKBONES["googlenet"].dim

_CHOICES: dict[str, tuple[Any, ...]] = {
    "backbone": tuple(BACKBONES),
    "value_source": ("input", "cnn"),
    "softmax_axis": ("T", "D", "TD", None),
    "balance": (None, "T", "D", "BD", "BU"),
    "scale": (None, "D", "T", "T_D"),
    "positional_encoding": (None, "FPE", "RPE", "LPE", "CPE"),
    "positional_encoding_shape": ("TD", "T"),
    "positional_encoding_way": ("PGL_SUM", "Transformer"),
    "cls_pool": ("CNN", "SM", "Final"),
    "key_value_embedding": (None, "k", "v", "kv"),
    "skip_connection": (None, "KC", "CF", "IF"),
    "skip_norm": ("batchnorm", "layernorm"),
    "cnn_resize": ("adaptive_avg", "bilinear"),
}


@dataclass(frozen=True)
class ModelConfig:
    """Every switch of the CSTA model (defaults = the paper's final model; book method page, method-notation)."""

    backbone: str = "googlenet"  # --model_name stem
    # "input": the official *_Attention models (value = input features, optionally embedded);
    # "cnn": the direct CNN models of Figure 4 (value = the CNN output itself, no value embedding).
    value_source: str = "input"  # --model_name suffix "_Attention" or none
    softmax_axis: str | None = "TD"  # --Softmax_axis
    balance: str | None = None  # --Balance
    scale: str | None = None  # --Scale
    positional_encoding: str | None = "FPE"  # --Positional_encoding
    positional_encoding_shape: str = "TD"  # --Positional_encoding_shape
    positional_encoding_way: str = "PGL_SUM"  # --Positional_encoding_way
    attention_dropout: bool = True  # --Dropout_on
    attention_dropout_rate: float = 0.6  # --Dropout_ratio
    classifier: bool = True  # --Classifier_on
    cls_token: bool = True  # --CLS_on
    cls_pool: str = "Final"  # --CLS_mix: where T+1 rows are pooled to T
    key_value_embedding: str | None = "kv"  # --key_value_emb
    skip_connection: str | None = "KC"  # --Skip_connection
    skip_norm_on: bool = True  # --Layernorm (a norm after the skip; only built when there is a skip)
    skip_norm: str = "batchnorm"  # ours: "batchnorm" (code) | "layernorm" (paper Eq. 3)
    cnn_resize: str = "adaptive_avg"  # ours: "adaptive_avg" (code) | "bilinear" (paper text)
    classifier_dropout: float = 0.5  # hard-coded in the official classifier

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"ModelConfig.{name}={value!r} is not one of {list(allowed)}")
        for name in ("attention_dropout_rate", "classifier_dropout"):
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
                raise ConfigError(f"ModelConfig.{name}={rate!r} must be a number in [0, 1)")
        for name in ("attention_dropout", "classifier", "cls_token", "skip_norm_on"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"ModelConfig.{name} must be True or False, got {getattr(self, name)!r}")
        conflicts = _conflicts(self)
        if conflicts:
            raise ConfigError("conflicting ModelConfig switches: " + "; ".join(conflicts))

    @property
    def dim(self) -> int:
        """D: the width of the attention map (the backbone trunk's output channels)."""
        return BACKBONES[self.backbone].dim

    @property
    def embeds_key(self) -> bool:
        return self.key_value_embedding in ("k", "kv")

    @property
    def embeds_value(self) -> bool:
        return self.key_value_embedding in ("v", "kv")

    @property
    def has_skip_norm(self) -> bool:
        """Whether a norm module follows the skip connection (the official code builds it only then)."""
        return self.skip_connection is not None and self.skip_norm_on

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some switches changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every switch (the checkpoint's ``config``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ModelConfig keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def _conflicts(c: ModelConfig) -> list[str]:
    """Human-readable descriptions of impossible switch combinations (empty when consistent)."""
    out: list[str] = []
    wide = c.dim != INPUT_DIM
    if c.skip_connection == "KC" and wide and not c.embeds_key:
        out.append(
            f"skip_connection='KC' adds the key ({INPUT_DIM}-d without a key embedding) to the {c.backbone} "
            f"output ({c.dim}-d): set key_value_embedding to 'k' or 'kv' (the official code crashes here)"
        )
    if c.value_source == "input" and wide and not c.embeds_value:
        out.append(
            f"value_source='input' with backbone={c.backbone!r} mixes {INPUT_DIM}-d values with {c.dim}-d "
            "attention: set key_value_embedding to 'v' or 'kv'"
        )
    if c.skip_connection == "IF" and wide:
        out.append(
            f"skip_connection='IF' adds the {INPUT_DIM}-d input to the {c.dim}-d mix of backbone={c.backbone!r}"
        )
    if c.value_source == "cnn" and c.embeds_value:
        out.append(
            "value_source='cnn' (direct CNN model) has no value embedding: key_value_embedding must be None or 'k'"
        )
    if c.balance is not None and c.softmax_axis != "TD":
        out.append(
            f"balance={c.balance!r} reweights the two softmax terms and needs softmax_axis='TD', "
            f"not {c.softmax_axis!r}"
        )
    if c.cls_token and c.cls_pool == "SM" and c.softmax_axis is None:
        out.append("cls_pool='SM' pools the softmax maps, but softmax_axis=None has none")
    if c.positional_encoding_way == "Transformer" and wide:
        out.append(
            f"positional_encoding_way='Transformer' applies a Linear(D, D) to the {INPUT_DIM}-d input; "
            f"backbone={c.backbone!r} has D={c.dim}"
        )
    return out


# ---------------------------------------------------------------------------------------------------
# Official flags


def official_model_name(config: ModelConfig) -> str:
    """The official ``--model_name`` of a configuration (e.g. ``GoogleNet_Attention``)."""
    stem = BACKBONES[config.backbone].official_name
    return stem + ("_Attention" if config.value_source == "input" else "")


def official_flags(config: ModelConfig) -> dict[str, Any]:
    """The official command-line flags (as stored in ``official_state_dict_keys.json``) of a configuration.

    Our two deviation switches have no official flag; a config that uses them has no official twin and
    raises :class:`ConfigError`.
    """
    if config.skip_norm != "batchnorm" or config.cnn_resize != "adaptive_avg":
        raise ConfigError("skip_norm='layernorm' and cnn_resize='bilinear' have no official flag")
    return {
        "Scale": config.scale,
        "Softmax_axis": config.softmax_axis,
        "Balance": config.balance,
        "Positional_encoding": config.positional_encoding,
        "Positional_encoding_shape": config.positional_encoding_shape,
        "Positional_encoding_way": config.positional_encoding_way,
        "Dropout_on": config.attention_dropout,
        "Dropout_ratio": str(float(config.attention_dropout_rate)),  # a string, as argparse left it
        "Classifier_on": config.classifier,
        "CLS_on": config.cls_token,
        "CLS_mix": config.cls_pool,
        "key_value_emb": config.key_value_embedding,
        "Skip_connection": config.skip_connection,
        "Layernorm": config.skip_norm_on,
    }


# ---------------------------------------------------------------------------------------------------
# Presets


def direct_cnn_config(backbone: str, reading: str = "literal") -> ModelConfig:
    """The Figure-4 model: the CNN used directly as score predictor (method page, method-classifier).

    ``reading="literal"`` (default, the flags as written): ``S_t = mean_c A[t,c]²``, no sigmoid.
    ``reading="softmax_t"``: ``S_t = mean_c A[t,c]·Dropout(softmax_t(A))[t,c]``.
    """
    readings = {"literal": None, "softmax_t": "T"}
    if reading not in readings:
        raise ConfigError(f"unknown Figure-4 head reading {reading!r}; expected one of {list(readings)}")
    return ModelConfig(
        backbone=backbone,
        value_source="cnn",
        softmax_axis=readings[reading],
        positional_encoding=None,
        classifier=False,
        cls_token=False,
        key_value_embedding=None,
        skip_connection=None,
    )


def _table2_rows() -> dict[str, ModelConfig]:
    """The Table 2 ablation rows in order; each adds one component to the previous (paper Table 2)."""
    attention = ModelConfig(
        softmax_axis="T", positional_encoding=None, cls_token=False, key_value_embedding=None, skip_connection=None
    )
    att_d = attention.replace(softmax_axis="TD")
    kv = att_d.replace(key_value_embedding="kv")
    pe = kv.replace(positional_encoding="FPE")
    cls = pe.replace(cls_token=True, cls_pool="Final")
    return {
        "table2.baseline": direct_cnn_config("googlenet"),
        "table2.attention": attention,
        "table2.att_d": att_d,
        "table2.kv": kv,
        "table2.pe": pe,
        "table2.cls": cls,
    }


def _presets() -> dict[str, ModelConfig]:
    presets: dict[str, ModelConfig] = {"paper": ModelConfig()}
    presets.update(_table2_rows())
    for backbone in BACKBONES:
        presets[f"fig4.{backbone}"] = direct_cnn_config(backbone)
    for backbone in ("mobilenet_v2", "efficientnet_b0", "resnet18"):
        presets[f"paper.{backbone}"] = ModelConfig(backbone=backbone)
    return presets


#: Named presets (external checks use these names). The last Table 2 row (skip connection) is ``paper``.
PRESETS: dict[str, ModelConfig] = _presets()
#: The Table 2 rows in the paper's order.
TABLE2_ORDER: tuple[str, ...] = (
    "table2.baseline", "table2.attention", "table2.att_d", "table2.kv", "table2.pe", "table2.cls", "paper",
)


def get_config(name_or_config: str | ModelConfig) -> ModelConfig:
    """A preset by name, or the config itself; unknown names list the valid ones."""
    if isinstance(name_or_config, ModelConfig):
        return name_or_config
    if isinstance(name_or_config, str) and name_or_config in PRESETS:
        return PRESETS[name_or_config]
    raise ConfigError(f"unknown model preset {name_or_config!r}; valid presets: {', '.join(PRESETS)}")

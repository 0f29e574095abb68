"""The four CNN trunks CSTA can use as its attention CNN, and their ImageNet weights.

What each backbone is (width, official names, torchvision builder, trunk layers, the preprocessing its ImageNet
weights expect) is its registry entry, :data:`csta_lib.config.BACKBONES`, kept there free of torch; this module
builds and runs the trunks.

Each backbone is the torchvision architecture (architecture only, built through
:func:`csta_lib._torchvision.import_torchvision`) with the official head replacement: the global average
pool is replaced by an adaptive pool to ``(rows, 1)``, so the trunk turns a ``(1, 3, H, W)`` "image" into
``(H, D)`` — one D-vector per input row (the book's method page, method-cnn). The torchvision classifier (``fc`` /
``classifier``) is kept so that the official state_dict and the torchvision checkpoints load, but it is
never run; GoogLeNet's auxiliary heads are not built (the official copy removed them).

Short inputs: the GoogLeNet pooling stack needs at least 15 input rows (``min_height`` of its registry entry,
:class:`~csta_lib.config.BackboneSpec`; the official code crashes below). :meth:`Trunk.forward` replicate-pads
the image's last row up to that height, runs the trunk, resizes to the padded height and keeps the first ``H``
rows; for every height the official code accepts nothing changes.

Speed (same values up to float rounding; parameters, state_dict keys and module tree unchanged):
:meth:`Trunk.forward` runs the trunk channels-last, each GoogLeNet inception block's three 1x1
convolutions on the same input as one (:func:`inception_forward`), GoogLeNet's stem convolution with a
faster input gradient (:class:`Stride2Conv7x7`) and the resize to H rows as a small matrix product.
``Trunk.forward(image, literal=True)`` and :meth:`Trunk.feature_map` run every layer as a module call
(per-module hooks and MAC counts see them all).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from csta_lib._torchvision import import_torchvision
from csta_lib.config import backbone_spec
from csta_lib.errors import ConfigError, DataFormatError, MissingDataError


def build_torchvision_model(name: str) -> nn.Module:
    """The full torchvision model with random init exactly as torchvision builds it.

    GoogLeNet: ``init_weights=True`` is what torchvision does for ``init_weights=None`` (the official
    code's argument) minus the deprecation warning; no aux heads, no ``transform_input``.
    """
    tv = import_torchvision()
    spec = backbone_spec(name)
    builder: Callable[..., nn.Module] = getattr(tv.models, spec.torchvision_builder)
    if name == "googlenet":
        return builder(weights=None, aux_logits=False, init_weights=True, transform_input=False)
    return builder(weights=None)


def resize_rows(
    feature_map: torch.Tensor, rows: int, mode: str = "adaptive_avg", literal: bool = False
) -> torch.Tensor:
    """(1, D, h, w) CNN map -> (rows, D): the official head (adaptive average pool to (rows, 1)),
    or the paper's wording (bilinear interpolation to ``rows`` rows, then the mean over the width).
    ``literal=True`` runs the official pooling layer itself (the default computes the same means faster)."""
    if mode == "adaptive_avg" and not literal:
        # adaptive_avg_pool2d to (rows, 1) = the mean over the width, then each output row the mean of
        # its window of input rows: a small (rows x h) matrix product, far cheaper in the backward pass
        # than the pooling kernel (same sums, up to float rounding).
        column_means = feature_map.mean(dim=3)[0]  # (D, h)
        window = adaptive_window_matrix(column_means.shape[1], rows, column_means)
        return window @ column_means.transpose(0, 1)
    if mode == "adaptive_avg":
        pooled = F.adaptive_avg_pool2d(feature_map, (rows, 1))
    elif mode == "bilinear":
        resized = F.interpolate(feature_map, size=(rows, feature_map.shape[-1]), mode="bilinear", align_corners=False)
        pooled = resized.mean(dim=3, keepdim=True)
    else:
        raise ConfigError(f"unknown cnn_resize {mode!r}; expected 'adaptive_avg' or 'bilinear'")
    return pooled[0, :, :, 0].transpose(0, 1)


def adaptive_window_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of adaptive average pooling over one axis: row i averages input indices
    floor(i*n_in/n_out) .. ceil((i+1)*n_in/n_out)-1 (PyTorch's adaptive pooling windows)."""
    out_index = torch.arange(n_out, device=like.device)
    start = torch.div(out_index * n_in, n_out, rounding_mode="floor")
    end = torch.div((out_index + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
    in_index = torch.arange(n_in, device=like.device)
    inside = (in_index[None, :] >= start[:, None]) & (in_index[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


class Trunk(nn.Module):
    """A torchvision CNN run up to its last feature map, then resized to one D-vector per input row."""

    def __init__(self, backbone: str, resize: str = "adaptive_avg") -> None:
        super().__init__()
        self.spec = backbone_spec(backbone)
        self.resize = resize
        # channels-last: oneDNN's convolutions and max-pools (GoogLeNet has 13, with indices in training)
        # run much faster on CPU in this layout; the values are the same up to float rounding.
        self.net = build_torchvision_model(backbone).to(memory_format=torch.channels_last)

    def feature_map(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) -> the last feature map (1, D, h, w); the classifier is not run."""
        out = image.contiguous(memory_format=torch.channels_last)
        for name in self.spec.trunk_layers:
            out = getattr(self.net, name)(out)
        return out

    def fast_feature_map(self, image: torch.Tensor) -> torch.Tensor:
        """:meth:`feature_map` with GoogLeNet's inception blocks run by :func:`inception_forward` (the same
        values up to float rounding, fewer passes over the large activations). :meth:`feature_map` stays
        the literal module-by-module path (per-module hooks, e.g. MAC counts by hand, see every layer)."""
        out = image.contiguous(memory_format=torch.channels_last)
        layers = [getattr(self.net, name) for name in self.spec.trunk_layers]
        index = 0
        while index < len(layers):
            layer = layers[index]
            following = layers[index + 1] if index + 1 < len(layers) else None
            if is_inception_block(layer):
                out = inception_forward(layer, out)
            elif is_pointwise_basic_conv(layer):  # GoogLeNet's conv2
                out = _batch_norm_relu(pointwise_conv(out, layer.conv.weight), [layer.bn])
            elif is_basic_conv(layer):  # GoogLeNet's conv1 and conv3, each followed by a max-pool
                if is_stride2_7x7_stem(layer):
                    pre_activation = layer.bn(Stride2Conv7x7.apply(out, layer.conv.weight))
                else:
                    pre_activation = layer.bn(layer.conv(out))
                if isinstance(following, nn.MaxPool2d):
                    # ReLU is monotone, so max-pool then ReLU gives the same values, and the same
                    # gradients (a window whose maximum is <= 0 passes none either way), with the ReLU
                    # and its backward on the 4x smaller pooled map
                    out = F.relu(following(pre_activation), inplace=True)
                    index += 1
                else:
                    out = F.relu(pre_activation, inplace=True)
            else:
                out = layer(out)
            index += 1
        return out

    def forward(self, image: torch.Tensor, literal: bool = False) -> torch.Tensor:
        """(1, 3, H, W) -> (H, D). Heights below ``min_height`` are replicate-padded (module docstring).

        ``literal=True``: every layer as a module call and the official pooling head (for MAC counts
        and per-module hooks); the default gives the same values up to float rounding, faster."""
        height = image.shape[2]
        padded = max(height, self.spec.min_height)
        if padded > height:
            last = image[:, :, -1:, :].expand(-1, -1, padded - height, -1)
            image = torch.cat([image, last], dim=2)
        feature_map = self.feature_map(image) if literal else self.fast_feature_map(image)
        rows = resize_rows(feature_map, padded, self.resize, literal=literal)
        return rows[:height]


# ---------------------------------------------------------------------------------------------------
# GoogLeNet stem convolution: a faster input gradient (speed only)


def is_basic_conv(module: nn.Module) -> bool:
    """A torchvision GoogLeNet ``BasicConv2d``: conv, BatchNorm, ReLU."""
    return (
        type(module).__name__ == "BasicConv2d" and isinstance(getattr(module, "conv", None), nn.Conv2d)
        and isinstance(getattr(module, "bn", None), nn.BatchNorm2d)
    )


def is_pointwise_basic_conv(module: nn.Module) -> bool:
    """A ``BasicConv2d`` whose conv is a plain 1x1 (run as a matrix product by :func:`pointwise_conv`)."""
    return is_basic_conv(module) and _fusable([module])


def is_stride2_7x7_stem(module: nn.Module) -> bool:
    """GoogLeNet's ``conv1``: a bias-free 7x7 convolution, stride 2, padding 3, then BatchNorm + ReLU."""
    conv = getattr(module, "conv", None)
    return (
        isinstance(conv, nn.Conv2d) and isinstance(getattr(module, "bn", None), nn.BatchNorm2d)
        and conv.kernel_size == (7, 7) and conv.stride == (2, 2) and conv.padding == (3, 3)
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.bias is None
    )


def polyphase_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 7, 7) stride-2 kernel -> (4*C_in, C_out, 4, 4) stride-1 kernel of its input gradient.

    Input pixel (2p+b, 2q+b') receives sum_k,l W[:, c, b+3-2k, b'+3-2l] . grad_out[:, p+k, q+l] for
    k, l in -1..2 (taps outside the 7x7 kernel are zero): one stride-1 correlation per phase (b, b'),
    all four as the output channels c*4 + b*2 + b' (the order ``pixel_shuffle`` expects)."""
    c_out, c_in = weight.shape[:2]
    padded = F.pad(weight, (1, 0, 1, 0))  # kernel index -1 -> 0: (C_out, C_in, 8, 8)
    phases = padded.reshape(c_out, c_in, 4, 2, 4, 2).flip(2, 4)  # [n, c, 3-k', b, 3-l', b']
    return phases.permute(1, 3, 5, 0, 2, 4).reshape(c_in * 4, c_out, 4, 4)


class Stride2Conv7x7(torch.autograd.Function):
    """``conv2d(x, w, stride=2, padding=3)`` whose input gradient runs as one stride-1 4x4 convolution
    (:func:`polyphase_kernel`) and a pixel shuffle. oneDNN computes the transposed stride-2 convolution
    onto 3 channels several times slower than the forward; this is the same sum of products per input
    pixel (float rounding aside). The weight gradient is torch's own."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, stride=2, padding=3)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_out_cl = grad_out.contiguous(memory_format=torch.channels_last)
            # taps k = -1..2 need padding (1, 2); symmetric padding 2 and dropping the first row and
            # column gives the same without copying grad_out into a padded buffer
            phases = F.conv2d(grad_out_cl, polyphase_kernel(weight), padding=2)[:, :, 1:, 1:]
            grad_x = F.pixel_shuffle(phases, 2)[:, :, : x.shape[2], : x.shape[3]]
            grad_x = grad_x.contiguous(memory_format=torch.channels_last)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [2, 2], [3, 3], [1, 1], False, [0, 0], 1, [False, True, False]
            )[1]
        return grad_x, grad_weight


# ---------------------------------------------------------------------------------------------------
# GoogLeNet inception block, fused (speed only)


def is_inception_block(module: nn.Module) -> bool:
    """A torchvision GoogLeNet ``Inception`` block (four branches, the first three start with a 1x1 conv)."""
    return all(hasattr(module, f"branch{i}") for i in (1, 2, 3, 4)) and isinstance(module.branch2, nn.Sequential)


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 convolution. On a channels-last map it is one matrix product over the (H*W, C)
    view, written as such: the same sums as the convolution, without its single-image 1x1 overhead."""
    if x.is_contiguous(memory_format=torch.channels_last) and x.shape[0] == 1:
        out = F.linear(x.permute(0, 2, 3, 1), weight.reshape(weight.shape[0], -1))
        return out.permute(0, 3, 1, 2)  # a channels-last (1, C_out, H, W) map, no copy
    return F.conv2d(x, weight)


def _batch_norm_relu(x: torch.Tensor, norms: list[nn.BatchNorm2d]) -> torch.Tensor:
    """``relu(norm_i(x_i))`` for the channel groups x_i of ``x`` (sizes = the norms' widths), in one pass.

    BatchNorm statistics are per channel, so normalising the concatenation is the same computation; in
    training the running statistics are updated exactly as each module would, then written back."""
    first = norms[0]
    training = first.training or first.running_mean is None
    running_mean = torch.cat([n.running_mean for n in norms]) if first.running_mean is not None else None
    running_var = torch.cat([n.running_var for n in norms]) if first.running_var is not None else None
    out = F.batch_norm(
        x, running_mean, running_var, torch.cat([n.weight for n in norms]), torch.cat([n.bias for n in norms]),
        training, first.momentum, first.eps,
    )
    if first.training and running_mean is not None:
        with torch.no_grad():
            for norm, mean, var in zip(norms, running_mean.split([n.num_features for n in norms]),
                                       running_var.split([n.num_features for n in norms])):
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.num_batches_tracked.add_(1)
    return F.relu(out, inplace=True)


def _fusable(convs: list[nn.Module]) -> bool:
    """The 1x1 stems can share one pass when they are plain conv + BatchNorm with the same settings."""
    norms = [c.bn for c in convs]
    first = norms[0]
    return (
        all(c.conv.kernel_size == (1, 1) and c.conv.stride == (1, 1) and c.conv.bias is None and c.conv.groups == 1
            and c.conv.padding in ((0, 0), "valid") for c in convs)
        and all(isinstance(n, nn.BatchNorm2d) and n.affine and n.training == first.training
                and n.track_running_stats == first.track_running_stats for n in norms)
        and first.momentum is not None  # a cumulative average would need each module's own count
        and len({(n.momentum, n.eps) for n in norms}) == 1
    )


def inception_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for a torchvision GoogLeNet ``Inception`` block, faster, parameters unchanged.

    The three 1x1 convolutions that read ``x`` (branch 1, and the reductions that start branches 2 and
    3) run as one convolution with their weights concatenated, followed by one BatchNorm + ReLU over the
    concatenated channels; the result is split. Same arithmetic per output channel; the weights stay in
    their modules (state_dict and official key layout unchanged) and are concatenated on every call."""
    stems = [block.branch1, block.branch2[0], block.branch3[0]]
    if not _fusable(stems):
        return block(x)
    weight = torch.cat([s.conv.weight for s in stems])
    fused = _batch_norm_relu(pointwise_conv(x, weight), [s.bn for s in stems])
    branch1, reduced2, reduced3 = fused.split([s.conv.out_channels for s in stems], dim=1)
    pool_proj = block.branch4[1]
    pooled = block.branch4[0](x)
    branch4 = _batch_norm_relu(pointwise_conv(pooled, pool_proj.conv.weight), [pool_proj.bn])
    outputs = [branch1, block.branch2[1](reduced2), block.branch3[1](reduced3), branch4]
    return torch.cat(outputs, 1).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------------
# ImageNet weights (local files only, never downloaded)


def load_weights_into(net: nn.Module, backbone: str, weights: str | os.PathLike[str]) -> Path:
    """Load a torchvision-format state_dict file into the full torchvision model ``net`` (strict; GoogLeNet's
    aux-head tensors in torchvision's file are dropped, as the official code does). Returns the file.

    ``weights`` is a path; :func:`csta_lib.runs.locator.backbone_weights` finds ``"imagenet"`` or a logical data
    name and checks its sha256."""
    path = Path(weights)
    if not path.is_file():
        # Names such as "imagenet" are resolved where the project's files are known (the runs layer), not here.
        raise MissingDataError(
            f"backbone weights {str(weights)!r} for {backbone}: no such file. The model takes a weight file; for "
            f"torchvision's ImageNet file or a data name use "
            f"csta_lib.runs.locator.backbone_weights({backbone!r}, {str(weights)!r}), which finds it and checks its sha256"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a format error for the user
        raise DataFormatError(f"{path}: not a readable torch state_dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataFormatError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    bad_shape = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unknown or bad_shape:
        raise DataFormatError(
            f"{path}: not a torchvision {backbone} state_dict: missing {missing[:10]}, unknown {unknown[:10]}, "
            f"mis-shaped {bad_shape[:10]}"
            + (" (lists truncated)" if max(len(missing), len(unknown), len(bad_shape)) > 10 else "")
        )
    net.load_state_dict(state, strict=True)
    return path

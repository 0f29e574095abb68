"""The four CNN trunks CSTA can use as its attention CNN, and their ImageNet weights.

What each backbone is (width, official names, torchvision builder, trunk layers, the preprocessing its ImageNet
weights expect) is its registry entry, :data:`csta_lib.config.BACKBONES`, kept there free of torch; this module
builds and runs the trunks.

Each backbone is the torchvision architecture (architecture only, built through
:func:`csta_lib._torchvision.model_builder`) with the official head replacement: the global average
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

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from csta_lib._torchvision import model_builder
from csta_lib.config import backbone_spec
from csta_lib.errors import ConfigError, DataFormatError, MissingDataError


def build_torchvision_model(name: str) -> nn.Module:
    """The full torchvision model with random init exactly as torchvision builds it.

    GoogLeNet: ``init_weights=True`` is what torchvision does for ``init_weights=None`` (the official
    code's argument) minus the deprecation warning; no aux heads, no ``transform_input``.
    """
    spec = backbone_spec(name)
    builder: Callable[..., nn.Module] = model_builder(spec.torchvision_builder)
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
        # (torch's type stubs of Module.to lack memory_format)
        self.net: nn.Module = build_torchvision_model(backbone).to(  # type: ignore[call-overload]
            memory_format=torch.channels_last)

    def feature_map(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) -> the last feature map (1, D, h, w); the classifier is not run."""
        out = image.contiguous(memory_format=torch.channels_last)
        for name in self.spec.trunk_layers:
            out = getattr(self.net, name)(out)
        return out

    def fast_feature_map(self, image: torch.Tensor | EqualChannels) -> torch.Tensor:
        """:meth:`feature_map` by the stages of :meth:`fast_stages` (the same values up to float rounding, fewer
        passes over the large activations). :meth:`feature_map` stays the literal module-by-module path
        (per-module hooks, e.g. MAC counts by hand, see every layer). An :class:`EqualChannels` image goes through
        GoogLeNet's stem as one channel (:func:`equal_channel_stem`); other trunks get the image itself."""
        if isinstance(image, EqualChannels) and not self.takes_equal_channels:
            image = image.image()
        out: torch.Tensor | EqualChannels = (
            image if isinstance(image, EqualChannels) else image.contiguous(memory_format=torch.channels_last))
        for _, stage in self.fast_stages():
            out = stage(out)
        assert isinstance(out, torch.Tensor)
        return out

    @property
    def takes_equal_channels(self) -> bool:
        """Whether the first fast stage computes an :class:`EqualChannels` image as one channel (GoogLeNet's stem)."""
        first = getattr(self.net, self.spec.trunk_layers[0])
        return is_basic_conv(first) and is_stride2_7x7_stem(first)

    def fast_stages(self) -> list[tuple[str, Callable[[torch.Tensor | EqualChannels], torch.Tensor]]]:
        """The fast path as named stages, each a function of the previous stage's output: GoogLeNet's inception
        blocks by :func:`inception_forward`, its 1x1 ``conv2`` as a matrix product, its 3x3 convolutions by
        :func:`conv_forward`, its stem by :func:`equal_channel_stem` on an :class:`EqualChannels` image (else
        :class:`Stride2Conv7x7`), a convolution and the max-pool after it as one stage (``conv1+maxpool1``);
        any other layer as its module. Benchmarks time the stages one by one."""
        layers = [(name, getattr(self.net, name)) for name in self.spec.trunk_layers]
        stages: list[tuple[str, Callable[[torch.Tensor | EqualChannels], torch.Tensor]]] = []
        index = 0
        while index < len(layers):
            name, layer = layers[index]
            pool_name, pool = layers[index + 1] if index + 1 < len(layers) else ("", None)
            if is_basic_conv(layer) and not is_pointwise_basic_conv(layer):
                # GoogLeNet's conv1 and conv3, each followed by a max-pool
                if isinstance(pool, nn.MaxPool2d):
                    stages.append((f"{name}+{pool_name}", functools.partial(_conv_bn_relu_pool, layer, pool)))
                    index += 2
                else:
                    stages.append((name, functools.partial(_conv_bn_relu_pool, layer, None)))
                    index += 1
                continue
            if is_inception_block(layer):
                stages.append((name, functools.partial(inception_forward, layer)))
            elif is_pointwise_basic_conv(layer):  # GoogLeNet's conv2
                stages.append((name, functools.partial(_pointwise_basic_conv, layer)))
            else:
                stages.append((name, layer))
            index += 1
        return stages

    def forward(self, image: torch.Tensor | EqualChannels, literal: bool = False) -> torch.Tensor:
        """(1, 3, H, W) -> (H, D). Heights below ``min_height`` are replicate-padded (module docstring).

        ``image`` may be an :class:`EqualChannels` (CSTA's key image), which the fast path exploits.
        ``literal=True``: every layer as a module call and the official pooling head (for MAC counts
        and per-module hooks); the default gives the same values up to float rounding, faster."""
        if literal and isinstance(image, EqualChannels):
            image = image.image()
        height = image.height if isinstance(image, EqualChannels) else image.shape[2]
        padded = max(height, self.spec.min_height)
        if isinstance(image, EqualChannels):
            image = image.padded_to(padded)
        elif padded > height:
            last = image[:, :, -1:, :].expand(-1, -1, padded - height, -1)
            image = torch.cat([image, last], dim=2)
        if literal and isinstance(image, torch.Tensor):
            feature_map = self.feature_map(image)
        else:
            feature_map = self.fast_feature_map(image)
        rows = resize_rows(feature_map, padded, self.resize, literal=literal)
        return rows[:height]


def _conv_bn_relu_pool(layer: nn.Module, pool: nn.Module | None, x: torch.Tensor | EqualChannels) -> torch.Tensor:
    """A ``BasicConv2d`` (its convolution the fast way) and the max-pool that follows it, if any."""
    conv, norm = conv_and_norm(layer)
    if isinstance(x, EqualChannels):
        pre_activation = norm(equal_channel_stem(x, conv.weight))
    elif is_stride2_7x7_stem(layer):
        pre_activation = norm(Stride2Conv7x7.apply(x, conv.weight))
    else:
        pre_activation = norm(conv_forward(conv, x))
    if pool is None:
        return F.relu(pre_activation, inplace=True)
    # ReLU is monotone, so max-pool then ReLU gives the same values, and the same gradients (a window whose
    # maximum is <= 0 passes none either way), with the ReLU and its backward on the 4x smaller pooled map
    return F.relu(pool(pre_activation), inplace=True)


def _pointwise_basic_conv(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    conv, norm = conv_and_norm(layer)
    return _batch_norm_relu(pointwise_conv(x, conv.weight), [norm])


@dataclass(frozen=True)
class EqualChannels:
    """A (1, 3, H, W) image whose three channels are equal except, optionally, their first row: ``rows``
    (H', W) in every channel, below ``first_rows[c]`` in channel c when ``first_rows`` (3, W) is given
    (then H = H' + 1). CSTA's key image is one (book method page, method-stacking and method-attention):
    the key embedding of the same features in each channel, below each channel's own CLS row."""

    rows: torch.Tensor
    first_rows: torch.Tensor | None = None

    @property
    def height(self) -> int:
        return self.rows.shape[0] + (0 if self.first_rows is None else 1)

    def padded_to(self, height: int) -> EqualChannels:
        """The image with its last row repeated up to ``height`` rows (the trunk's short-video padding)."""
        if height <= self.height:
            return self
        last = self.rows[-1:].expand(height - self.height, -1)
        return EqualChannels(torch.cat([self.rows, last]), self.first_rows)

    def image(self) -> torch.Tensor:
        """The (1, 3, H, W) tensor itself."""
        body = self.rows.unsqueeze(0).expand(3, -1, -1)
        if self.first_rows is not None:
            body = torch.cat([self.first_rows.unsqueeze(1), body], dim=1)
        return body.unsqueeze(0)


# ---------------------------------------------------------------------------------------------------
# GoogLeNet stem convolution: a faster input gradient (speed only)


def is_basic_conv(module: nn.Module) -> bool:
    """A torchvision GoogLeNet ``BasicConv2d``: conv, BatchNorm, ReLU."""
    return (
        type(module).__name__ == "BasicConv2d" and isinstance(getattr(module, "conv", None), nn.Conv2d)
        and isinstance(getattr(module, "bn", None), nn.BatchNorm2d)
    )


def conv_and_norm(module: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """The convolution and the BatchNorm of a ``BasicConv2d`` (:func:`is_basic_conv`)."""
    conv, norm = getattr(module, "conv", None), getattr(module, "bn", None)
    if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
        raise TypeError(f"{type(module).__name__} is not a BasicConv2d (conv, bn)")
    return conv, norm


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


def equal_channel_stem(image: EqualChannels, weight: torch.Tensor) -> torch.Tensor:
    """GoogLeNet's stem convolution (7x7, stride 2, padding 3, no bias) of an :class:`EqualChannels` image:
    the (1, C_out, H', W') channels-last map of ``conv2d(image.image(), weight, stride=2, padding=3)``."""
    if image.first_rows is None:
        return EqualChannelStem.apply(image.rows, weight)
    return EqualChannelStem.apply(image.rows, weight, image.first_rows)


class EqualChannelStem(torch.autograd.Function):
    """The stem convolution of three equal channels computed on one: a convolution is linear in its input, so
    over equal channels it is the convolution of one channel with the kernel summed over channels (a third of
    the work in the forward pass and in both gradients). Only output rows 0 and 1 see the first input row
    (output row p reads input rows 2p-3 .. 2p+3), which differs between the channels: those two rows are
    computed from the three-channel image itself, its first six rows. The one-channel gradients are matrix
    products over the 49 taps (``unfold`` / ``fold``): oneDNN's kernels for a single input channel are slow on
    CPU. The same sums of products as the three-channel convolution, float rounding aside."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, weight: torch.Tensor,  # noqa: D102
                first_rows: torch.Tensor | None = None) -> torch.Tensor:
        if first_rows is not None:
            rows = torch.cat([rows.new_zeros(1, rows.shape[1]), rows])  # row 0 reaches output rows 0-1 only
        height, width = rows.shape
        # one channel in channels-last strides (the same memory), so that the output map is channels-last too
        x = rows.reshape(1, 1, height, width).as_strided((1, 1, height, width), (height * width, 1, width, 1))
        out = F.conv2d(x, weight.sum(dim=1, keepdim=True), stride=2, padding=3)
        head = None
        if first_rows is not None:  # output rows 0-1 from the image's first six rows, three channels
            head = rows[:6].unsqueeze(0).repeat(3, 1, 1)
            head[:, 0] = first_rows
            head = head.unsqueeze(0)
            out[:, :, :2] = F.conv2d(head, weight, stride=2, padding=3)[:, :, :2]
        ctx.save_for_backward(x, weight, head)
        return out.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        x, weight, head = ctx.saved_tensors
        c_out = weight.shape[0]
        height, width = x.shape[2:]
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        grad = grad_out[0].permute(1, 2, 0).reshape(-1, c_out)  # (positions, C_out)
        # positions of output rows 0-1 belong to the three-channel head when there is one
        skip = 0 if head is None else min(2, grad_out.shape[2]) * grad_out.shape[3]
        grad_rows = grad_weight = grad_first = None
        wants_first = len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[0]:
            taps = torch.mm(weight.sum(dim=1).reshape(c_out, 49).t(), grad.t())  # (49, positions)
            taps[:, :skip] = 0
            grad_rows = F.fold(taps[None], (height, width), 7, padding=3, stride=2)[0, 0]
        if ctx.needs_input_grad[1]:
            taps = F.unfold(x, 7, padding=3, stride=2)[0]  # (49, positions)
            one = (taps[:, skip:] @ grad[skip:]).t().reshape(c_out, 1, 7, 7)
            grad_weight = one.expand(-1, weight.shape[1], -1, -1)
        if head is not None:
            head_out = F.conv2d(head, weight, stride=2, padding=3).shape  # (1, C_out, rows, W')
            head_grad = grad_out.new_zeros(head_out)
            head_grad[:, :, :2] = grad_out[:, :, :2]
            grad_head, grad_w = torch.ops.aten.convolution_backward(
                head_grad, head, weight, None, [2, 2], [3, 3], [1, 1], False, [0, 0], 1,
                [ctx.needs_input_grad[0] or wants_first, ctx.needs_input_grad[1], False])[:2]
            if grad_head is not None:
                grad_first = grad_head[0, :, 0]
                if grad_rows is not None:
                    grad_rows[:grad_head.shape[2]] += grad_head[0].sum(dim=0)
            if grad_weight is not None:
                grad_weight = grad_weight + grad_w
        if grad_rows is not None and head is not None:
            grad_rows = grad_rows[1:]
        if grad_weight is not None:
            grad_weight = grad_weight.contiguous(memory_format=_layout_of(weight))
        return grad_rows, grad_weight, grad_first if wants_first else None


# ---------------------------------------------------------------------------------------------------
# 3x3 convolutions: a faster weight gradient (speed only)


def is_same_3x3_conv(conv: nn.Module) -> bool:
    """A bias-free 3x3 convolution, stride 1, padding 1 (GoogLeNet's ``conv3`` and the inception 3x3s)."""
    return (
        isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and conv.bias is None
    )


def shifted_weight_grad(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """The weight gradient of ``conv2d(x, w, padding=1)`` (3x3, one image) as nine matrix products.

    ``dW[:, :, i, j] = sum_{y,x} grad_out[:, y, x] * x[:, y+i-1, x+j-1]``. Stored as rows of width W+2 (the
    input zero-padded on every side plus one spare row, the output gradient padded with two zero columns),
    the input window of tap (i, j) is the contiguous slice of the flattened padded input that starts at
    ``i*(W+2) + j``: one (C_out x L) @ (L x C_in) product per tap over L = H*(W+2) positions, where the zero
    columns cancel the wrapped-around pixels. The same sums of products as oneDNN's kernel, which on a
    channels-last map runs several times slower than its forward pass (float rounding aside)."""
    _, c_in, height, width = x.shape
    c_out = grad_out.shape[1]
    row = width + 2
    padded = x.new_zeros(height + 3, row, c_in)
    padded[1:height + 1, 1:width + 1] = x[0].permute(1, 2, 0)
    flat_input = padded.reshape(-1, c_in)
    grad = grad_out.new_zeros(height, row, c_out)
    grad[:, :width] = grad_out[0].permute(1, 2, 0)
    grad_t = grad.reshape(-1, c_out).t()
    positions = height * row
    taps = grad_out.new_empty(3, 3, c_out, c_in)
    for i in range(3):
        for j in range(3):
            start = i * row + j
            torch.mm(grad_t, flat_input[start:start + positions], out=taps[i, j])
    return taps.permute(2, 3, 0, 1)


class SameConv3x3(torch.autograd.Function):
    """``conv2d(x, w, padding=1)`` for one CPU image, whose weight gradient is :func:`shifted_weight_grad`;
    the forward pass and the input gradient are torch's own."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, padding=1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            grad_weight = shifted_weight_grad(x, grad_out).contiguous(memory_format=_layout_of(weight))
        return grad_x, grad_weight


def _layout_of(weight: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def conv_forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``, with a 3x3 'same' convolution of one CPU image through :class:`SameConv3x3`."""
    if is_same_3x3_conv(conv) and x.shape[0] == 1 and x.device.type == "cpu":
        return SameConv3x3.apply(x, conv.weight)
    out: torch.Tensor = conv(x)
    return out


def basic_conv_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A torchvision ``BasicConv2d`` (conv, BatchNorm, ReLU) with its convolution by :func:`conv_forward`."""
    conv, norm = conv_and_norm(module)
    return F.relu(norm(conv_forward(conv, x)), inplace=True)


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
    tracked = [(n.running_mean, n.running_var, n.num_batches_tracked) for n in norms]
    stats = [(m, v, c) for m, v, c in tracked if m is not None and v is not None and c is not None]
    running_mean = torch.cat([m for m, _, _ in stats]) if len(stats) == len(norms) else None
    running_var = torch.cat([v for _, v, _ in stats]) if len(stats) == len(norms) else None
    out = F.batch_norm(
        x, running_mean, running_var, torch.cat([n.weight for n in norms]), torch.cat([n.bias for n in norms]),
        first.training or running_mean is None, _momentum(first), first.eps,
    )
    if first.training and running_mean is not None and running_var is not None:
        with torch.no_grad():
            widths = [n.num_features for n in norms]
            for (mean, var, count), new_mean, new_var in zip(stats, running_mean.split(widths),
                                                              running_var.split(widths), strict=True):
                mean.copy_(new_mean)
                var.copy_(new_var)
                count.add_(1)
    return F.relu(out, inplace=True)


def _momentum(norm: nn.BatchNorm2d) -> float:
    if norm.momentum is None:  # :func:`_fusable` refuses these: a cumulative average needs each module's count
        raise ValueError("a BatchNorm with momentum=None (cumulative average) cannot be fused")
    return norm.momentum


def _fusable(convs: list[nn.Module]) -> bool:
    """The 1x1 stems can share one pass when they are plain conv + BatchNorm with the same settings."""
    if not all(is_basic_conv(c) for c in convs):
        return False
    parts = [conv_and_norm(c) for c in convs]
    first = parts[0][1]
    return (
        all(conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.bias is None and conv.groups == 1
            and conv.padding in ((0, 0), "valid") for conv, _ in parts)
        and all(n.affine and n.training == first.training and n.track_running_stats == first.track_running_stats
                for _, n in parts)
        and first.momentum is not None  # a cumulative average would need each module's own count
        and len({(n.momentum, n.eps) for _, n in parts}) == 1
    )


def _branch_tail(branch: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The layers of an inception branch after its 1x1 reduction (torchvision: one 3x3 ``BasicConv2d``)."""
    for layer in list(branch)[1:]:
        x = basic_conv_forward(layer, x) if is_basic_conv(layer) else layer(x)
    return x


def inception_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for a torchvision GoogLeNet ``Inception`` block, faster, parameters unchanged.

    The three 1x1 convolutions that read ``x`` (branch 1, and the reductions that start branches 2 and
    3) run as one convolution with their weights concatenated, followed by one BatchNorm + ReLU over the
    concatenated channels; the result is split. Same arithmetic per output channel; the weights stay in
    their modules (state_dict and official key layout unchanged) and are concatenated on every call."""
    one, two, three, four = (getattr(block, f"branch{i}") for i in (1, 2, 3, 4))
    stems = [one, two[0], three[0]]
    if not (_fusable(stems) and _fusable([four[1]])):
        out: torch.Tensor = block(x)
        return out
    parts = [conv_and_norm(s) for s in stems]
    fused = _batch_norm_relu(pointwise_conv(x, torch.cat([c.weight for c, _ in parts])), [n for _, n in parts])
    branch1, reduced2, reduced3 = fused.split([c.out_channels for c, _ in parts], dim=1)
    proj_conv, proj_norm = conv_and_norm(four[1])
    branch4 = _batch_norm_relu(pointwise_conv(four[0](x), proj_conv.weight), [proj_norm])
    outputs = [branch1, _branch_tail(two, reduced2), _branch_tail(three, reduced3), branch4]
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
            f"csta_lib.runs.locator.backbone_weights({backbone!r}, {str(weights)!r}), which finds it and checks its "
            "sha256"
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

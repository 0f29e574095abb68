"""The trunk's fast path (fused inception 1x1s, stem input gradient, the stem on one of three equal channels,
3x3 weight gradients as shifted matrix products, pool-then-ReLU, matrix resize) against the literal
module-by-module trunk: same values, gradients and BatchNorm running statistics (float64)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from csta_lib.backbones import (EqualChannels, SameConv3x3, Stride2Conv7x7, Trunk, adaptive_window_matrix,
                                equal_channel_stem)


@pytest.mark.parametrize("height,width", [(294, 64), (21, 40), (15, 33), (1, 8)])
def test_stem_input_gradient_matches_torch(height, width):
    torch.manual_seed(0)
    x = torch.randn(1, 3, height, width, dtype=torch.float64, requires_grad=True)
    w = torch.randn(64, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, w, stride=2, padding=3)
    out = Stride2Conv7x7.apply(x, w)
    grad = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, w), grad)
    grads = torch.autograd.grad(out, (x, w), grad)
    assert torch.equal(out, ref)
    for ours, theirs in zip(grads, ref_grads):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("height,width,c_in,c_out", [(73, 40, 5, 7), (1, 1, 3, 2), (4, 9, 16, 8)])
def test_3x3_weight_gradient_matches_torch(height, width, c_in, c_out):
    torch.manual_seed(0)
    x = torch.randn(1, c_in, height, width, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w.requires_grad_()
    ref = F.conv2d(x, w, padding=1)
    out = SameConv3x3.apply(x, w)
    grad = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, w), grad)
    grads = torch.autograd.grad(out, (x, w), grad)
    assert torch.equal(out, ref)
    for ours, theirs in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert grads[1].is_contiguous(memory_format=torch.channels_last)  # the parameter's own layout


def test_window_matrix_is_adaptive_pooling():
    x = torch.randn(7, 5, dtype=torch.float64)
    for n_out in (1, 3, 5, 9, 20):
        expected = F.adaptive_avg_pool1d(x[None], n_out)[0]
        torch.testing.assert_close(x @ adaptive_window_matrix(5, n_out, x).T, expected)


@pytest.mark.parametrize("training", [False, True])
def test_fast_trunk_matches_literal_trunk(training):
    torch.manual_seed(0)
    literal = Trunk("googlenet").double().train(training)
    fast = copy.deepcopy(literal)
    image = torch.randn(1, 3, 60, 96, dtype=torch.float64)
    a_in, b_in = image.clone().requires_grad_(), image.clone().requires_grad_()
    a, b = literal(a_in, literal=True), fast(b_in)
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    grad = torch.randn_like(a)
    a.backward(grad)
    b.backward(grad)
    torch.testing.assert_close(b_in.grad, a_in.grad, rtol=1e-8, atol=1e-10)
    for (name, p), q in zip(literal.named_parameters(), fast.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-8, atol=1e-10, msg=name)
    for (name, s), t in zip(literal.state_dict().items(), fast.state_dict().values()):
        if s.is_floating_point():  # running statistics updated as by each module (float rounding aside)
            torch.testing.assert_close(t, s, rtol=1e-10, atol=1e-12, msg=name)
        else:
            assert torch.equal(s, t), name  # num_batches_tracked


@pytest.mark.parametrize("height,first_rows", [(40, True), (40, False), (5, True), (1, False), (1, True)])
def test_equal_channel_stem_is_the_three_channel_convolution(height, first_rows):
    # CSTA's key image: three equal channels, each below its own CLS row; the stem runs on one channel
    torch.manual_seed(0)
    rows = torch.randn(height, 30, dtype=torch.float64, requires_grad=True)
    heads = torch.randn(3, 30, dtype=torch.float64, requires_grad=True) if first_rows else None
    w = torch.randn(64, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    image = EqualChannels(rows, heads)
    ref = F.conv2d(image.image(), w, stride=2, padding=3)
    out = equal_channel_stem(image, w)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    inputs = (rows, w) if heads is None else (rows, w, heads)
    grad = torch.randn_like(ref)
    for ours, theirs in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(ref, inputs, grad),
                            strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("training", [False, True])
def test_equal_channel_image_through_the_fast_trunk_is_the_literal_trunk(training):
    torch.manual_seed(0)
    literal = Trunk("googlenet").double().train(training)
    fast = copy.deepcopy(literal)
    image = EqualChannels(torch.randn(40, 72, dtype=torch.float64), torch.randn(3, 72, dtype=torch.float64))
    torch.testing.assert_close(fast(image), literal(image.image(), literal=True), rtol=1e-10, atol=1e-12)
    for (name, s), t in zip(literal.state_dict().items(), fast.state_dict().values(), strict=True):
        if s.is_floating_point():  # the running statistics too
            torch.testing.assert_close(t, s, rtol=1e-10, atol=1e-12, msg=name)

"""The trunk's fast path (fused inception 1x1s, stem input gradient, pool-then-ReLU, matrix resize) against
the literal module-by-module trunk: same values, gradients and BatchNorm running statistics (float64)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from csta_lib.backbones import Stride2Conv7x7, Trunk, adaptive_window_matrix


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

"""differentiable_once: torch's once_differentiable semantics, its cost only under create_graph=True."""
import pytest
import torch

from irregconv._autograd import differentiable_once


class _Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    @differentiable_once
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2


def test_first_order_gradients_with_and_without_create_graph():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_Cube.apply, (x,))
    (plain,) = torch.autograd.grad(_Cube.apply(x).sum(), x)
    (recorded,) = torch.autograd.grad(_Cube.apply(x).sum(), x, create_graph=True)
    torch.testing.assert_close(plain, 3 * x.detach() ** 2)
    assert torch.equal(recorded.detach(), plain) and not plain.requires_grad


def test_differentiating_the_gradient_raises_as_once_differentiable_does():
    x = torch.randn(5, requires_grad=True)
    (grad,) = torch.autograd.grad(_Cube.apply(x).pow(2).sum(), x, create_graph=True)  # an incoming grad with a graph
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()

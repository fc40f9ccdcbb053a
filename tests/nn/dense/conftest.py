"""Fixtures shared by the dense-variant tests: batch norm as a plain function, and random batch-norm
statistics (so that eval-mode parity and fusion tests are not trivially the identity)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn


def _batch_norm(x, bn, training):
    """``bn(x)`` from its parameters; in training mode batch statistics without touching the running ones."""
    if training:
        return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _randomise(module):
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
    return module


@pytest.fixture
def batch_norm():
    return _batch_norm


@pytest.fixture
def randomise_batch_norms():
    return _randomise


def _assert_same_forward_backward(module_a, module_b, x, rtol=1e-7, atol=1e-9):
    """``module_a(x) == module_b(x)`` and equal gradients for the input and both modules' parameters."""
    out_a, out_b = module_a(x), module_b(x)
    torch.testing.assert_close(out_a, out_b, rtol=rtol, atol=atol)
    grad_out = torch.randn_like(out_a)
    inputs_a, inputs_b = [x, *module_a.parameters()], [x, *module_b.parameters()]
    for got, want in zip(torch.autograd.grad(out_a, inputs_a, grad_out),
                         torch.autograd.grad(out_b, inputs_b, grad_out)):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


@pytest.fixture
def assert_same_forward_backward():
    return _assert_same_forward_backward

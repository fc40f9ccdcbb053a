"""Fixtures shared by the dense-variant tests: batch norm as a plain function, and random batch-norm
statistics (so that eval-mode parity and fusion tests are not trivially the identity)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irregconv.testing import assert_close_with_grads


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
    assert_close_with_grads(module_a(x), module_b(x), [x, *module_a.parameters()], rtol, atol,
                            ref_inputs=[x, *module_b.parameters()])


@pytest.fixture
def assert_same_forward_backward():
    return _assert_same_forward_backward


def _assert_engine_equals_native(cls, *args, input_shape, **kwargs):
    """``cls(*args, backend="engine", **kwargs)`` and ``cls(*args, **kwargs)`` with the same state agree in
    float64 on a random input of ``input_shape`` (outputs and all gradients)."""
    engine = cls(*args, backend="engine", **kwargs).double()
    native = cls(*args, **kwargs).double()
    native.load_state_dict(engine.state_dict())
    _assert_same_forward_backward(engine, native, torch.randn(*input_shape, dtype=torch.float64, requires_grad=True))


@pytest.fixture
def assert_engine_equals_native():
    return _assert_engine_equals_native


def _explicit_difference(x, weight, a_taps, b_taps, theta, kernel_size, stride, padding, dilation, groups):
    """``sum_t W_t (x(p + a_t) - theta x(p + b_t))`` by gathering the ``k x k`` patches with ``F.unfold``
    (zero padding); ``b_taps=None`` drops the second term. ``weight`` is ``[C_out, C_in / G, T]``."""
    batch, channels, height, width = x.shape
    h_out = (height + 2 * padding[0] - dilation[0] * (kernel_size - 1) - 1) // stride[0] + 1
    w_out = (width + 2 * padding[1] - dilation[1] * (kernel_size - 1) - 1) // stride[1] + 1
    patches = F.unfold(x, kernel_size, dilation, padding, stride).reshape(batch, channels, kernel_size ** 2, -1)
    diff = patches[:, :, list(a_taps)]
    if b_taps is not None:
        diff = diff - theta * patches[:, :, list(b_taps)]
    c_out, taps = weight.size(0), len(a_taps)
    diff = diff.reshape(batch, groups, channels // groups, taps, -1)
    out = torch.einsum("bgctl,goct->bgol", diff, weight.reshape(groups, c_out // groups, channels // groups, taps))
    return out.reshape(batch, c_out, h_out, w_out)


@pytest.fixture
def explicit_difference():
    return _explicit_difference

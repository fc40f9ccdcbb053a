"""Fixtures shared by the sparse-module tests: a seeded random SparseTensor, and parity / gradcheck of a
module's forward as a function of its input features and parameters (so the dense oracle can receive the
very same leaves)."""
import pytest
import torch
from torch.func import functional_call

from irregconv import SparseTensor
from irregconv.testing import assert_parity, random_coords

F64 = dict(rtol=1e-7, atol=1e-9)


def _sparse_input(spatial_shape=(5, 6, 7), channels=3, num_sites=20, batch_size=2, seed=0, dtype=torch.float64,
                  device="cpu"):
    """``num_sites`` random sites per batch item and standard normal features."""
    gen = torch.Generator().manual_seed(seed)
    coords = random_coords(num_sites, spatial_shape, batch_size, gen)
    feats = torch.randn(coords.size(0), channels, dtype=dtype, generator=gen)
    return SparseTensor(feats.to(device), coords.to(device), spatial_shape, batch_size)


def _as_function(module, x, names):
    """``f(feats, *params) -> output feats``: the module run on ``x.replace(feats)`` with ``params`` in place of
    the named parameters."""
    def run(feats, *params):
        out = functional_call(module, dict(zip(names, params)), (x.replace(feats),))
        return out.feats if isinstance(out, SparseTensor) else out
    return run


def _leaves(module, x):
    names = [name for name, _ in module.named_parameters()]
    leaves = [x.feats.detach().clone().requires_grad_()]
    leaves += [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    return names, leaves


def _check_parity(module, x, oracle, rtol=F64["rtol"], atol=F64["atol"], seed=0):
    """Assert ``module(x)`` and ``oracle(feats, *params)`` (parameters in ``named_parameters`` order) agree in
    the output and in the gradients with respect to the features and every parameter."""
    names, leaves = _leaves(module, x)
    assert_parity(_as_function(module, x, names), oracle, leaves, rtol=rtol, atol=atol,
                  generator=torch.Generator().manual_seed(seed))


def _gradcheck(module, x):
    """float64 ``gradcheck`` of the module with respect to the features and every parameter."""
    names, leaves = _leaves(module, x)
    assert torch.autograd.gradcheck(_as_function(module, x, names), tuple(leaves))


@pytest.fixture
def sparse_input():
    return _sparse_input


@pytest.fixture
def check_parity():
    return _check_parity


@pytest.fixture
def gradcheck_module():
    return _gradcheck

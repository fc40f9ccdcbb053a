"""Fixtures shared by the sparse-module tests: a seeded random SparseTensor; parity / gradcheck of a module's
forward as a function of its input features and parameters (so the dense oracle can receive the very same
leaves); the dense per-batch-item reference of the expert-bank convolutions."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from irregconv import SparseTensor
from irregconv.testing import assert_parity, densify, random_coords, values_at, weight_to_torch

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


def _expert_reference(module, x, coefficients):
    """Dense per-batch-item reference of an expert-bank submanifold conv (SparseCondConv3d, SparseDynamicConv3d).

    ``coefficients(params, gap [1, C_in]) -> [1, E]`` is the variant's routing formula, ``params`` the dict of
    its named parameters. For each item ``b`` with sites: densify its sites alone, average over its ACTIVE
    sites (grid sum / number of sites), mix the experts in torch's layout, run ``F.conv3d`` with padding
    ``(k // 2) * dilation`` and read the item's sites. Returns ``oracle(feats, *params) -> [N, C_out]``.
    """
    names = [name for name, _ in module.named_parameters()]
    taps = None if module.region.kind == "cube" else module.region.taps
    padding = tuple(k // 2 * d for k, d in zip(module.kernel_size, module.dilation))

    def run(feats, *leaves):
        params = dict(zip(names, leaves))
        out = feats.new_zeros(feats.size(0), module.out_channels)
        for b in range(x.batch_size):
            rows = (x.coords[:, 0] == b).nonzero().flatten()
            if rows.numel() == 0:
                continue
            coords = x.coords[rows].clone()
            coords[:, 0] = 0
            grid = densify(feats[rows], coords, x.spatial_shape, 1)
            gap = grid.sum(dim=(2, 3, 4)) / rows.numel()
            coeff = coefficients(params, gap)[0]
            weight = sum(coeff[e] * weight_to_torch(params["weight"][e], module.kernel_size, taps)
                         for e in range(module.num_experts))
            bias = coeff @ params["bias"] if "bias" in params else None
            dense = F.conv3d(grid, weight, bias, 1, padding, module.dilation, module.groups)
            out = out.index_put((rows,), values_at(dense, coords))
        return out
    return run


@pytest.fixture
def expert_reference():
    return _expert_reference

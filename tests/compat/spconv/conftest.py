"""Fixtures shared by the spconv drop-in tests: seeded random inputs, the real spconv run as a reference (one
thread, its convolutions in train mode, no grad; see NOTES.md), rows in coordinate order, and module twins with
spconv's parameters."""
import pytest
import torch

from irregconv.compat import spconv
from irregconv.testing import random_coords, threads


def _real_spconv():
    import spconv.pytorch as real
    return real


def _run_spconv(module, *tensor_args):
    """A real spconv module on ``SparseConvTensor(*tensor_args)``: one thread (its CPU path races with more,
    see NOTES.md; set right before the call because a first numba launch elsewhere may reset the count),
    its convolutions in train mode (a bias in eval mode fails on its CPU path; other modules keep their
    mode), no grad (its backward needs CUDA)."""
    real = _real_spconv()
    for sub in module.modules():
        if isinstance(sub, real.conv.SparseConvolution):
            sub.train()
    with threads(1), torch.no_grad():
        return module(real.SparseConvTensor(*tensor_args))


def _sorted_rows(features, indices, spatial_shape):
    """Rows ordered by (batch, *spatial): spconv orders strided outputs its own way."""
    key = indices[:, 0].long()
    for axis, extent in enumerate(spatial_shape):
        key = key * extent + indices[:, 1 + axis].long()
    order = torch.argsort(key)
    return features[order], indices[order]


def _make_input(num_sites=120, spatial_shape=(9, 10, 11), batch_size=2, channels=4, seed=0, dtype=torch.float32):
    """``(features, indices, spatial_shape, batch_size)`` of ``num_sites`` random sites per batch item."""
    gen = torch.Generator().manual_seed(seed)
    coords = random_coords(num_sites, spatial_shape, batch_size, generator=gen)
    feats = torch.randn(coords.size(0), channels, generator=gen, dtype=dtype)
    return feats, coords, list(spatial_shape), batch_size


def _shim_twin(name, *args, **kwargs):
    """The spconv module ``name`` and the drop-in's, with the same (spconv-initialised) parameters."""
    theirs = getattr(_real_spconv(), name)(*args, **kwargs)
    ours = getattr(spconv, name)(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.fixture
def real_spconv():
    """``real_spconv()``: the installed ``spconv.pytorch``."""
    return _real_spconv


@pytest.fixture
def run_spconv():
    return _run_spconv


@pytest.fixture
def sorted_rows():
    return _sorted_rows


@pytest.fixture
def make_input():
    return _make_input


@pytest.fixture
def shim_twin():
    return _shim_twin

"""Fixtures for the project-style tests: model files written the way Pointcept, mmdetection3d and OpenPCDet
write them (``models/*.py``, each with its own ``import spconv...`` lines) loaded once on the real spconv and
once with those imports resolved to irregconv's drop-in; spconv run as a reference; rows compared in
coordinate order; batch norms given statistics that are not the identity.

The model files are data for the tests, not test modules: they are executed, never collected.
"""
import contextlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from irregconv.testing import threads

MODELS = Path(__file__).parent / "models"
FLAVOURS = ("spconv", "irregconv")


def _spconv_entries():
    return {name: module for name, module in sys.modules.items() if name == "spconv" or name.startswith("spconv.")}


@contextlib.contextmanager
def spconv_imports_resolve_to_irregconv():
    """Within the block every ``import spconv...`` gives irregconv's drop-in (its ``install()``); afterwards
    ``sys.modules`` holds exactly the spconv entries it held before."""
    from irregconv.compat import spconv as drop_in

    saved = _spconv_entries()
    try:
        drop_in.install()
        yield
    finally:
        for name in _spconv_entries():
            del sys.modules[name]
        sys.modules.update(saved)


def _load(stem: str, flavour: str):
    path = MODELS / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"{stem}_on_{flavour}", path)
    module = importlib.util.module_from_spec(spec)
    if flavour == "spconv":
        import spconv.pytorch  # noqa: F401  the real package, imported before the file's own imports
        spec.loader.exec_module(module)
    elif flavour == "irregconv":
        with spconv_imports_resolve_to_irregconv():
            spec.loader.exec_module(module)
    else:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    return module


@pytest.fixture
def load_models():
    """``load_models(stem) -> (on_spconv, on_irregconv)``: ``models/<stem>.py`` executed twice, unchanged."""
    return lambda stem: (_load(stem, "spconv"), _load(stem, "irregconv"))


@pytest.fixture
def as_spconv_reference():
    """``with as_spconv_reference(model): ...`` runs the real spconv as a reference: one thread (its CPU path
    races with more, see NOTES.md), its convolutions in train mode (a bias in eval mode fails on its CPU
    path; other modules keep their mode, so batch norms use their running statistics), no grad (its
    backward needs CUDA)."""
    @contextlib.contextmanager
    def reference(model):
        import spconv.pytorch as real
        for sub in model.modules():
            if isinstance(sub, real.conv.SparseConvolution):
                sub.train()
        with threads(1), torch.no_grad():
            yield
    return reference


def rows_by_coordinates(features, indices):
    """``features`` and ``indices`` with rows ordered by (batch, *spatial): spconv orders strided outputs its
    own way."""
    order = torch.arange(indices.size(0))
    for column in reversed(range(indices.size(1))):  # stable sorts, last key first
        order = order[torch.sort(indices[order, column], stable=True).indices]
    return features[order], indices[order]


@pytest.fixture
def by_coordinates():
    return rows_by_coordinates


@pytest.fixture
def randomize_norms():
    """``randomize_norms(model, seed)``: every batch / layer norm gets random affine parameters and running
    statistics, so a parity test in eval mode does not pass through identity norms."""
    def randomize(model, seed):
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for sub in model.modules():
                if isinstance(sub, (nn.BatchNorm1d, nn.LayerNorm)):
                    sub.weight.copy_(0.5 + torch.rand(sub.weight.shape, generator=gen))
                    sub.bias.copy_(0.2 * torch.randn(sub.bias.shape, generator=gen))
                if isinstance(sub, nn.BatchNorm1d):
                    sub.running_mean.copy_(0.2 * torch.randn(sub.running_mean.shape, generator=gen))
                    sub.running_var.copy_(0.5 + torch.rand(sub.running_var.shape, generator=gen))
        return model
    return randomize


@pytest.fixture
def twins(randomize_norms):
    """``twins(pair, build, seed=0)``: the model ``build(module)`` for both modules of ``pair`` (spconv's and
    the drop-in's), the drop-in loaded with spconv's randomized state (``randomize_norms(theirs, seed)``), both
    in eval mode."""
    def build_twins(pair, build, seed=0):
        theirs, ours = (build(module) for module in pair)
        randomize_norms(theirs, seed)
        ours.load_state_dict(theirs.state_dict())
        return theirs.eval(), ours.eval()
    return build_twins


"""irregconv: non-grid convolutions for PyTorch.

Every convolution is gather -> compute -> scatter over a rulebook: sparse 3D convolution of voxels,
graph convolution over edge lists and dense-grid convolution share one engine.

After ``import irregconv`` every subpackage is an attribute (``irregconv.nn.SubMConv3d``,
``irregconv.functional.gcn_norm``, ``irregconv.data.collate``, ...). ``nn`` and ``compat`` are imported on
first access (``nn``'s graph layers take PyG's ``MessagePassing`` as their base class where PyG is installed,
which costs seconds), so ``import irregconv`` itself imports no optional package (spconv, torch_geometric,
open3d) and stays fast.
"""
import importlib

from ._determinism import request_reproducible_blas

request_reproducible_blas()  # before any matrix product runs (see irregconv/_determinism.py)

from . import data, engine, functional, hashing, io, rulebook  # noqa: E402
from .tensor import SparseTensor  # noqa: E402

_LAZY_SUBPACKAGES = ("compat", "nn")


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)   # binds irregconv.<name>: later lookups skip this
    raise AttributeError(f"module 'irregconv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES))


__version__ = "0.1.0"
__all__ = ["SparseTensor", "compat", "data", "engine", "functional", "hashing", "io", "nn", "rulebook",
           "__version__"]

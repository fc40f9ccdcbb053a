"""irregconv: non-grid convolutions for PyTorch.

Every convolution is gather -> compute -> scatter over a rulebook: sparse 3D convolution of voxels,
graph convolution over edge lists and dense-grid convolution share one engine.
"""
from ._determinism import request_reproducible_blas

request_reproducible_blas()  # before any matrix product runs (see irregconv/_determinism.py)

from . import data, engine  # noqa: E402, functional, hashing, nn, rulebook
from .tensor import SparseTensor  # noqa: E402

__version__ = "0.1.0"
__all__ = ["SparseTensor", "data", "engine", "functional", "hashing", "nn", "rulebook", "__version__"]

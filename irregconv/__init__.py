"""irregconv: non-grid convolutions for PyTorch.

Every convolution is gather -> compute -> scatter over a rulebook: sparse 3D convolution of voxels,
graph convolution over edge lists and dense-grid convolution share one engine.
"""
from . import data, engine, functional, hashing, nn, rulebook
from .tensor import SparseTensor

__version__ = "0.1.0"
__all__ = ["SparseTensor", "data", "engine", "functional", "hashing", "nn", "rulebook", "__version__"]

"""irregconv: non-grid convolutions for PyTorch.

Every convolution is gather -> compute -> scatter over a rulebook: sparse 3D convolution of voxels,
graph convolution over edge lists and dense-grid convolution share one engine.

After ``import irregconv`` every subpackage is an attribute (``irregconv.nn.SubMConv3d``,
``irregconv.functional.gcn_norm``, ``irregconv.data.collate``, ...). No optional package (spconv,
torch_geometric, open3d) is imported here: the graph layers, which take PyG's ``MessagePassing`` as their base
class where PyG is installed, load on first use of one of their names (see ``irregconv.nn``).
"""
from ._determinism import request_reproducible_blas

request_reproducible_blas()  # before any matrix product runs (see irregconv/_determinism.py)

from . import compat, data, engine, functional, hashing, io, nn, rulebook  # noqa: E402
from .tensor import SparseTensor  # noqa: E402

__version__ = "0.1.0"
__all__ = ["SparseTensor", "compat", "data", "engine", "functional", "hashing", "io", "nn", "rulebook",
           "__version__"]

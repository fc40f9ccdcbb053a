"""Neural-network modules: sparse (voxels), graph and dense-grid convolutions.

Every module here runs gather -> compute -> scatter over a rulebook (see ``irregconv.engine``);
dense variants default to torch's native kernels and can select the engine explicitly.
"""
from . import dense, graph, sparse
from .dense import *  # noqa: F401,F403
from .graph import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403

__all__ = sparse.__all__ + graph.__all__ + dense.__all__

"""Neural-network modules: sparse (voxels), graph and dense-grid convolutions.

Every module here runs gather -> compute -> scatter over a rulebook (see ``irregconv.engine``);
dense variants default to torch's native kernels and can select the engine explicitly.

The graph layers (``irregconv.nn.graph``) are imported on first use of one of their names
(``irregconv.nn.GCNConv``, ``from irregconv.nn import GCNConv``): where PyG is installed they take its
``MessagePassing`` as their base class (so ``torch_geometric.nn.to_hetero`` accepts them), and importing
PyG costs more than a second, which sparse and dense users should not pay.
"""
import importlib

from . import dense, sparse
from .dense import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403

#: names of ``irregconv.nn.graph`` served from here on first access
GRAPH_NAMES = ("EdgeConv", "GCNConv", "GINConv", "GraphConv", "SAGEConv", "knn_graph")


def __getattr__(name: str):
    if name == "graph" or name in GRAPH_NAMES:
        graph = importlib.import_module(".graph", __name__)   # binds irregconv.nn.graph
        return graph if name == "graph" else getattr(graph, name)
    raise AttributeError(f"module 'irregconv.nn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(GRAPH_NAMES) | {"graph"})


__all__ = sparse.__all__ + list(GRAPH_NAMES) + dense.__all__

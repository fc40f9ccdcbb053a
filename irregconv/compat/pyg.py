"""Conversions between PyG (torch_geometric) graphs and irregconv inputs.

PyG itself is only imported by :func:`to_pyg_data`; reading a ``Data`` object is duck-typed, so graph
layers accept one without the package being a hard dependency. Parameter names of the graph layers
already match PyG's (``lin.weight``, ``bias``, ``lin_rel``, ``lin_root``, ``lin_l``, ``lin_r``, ``nn``,
``aggr_module``), so PyG state dicts load with ``load_state_dict`` unchanged.

What else the graph layers take from PyG lives with them (:mod:`irregconv.nn.graph`): every edge format
PyG's layers accept (``EdgeIndex``, torch sparse ``adj_t``, ``size=``, ``(x_src, None)``), lazy
``in_channels=-1``, PyG's reprs, ``Aggregation`` modules as ``aggr``, GCNConv's ``_cached_edge_index``
reset, and the ``MessagePassing`` type where PyG is installed, so that ``torch_geometric.nn.to_hetero``
replicates them per edge type.
"""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor

from ..functional.graph import adjacency_to_edge_index, is_sparse


def from_pyg_data(data) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """``(x, edge_index, edge_weight)`` of a PyG ``Data``.

    The edges come from ``data.edge_index`` or, when that is missing, a torch-sparse ``data.adj_t``
    (``A[target, source]``, as made by PyG's ``ToSparseTensor``), whose values become the weights.
    ``edge_weight`` is ``data.edge_weight`` when present.

    Shapes:
        ``x [N, C]``, ``edge_index [2, E]``, ``edge_weight [E]`` or None.
    """
    x = getattr(data, "x", None)
    if x is None:
        raise ValueError(f"from_pyg_data: the {type(data).__name__} has no node features 'x'; set data.x")
    edge_index = getattr(data, "edge_index", None)
    edge_weight = getattr(data, "edge_weight", None)
    if edge_index is None:
        adj_t = getattr(data, "adj_t", None)
        if not is_sparse(adj_t):
            raise ValueError(f"from_pyg_data: the {type(data).__name__} has neither 'edge_index' nor a torch "
                             f"sparse 'adj_t' (got {type(adj_t).__name__}); set one of them")
        edge_index, edge_weight = adjacency_to_edge_index(adj_t, "from_pyg_data")
    return x, edge_index, edge_weight


def to_pyg_data(graph):
    """A PyG ``Data`` with the tensors of an :class:`irregconv.data.NodeClassificationGraph`."""
    try:
        from torch_geometric.data import Data
    except ImportError as err:
        raise ImportError("to_pyg_data needs the package torch_geometric (pip install 'irregconv[pyg]')") from err
    return Data(x=graph.x, edge_index=graph.edge_index, y=graph.y, train_mask=graph.train_mask,
                val_mask=graph.val_mask, test_mask=graph.test_mask)

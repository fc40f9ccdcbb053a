"""What the graph layers share: their base class, input unpacking (features, edges, ``size``), lazy linears,
neighbour aggregation (the engine's reductions or a PyG ``Aggregation`` module) and argument checks."""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.parameter import UninitializedParameter

from ...functional.graph import is_sparse, propagate, unpack_graph_inputs
from ...rulebook import Rulebook, build_graph_rulebook
from ...rulebook.cache import IdentityCache
from ...rulebook.rulebook import pointer_from_counts

try:
    from torch_geometric.nn import MessagePassing as _LayerBase
except ImportError:  # PyG is optional: without it the layers are plain modules
    _LayerBase = nn.Module

Channels = Union[int, Tuple[int, int]]
Aggr = Union[str, List[str], nn.Module]

#: reductions the engine runs itself; anything else is a PyG ``Aggregation`` module
ENGINE_REDUCTIONS = ("sum", "add", "mean", "max", "min")


class GraphLayer(_LayerBase):
    """Base of the graph layers: a ``torch.nn.Module``, typed as PyG's ``MessagePassing`` when PyG is installed.

    PyG's tools find message-passing layers by type: ``torch_geometric.nn.to_hetero`` replicates a layer
    that is a ``MessagePassing`` once per edge type and sums (``aggr``) the outputs per destination type;
    any other module it replicates per node or edge type by its inputs, which turns a graph layer's output
    into per-edge-type values. So the layers subclass ``MessagePassing`` where PyG imports, and only
    borrow the type: PyG's ``MessagePassing.__init__`` (signature inspection, generated ``propagate``) is
    not run, and its ``propagate``, message hooks, decomposition and explain machinery do not apply;
    ``forward`` runs on irregconv's engine (PyG's explainers skip the layers: they cannot mask their edges).
    Importing the layers imports PyG where it is installed. Reprs are PyG's: ``Name(in_channels,
    out_channels)``, or ``Name(nn=...)`` for layers built around a network.
    """

    _explain = False  # read by PyG's explainers through MessagePassing.explain: "no edge masks here"

    def __init__(self):
        nn.Module.__init__(self)  # not MessagePassing.__init__ (see above)

    __setstate__ = nn.Module.__setstate__  # MessagePassing's would regenerate its propagate

    def __repr__(self) -> str:
        if hasattr(self, "in_channels"):
            return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"
        return f"{type(self).__name__}(nn={self.nn})"


# ---------------------------------------------------------------------------------------------- checks

def check_channels(owner: str, in_channels: Channels, out_channels: int, bipartite: bool = True) -> None:
    """Raise unless ``in_channels`` is a positive int or -1 (lazy: the width of the first input), or, for a
    ``bipartite`` layer, a pair of them, and ``out_channels`` a positive int (bools and floats are refused)."""
    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def width(value) -> bool:
        return integer(value) and (value > 0 or value == -1)

    pair = bipartite and isinstance(in_channels, (tuple, list)) and len(in_channels) == 2
    if not (width(in_channels) or (pair and all(width(c) for c in in_channels))):
        raise ValueError(f"{owner}: in_channels must be a positive int or -1 (inferred from the first input)"
                         + (", or a pair of them (source, target)" if bipartite else "") + f", got {in_channels!r}")
    if not (integer(out_channels) and out_channels > 0):
        raise ValueError(f"{owner}: out_channels must be a positive int, got {out_channels!r}")


def check_message_nn(owner: str, module) -> None:
    """Raise unless ``module`` (the layer's message / update network) is a ``torch.nn.Module``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"{owner}: nn must be a torch.nn.Module (e.g. torch.nn.Linear or Sequential), got "
                        f"{type(module).__name__}")


def pair_channels(in_channels: Channels) -> Tuple[int, int]:
    """``(C_src, C_dst)`` from an int or a pair (bipartite layers, as in PyG)."""
    return (in_channels, in_channels) if isinstance(in_channels, int) else tuple(in_channels)


def check_features(owner: str, x: Tensor, channels: Optional[int], argument: str = "x") -> None:
    """Raise unless ``x`` is a floating point tensor ``[..., N, channels]`` (any width if ``channels`` is None)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {argument} must be a tensor [N, C], got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{owner}: {argument} must be floating point, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{owner}: {argument} must have shape [N, C], got {list(x.shape)}")
    if channels is not None and x.size(-1) != channels:
        raise ValueError(f"{owner}: {argument} must have shape [N, {channels}] (in_channels = {channels}), "
                         f"got {list(x.shape)}")


# ------------------------------------------------------------------------------------------ lazy linears

def make_linear(in_channels: int, out_channels: int, bias: bool) -> nn.Module:
    """``nn.Linear``, or ``nn.LazyLinear`` for ``in_channels == -1`` (as PyG's ``Linear``): its weight is
    materialised by :func:`materialize` at the first forward, and a state dict of a materialised layer
    loads into a lazy one."""
    return nn.LazyLinear(out_channels, bias=bias) if in_channels == -1 else nn.Linear(in_channels, out_channels, bias)


def is_lazy(linear: nn.Module) -> bool:
    return isinstance(linear.weight, UninitializedParameter)


def materialize(linear: Optional[nn.Module], x: Optional[Tensor], init: Optional[Callable[[Tensor], None]] = None
                ) -> None:
    """Give a lazy linear the width of ``x [..., C]`` (one call on an empty batch runs torch's own lazy
    initialisation, then ``init`` re-initialises the weight); no-op for a materialised one or no ``x``."""
    if linear is not None and x is not None and is_lazy(linear):
        linear(torch.empty(0, x.size(-1), dtype=linear.weight.dtype, device=linear.weight.device))
        if init is not None:
            init(linear.weight)


def in_width(linear: nn.Module) -> Optional[int]:
    """The input width a linear expects, None while it is lazy."""
    return None if is_lazy(linear) else linear.weight.size(1)


# ------------------------------------------------------------------------------------------------ inputs

def _check_size(owner: str, size: Tuple[Optional[int], Optional[int]], dim: int, x: Tensor, role: str) -> int:
    rows = x.size(-2)
    if size[dim] is not None and size[dim] != rows:
        raise ValueError(f"{owner}: size = {tuple(size)} says {size[dim]} {role} nodes but the {role} features "
                         f"have {rows} rows; pass size=None or features with {size[dim]} rows")
    return rows


def graph_pair_inputs(owner: str, x, edge_index, edge_weight: Optional[Tensor], size, channels: Tuple,
                      cache: IdentityCache):
    """Unpack the inputs of a layer that takes ``x`` or a bipartite pair ``(x_src, x_dst)``.

    ``channels`` is ``(C_src, C_dst)`` to check the widths against (None entries are not checked); the node
    counts come from the features and ``size = (N_src, N_dst)`` (from the argument, a sparse adjacency's
    shape or an ``EdgeIndex``'s sparse size), which must agree; the rulebook is reused while
    ``edge_index`` is the same unmodified tensor (``cache``).

    Returns:
        ``(x_src, x_dst, rulebook, edge_weight in pair order or None)``; ``x_dst`` may be None (bipartite
        input without target features: the targets are ``size[1]``, else as many as the edges name).
    """
    x, edge_index, edge_weight, size = unpack_graph_inputs(x, edge_index, edge_weight, owner, size)
    x_src, x_dst = (x[0], x[1]) if isinstance(x, (tuple, list)) else (x, x)
    check_features(owner, x_src, channels[0], "x (source features)")
    num_in = _check_size(owner, size, 0, x_src, "source")
    if x_dst is not None:
        check_features(owner, x_dst, channels[1], "x (target features)")
        num_out = _check_size(owner, size, 1, x_dst, "target")
    elif size[1] is not None:
        num_out = size[1]
    else:
        num_out = int(edge_index[1].max()) + 1 if edge_index.numel() else 0
    rulebook: Rulebook = cache.get_or_build((edge_index,), (num_in, num_out),
                                            lambda: build_graph_rulebook(edge_index, num_in, num_out))
    return x_src, x_dst, rulebook, None if edge_weight is None else edge_weight.index_select(0, rulebook.pair_ids)


# ------------------------------------------------------------------------------------------- aggregation

def resolve_aggregation(owner: str, aggr: Aggr, aggr_kwargs: Optional[dict]):
    """``(aggr as PyG shows it, the PyG Aggregation module or None)`` of a layer's ``aggr`` argument.

    The engine's reductions (``"sum"``/``"add"``, ``"mean"``, ``"max"``, ``"min"``) need no module; any other
    name, a list of names (PyG's ``MultiAggregation``, configured by ``aggr_kwargs`` such as ``mode``) or an
    ``Aggregation`` module goes through PyG's ``aggregation_resolver``, as in PyG.
    """
    if isinstance(aggr, str) and aggr in ENGINE_REDUCTIONS and not aggr_kwargs:
        return aggr, None
    if not isinstance(aggr, (str, list, tuple, nn.Module)):
        raise TypeError(f"{owner}: aggr must be a string such as 'mean', a list of them or a PyG Aggregation "
                        f"module, got {type(aggr).__name__}")
    try:
        from torch_geometric.nn.aggr import Aggregation
        from torch_geometric.nn.resolver import aggregation_resolver
    except ImportError as err:
        raise ImportError(f"{owner}: aggr={aggr!r} needs the package torch_geometric (PyG's aggregations); the "
                          f"engine alone runs {ENGINE_REDUCTIONS}") from err
    if isinstance(aggr, nn.Module) and not isinstance(aggr, Aggregation):
        raise TypeError(f"{owner}: an aggr module must be a torch_geometric.nn.aggr.Aggregation, got "
                        f"{type(aggr).__name__}")
    try:
        module = aggregation_resolver(aggr, **(aggr_kwargs or {}))
    except ValueError as err:
        raise ValueError(f"{owner}: cannot resolve aggr={aggr!r}: {err}") from err
    shown = [str(a) for a in aggr] if isinstance(aggr, (list, tuple)) else str(aggr)
    return shown, module


def aggregate_messages(messages: Tensor, rulebook: Rulebook, aggr_module: nn.Module) -> Tensor:
    """Reduce per-pair ``messages [..., P, C]`` into their targets with a PyG ``Aggregation`` module.

    The rulebook's pairs are sorted by target, so the module gets them in CSR order: ``index`` (the
    target of every pair, sorted), ``ptr [N_out + 1]`` and ``dim_size = N_out``, which is what order-aware
    aggregations (LSTM, MLP, sorting) consume.
    """
    ptr = pointer_from_counts(torch.bincount(rulebook.out_idx, minlength=rulebook.num_out))
    return aggr_module(messages, rulebook.out_idx, ptr=ptr, dim_size=rulebook.num_out, dim=-2)


def aggregate_neighbours(x_src: Tensor, rulebook: Rulebook, pair_scale: Optional[Tensor], weight: Optional[Tensor],
                         aggr: str, aggr_module: Optional[nn.Module], cache: IdentityCache) -> Tensor:
    """``(aggregate over j of pair_scale * x_j) @ weight`` per target: one engine call for the engine's
    reductions, else the gathered messages reduced by ``aggr_module`` (:func:`aggregate_messages`)."""
    if aggr_module is None:
        return propagate(x_src, rulebook, pair_scale, weight, aggr, cache)
    x_src = x_src.to_dense() if is_sparse(x_src) else x_src
    messages = x_src.index_select(-2, rulebook.in_idx)
    if pair_scale is not None:
        messages = messages * pair_scale.to(messages.dtype).unsqueeze(-1)
    out = aggregate_messages(messages, rulebook, aggr_module)
    return out if weight is None else out @ weight

"""Helpers shared by the graph layers: PyG-style short reprs, input checks, bipartite inputs."""
from __future__ import annotations

from typing import Optional, Tuple, Union

from torch import Tensor
from torch.nn import Module

from ...functional.graph import unpack_graph_inputs
from ...rulebook import Rulebook, build_graph_rulebook
from ...rulebook.cache import IdentityCache

Channels = Union[int, Tuple[int, int]]


def layer_repr(module, positional, **options) -> str:
    """``Name(a, b, key=value)`` listing only the options that differ from their defaults.

    ``options`` maps a name to ``(value, default)``.
    """
    parts = [str(p) for p in positional]
    parts += [f"{name}={value!r}" for name, (value, default) in options.items() if value != default]
    return f"{type(module).__name__}({', '.join(parts)})"


def check_channels(owner: str, in_channels: Channels, out_channels: int, bipartite: bool = True) -> None:
    """Raise unless ``in_channels`` is a positive int (or, for a ``bipartite`` layer, a pair of them) and
    ``out_channels`` a positive int (bools and floats are refused, not truncated)."""
    def positive(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    pair = bipartite and isinstance(in_channels, (tuple, list)) and len(in_channels) == 2
    if not (positive(in_channels) or (pair and all(positive(c) for c in in_channels))):
        raise ValueError(f"{owner}: in_channels must be a positive int"
                         + (" or a pair of them (source, target)" if bipartite else "") + f", got {in_channels!r}")
    if not positive(out_channels):
        raise ValueError(f"{owner}: out_channels must be a positive int, got {out_channels!r}")


def check_message_nn(owner: str, module) -> None:
    """Raise unless ``module`` (the layer's message / update network) is a ``torch.nn.Module``."""
    if not isinstance(module, Module):
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


def graph_pair_inputs(owner: str, x, edge_index, edge_weight: Optional[Tensor], in_channels: Optional[Channels],
                      cache: IdentityCache):
    """Unpack the inputs of a layer that takes ``x`` or a bipartite pair ``(x_src, x_dst)``; the widths are
    checked against ``in_channels`` unless it is None; the rulebook is reused while ``edge_index`` is the
    same unmodified tensor (``cache``).

    Returns:
        ``(x_src, x_dst, rulebook, edge_weight in pair order or None)``; ``x_dst`` may be None
        (bipartite input without target features).
    """
    x, edge_index, edge_weight = unpack_graph_inputs(x, edge_index, edge_weight, owner)
    x_src, x_dst = (x[0], x[1]) if isinstance(x, (tuple, list)) else (x, x)
    c_src, c_dst = (None, None) if in_channels is None else pair_channels(in_channels)
    check_features(owner, x_src, c_src, "x (source features)")
    if x_dst is not None:
        check_features(owner, x_dst, c_dst, "x (target features)")
    if x_dst is not None:
        num_out = x_dst.size(-2)
    else:  # no target features: as many targets as the edges name
        num_out = int(edge_index[1].max()) + 1 if edge_index.numel() else 0
    num_in = x_src.size(-2)
    rulebook: Rulebook = cache.get_or_build((edge_index,), (num_in, num_out),
                                            lambda: build_graph_rulebook(edge_index, num_in, num_out))
    return x_src, x_dst, rulebook, None if edge_weight is None else edge_weight.index_select(0, rulebook.pair_ids)

"""Shape-named aliases and flags for optional dependencies.

Shape symbols used in docstrings across the package: ``N_in``, ``N_out`` (sites), ``P`` (pairs),
``K`` (kernel volume), ``C_in``, ``C_out``, ``G`` (groups), ``B`` (batch), ``D`` (spatial dims),
``E`` (edges).
"""
from __future__ import annotations

import importlib.util
from typing import Sequence, Tuple, Union

from torch import Tensor

Feats = Tensor          #: ``[N, C]`` floating point features
Coords = Tensor         #: ``[N, 1 + D]`` integer coordinates, batch index in column 0
EdgeIndex = Tensor      #: ``[2, E]`` int64, row 0 source, row 1 target
IntOrTuple = Union[int, Sequence[int]]
Shape = Tuple[int, ...]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


WITH_NUMBA = _has("numba")
WITH_PYG = _has("torch_geometric")
WITH_SPCONV = _has("spconv")
WITH_OPEN3D = _has("open3d")
WITH_MATPLOTLIB = _has("matplotlib")

"""Sparse pooling: a strided (or submanifold) rulebook with an aggregation instead of a weight.

Gather -> compute -> scatter with ``compute`` the identity and ``scatter`` a max / mean reduction over the
active inputs of each window (:func:`irregconv.engine.aggregate`). Max pooling is exact for negative
features (spconv starts its accumulator at 0).
"""
from __future__ import annotations

import torch

from ...functional.sparse_pool import global_pool, sparse_pool
from ...rulebook.region import as_tuple
from ...tensor import SparseTensor
from .base import SparseModule, check_sparse_input, make_region


class SparsePoolNd(SparseModule):
    """Pooling over the active sites under each window.

    Args:
        kernel_size (int or tuple): window.
        stride (int or tuple, optional): default ``kernel_size``.
        padding, dilation (int or tuple): as ``torch.nn.MaxPool3d`` (default: 0, 1).
        subm (bool): keep the input sites (a centred window) instead of striding (default: False).

    Shapes:
        - input: SparseTensor ``[N_in, C]`` -> output SparseTensor ``[N_out, C]`` on the sites a strided
          conv with this geometry produces (``N_out = N_in`` with ``subm``).
    """

    reduce: str = ""
    dims: int = 0

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, subm: bool = False):
        super().__init__()
        owner = type(self).__name__
        self.region = make_region("cube", kernel_size, self.dims, owner)
        self.kernel_size = self.region.kernel_size
        self.stride = as_tuple(self.kernel_size if stride is None else stride, self.dims, "stride", owner)
        self.padding = as_tuple(padding, self.dims, "padding", owner, minimum=0)
        self.dilation = as_tuple(dilation, self.dims, "dilation", owner)
        self.subm = subm

    def forward(self, input: SparseTensor) -> SparseTensor:
        check_sparse_input(self, input, self.dims, None)
        return sparse_pool(input, self.region, self.stride, self.padding, self.dilation, self.reduce, self.subm)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (f", dilation={self.dilation}" if any(d != 1 for d in self.dilation) else "")
                + (", subm=True" if self.subm else ""))


class SparseMaxPool1d(SparsePoolNd):
    """1D max pooling."""
    reduce, dims = "max", 1


class SparseMaxPool2d(SparsePoolNd):
    """2D max pooling."""
    reduce, dims = "max", 2


class SparseMaxPool3d(SparsePoolNd):
    """3D max pooling."""
    reduce, dims = "max", 3


class SparseAvgPool1d(SparsePoolNd):
    """1D average pooling over active inputs."""
    reduce, dims = "mean", 1


class SparseAvgPool2d(SparsePoolNd):
    """2D average pooling over active inputs."""
    reduce, dims = "mean", 2


class SparseAvgPool3d(SparsePoolNd):
    """3D average pooling over active inputs."""
    reduce, dims = "mean", 3


class SparseGlobalPool(SparseModule):
    """Per batch item reduction of all sites: SparseTensor ``[N, C]`` -> dense ``[B, C]``.

    Args:
        reduce (str): ``"max"``, ``"mean"`` or ``"sum"`` (default: ``"max"``). Items without sites give 0.
    """

    def __init__(self, reduce: str = "max"):
        super().__init__()
        if reduce not in ("max", "mean", "sum"):
            raise ValueError(f"SparseGlobalPool: reduce must be 'max', 'mean' or 'sum', got {reduce!r}")
        self.reduce = reduce

    def forward(self, input: SparseTensor) -> torch.Tensor:
        if not isinstance(input, SparseTensor):
            raise TypeError(f"SparseGlobalPool: input must be an irregconv.SparseTensor, got {type(input).__name__}")
        return global_pool(input, self.reduce)

    def extra_repr(self) -> str:
        return f"reduce={self.reduce!r}"

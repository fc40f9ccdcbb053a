"""``spconv.pytorch.pool``: spconv's sparse pooling on irregconv's engine.

``SparseMaxPool{1,2,3,4}d`` and ``SparseAvgPool{1,2,3}d`` reduce the features of each window over the rulebook
of a strided convolution with the pool's geometry (of a submanifold one with ``subm=True``),
:func:`irregconv.functional.sparse_pool.sparse_pool`; :class:`SparseGlobalMaxPool` and
:class:`SparseGlobalAvgPool` reduce each batch item to one row.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ....functional.sparse_pool import global_pool, sparse_pool
from ....rulebook import KernelRegion
from ....rulebook.region import as_tuple
from ....tensor import SparseTensor
from ..core import ConvAlgo, as_conv_algo
from ..weights import MAX_NUM_VOXELS
from .core import IndiceData, SparseConvTensor, _check_input, _keyed_sites, _output
from .modules import SparseModule

__all__ = ["ALL_POOL_LAYERS", "SparseAvgPool", "SparseAvgPool1d", "SparseAvgPool2d", "SparseAvgPool3d",
           "SparseGlobalAvgPool", "SparseGlobalMaxOrAvgPool", "SparseGlobalMaxPool", "SparseMaxPool",
           "SparseMaxPool1d", "SparseMaxPool2d", "SparseMaxPool3d", "SparseMaxPool4d"]


class _SparsePool(SparseModule):
    """Shared body of :class:`SparseMaxPool` and :class:`SparseAvgPool`: the rulebook of a strided convolution
    with this geometry (of a submanifold one with ``subm=True``), reduced with ``reduce`` instead of a weight."""
    reduce: str = ""

    def __init__(self, ndim: int, kernel_size=3, stride=1, padding=0, dilation=1, indice_key: Optional[str] = None,
                 subm: bool = False, algo=None, record_voxel_count: bool = False, name: Optional[str] = None):
        super().__init__(name=name)
        owner = type(self).__name__
        self.ndim, self.subm, self.indice_key, self.algo = ndim, subm, indice_key, as_conv_algo(algo, owner)
        self.kernel_size = list(as_tuple(kernel_size, ndim, "kernel_size", owner))
        self.stride = list(as_tuple(self.kernel_size if stride is None else stride, ndim, "stride", owner))
        self.padding = list(as_tuple(padding, ndim, "padding", owner, minimum=0))
        self.dilation = list(as_tuple(dilation, ndim, "dilation", owner))
        self.region = KernelRegion.cube(self.kernel_size, ndim)
        if record_voxel_count and not subm:
            self.register_buffer(MAX_NUM_VOXELS, torch.zeros(1, dtype=torch.int32))

    def forward(self, input: SparseConvTensor) -> SparseConvTensor:
        _check_input(self, input, self.ndim, None)
        sites, record = input.sites(), None
        kind = "subm" if self.subm else "strided"
        geometry = (tuple(self.kernel_size), tuple(self.dilation)) if self.subm else \
            (tuple(self.kernel_size), tuple(self.stride), tuple(self.padding), tuple(self.dilation))
        if self.indice_key is not None:
            sites = _keyed_sites(self, input, kind, geometry, sites)
        out = sparse_pool(SparseTensor.from_sites(input.features, sites), self.region, self.stride, self.padding,
                          self.dilation, self.reduce, self.subm)
        if self.indice_key is not None:
            record = IndiceData(kind, geometry, sites, out.sites)
        return _output(self, input, out, record)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (f", dilation={self.dilation}" if any(d != 1 for d in self.dilation) else "")
                + (", subm=True" if self.subm else "")
                + (f", indice_key={self.indice_key!r}" if self.indice_key is not None else ""))


class SparseMaxPool(_SparsePool):
    """Max pooling over the active inputs of each window (exact for negative features), on the sites a strided
    convolution with this geometry produces (the input sites with ``subm=True``).

    Args:
        ndim (int): ``D``.
        kernel_size, stride, padding, dilation: as ``torch.nn.MaxPool3d``; ``stride=None`` means
            ``kernel_size``.
        indice_key (str, optional): records the pooling's rulebook, so an inverse convolution can invert it.
        subm (bool): keep the input sites (default: False).
        algo, record_voxel_count, name: as :class:`SparseConvolution`.

    Shapes:
        - input: SparseConvTensor ``features [N_in, C]`` -> output ``features [N_out, C]``.
    """
    reduce = "max"


class SparseAvgPool(_SparsePool):
    """Average pooling, spconv's: the mean of the active inputs of each window (the sum divided by their
    count, not by the kernel volume), on the sites a strided convolution with this geometry produces (the
    input sites with ``subm=True``). The gradient is ``grad_out / count`` to each contributing input.

    Args:
        ndim (int): ``D``.
        kernel_size, stride, padding, dilation: as ``torch.nn.AvgPool3d``; ``stride=None`` means
            ``kernel_size``. Any kernel volume (spconv asserts ``prod(kernel_size) <= 32``).
        indice_key (str, optional): records the pooling's rulebook, so an inverse convolution can invert it.
        subm (bool): keep the input sites (default: False).
        algo: ignored; ``self.algo`` is ``ConvAlgo.MaskImplicitGemm`` as in spconv.
        record_voxel_count, name: as :class:`SparseConvolution`.

    Shapes:
        - input: SparseConvTensor ``features [N_in, C]`` -> output ``features [N_out, C]``.
    """
    reduce = "mean"

    def __init__(self, ndim: int, kernel_size=3, stride=1, padding=0, dilation=1, indice_key: Optional[str] = None,
                 subm: bool = False, algo=None, record_voxel_count: bool = False, name: Optional[str] = None):
        super().__init__(ndim, kernel_size, stride, padding, dilation, indice_key=indice_key, subm=subm, algo=algo,
                         record_voxel_count=record_voxel_count, name=name)
        self.algo = ConvAlgo.MaskImplicitGemm  # whatever was asked, as spconv


class _PerDimensionPool:
    """spconv's per-dimension pooling signature (``stride=None`` means ``kernel_size``) in front of a pooling
    class that takes ``ndim`` first; subclasses set ``ndim``."""
    ndim = 0

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, indice_key=None, algo=None,
                 record_voxel_count=False, name=None):
        super().__init__(type(self).ndim, kernel_size, stride, padding, dilation, indice_key=indice_key, algo=algo,
                         record_voxel_count=record_voxel_count, name=name)


class SparseMaxPoolNd(_PerDimensionPool, SparseMaxPool):
    """Per-dimension max pooling with spconv's signature."""


class SparseAvgPoolNd(_PerDimensionPool, SparseAvgPool):
    """Per-dimension average pooling (over the active inputs) with spconv's signature."""


class SparseGlobalMaxOrAvgPool(SparseModule):
    """Per batch item maximum or mean of all active features: SparseConvTensor -> dense ``[B, C]``.

    Rows come in batch-index order; a batch item without sites gives zeros. Unlike spconv 2.3.8, the mean
    keeps every channel (spconv's returns ``[B]``, channel 0 only).

    Args:
        is_mean (bool): the mean (True) or the maximum (False).
        name (str, optional): kept as ``self.name``.

    Shapes:
        - input: SparseConvTensor ``features [N, C]`` with ``batch_size`` ``B`` -> output Tensor ``[B, C]``.
    """

    def __init__(self, is_mean: bool, name: Optional[str] = None):
        super().__init__(name=name)
        if not isinstance(is_mean, bool):
            raise TypeError(f"{type(self).__name__}: is_mean must be a bool (True for the mean, False for the "
                            f"maximum), got {is_mean!r}")
        self.is_mean = is_mean

    def forward(self, input: SparseConvTensor) -> Tensor:
        if not isinstance(input, SparseConvTensor):
            raise TypeError(f"{type(self).__name__}: input must be a SparseConvTensor (irregconv.compat.spconv), got "
                            f"{type(input).__name__}")
        return global_pool(SparseTensor.from_sites(input.features, input.sites()), "mean" if self.is_mean else "max")


class SparseGlobalAvgPool(SparseGlobalMaxOrAvgPool):
    """Per batch item mean: SparseConvTensor ``features [N, C]`` -> ``[B, C]``."""

    def __init__(self, name: Optional[str] = None):
        super().__init__(is_mean=True, name=name)


class SparseGlobalMaxPool(SparseGlobalMaxOrAvgPool):
    """Per batch item maximum: SparseConvTensor ``features [N, C]`` -> ``[B, C]``."""

    def __init__(self, name: Optional[str] = None):
        super().__init__(is_mean=False, name=name)


class SparseMaxPool1d(SparseMaxPoolNd):
    ndim = 1


class SparseMaxPool2d(SparseMaxPoolNd):
    ndim = 2


class SparseMaxPool3d(SparseMaxPoolNd):
    ndim = 3


class SparseMaxPool4d(SparseMaxPoolNd):
    ndim = 4


class SparseAvgPool1d(SparseAvgPoolNd):
    ndim = 1


class SparseAvgPool2d(SparseAvgPoolNd):
    ndim = 2


class SparseAvgPool3d(SparseAvgPoolNd):
    ndim = 3


#: spconv's ``pool.ALL_POOL_LAYERS``: the pooling modules that take a SparseConvTensor to a SparseConvTensor
ALL_POOL_LAYERS = {SparseAvgPool3d, SparseAvgPool2d, SparseAvgPool1d, SparseMaxPool1d, SparseMaxPool2d,
                   SparseMaxPool3d, SparseMaxPool4d, SparseAvgPool, SparseMaxPool}

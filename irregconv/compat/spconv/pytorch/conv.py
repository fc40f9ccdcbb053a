"""``spconv.pytorch.conv``: spconv 2.x's sparse convolutions on irregconv's engine.

:class:`SparseConvolution` and its per-dimension classes ``SubMConv{1,2,3,4}d``, ``SparseConv{1,2,3,4}d``,
``SparseConvTranspose{1,2,3,4}d``, ``SparseInverseConv{1,2,3,4}d`` keep spconv's signatures and parameters
(``weight [C_out, *kernel_size, C_in]``, ``bias [C_out]``); ``forward`` converts the weight to the engine's
``[K, C_in, C_out]`` (:func:`~irregconv.compat.spconv.weights.weight_to_native`, differentiable) and runs
gather -> GEMM -> scatter over the rulebook of the input's sites
(:func:`irregconv.functional.sparse_conv.sparse_conv`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ....functional.sparse_conv import sparse_conv
from ....nn.sparse.base import check_weight_dtype
from ....rulebook import KernelRegion
from ....rulebook.region import as_tuple
from ....tensor import Sites, SparseTensor
from ..core import as_conv_algo
from ..weights import MAX_NUM_VOXELS, is_conv1x1, weight_to_native
from .core import IndiceData, SparseConvTensor, _check_input, _describe_sites, _keyed_sites, _output, _same_sites
from .modules import SparseModule

__all__ = ["SparseConvolution", "SubMConv1d", "SubMConv2d", "SubMConv3d", "SubMConv4d",
           "SparseConv1d", "SparseConv2d", "SparseConv3d", "SparseConv4d",
           "SparseInverseConv1d", "SparseInverseConv2d", "SparseInverseConv3d", "SparseInverseConv4d",
           "SparseConvTranspose1d", "SparseConvTranspose2d", "SparseConvTranspose3d", "SparseConvTranspose4d"]


class SparseConvolution(SparseModule):
    """Base of the spconv convolution modules (``spconv.conv.SparseConvolution``), with spconv 2.x's signature.

    Args:
        ndim (int): ``D``.
        in_channels, out_channels (int): ``C_in``, ``C_out``.
        kernel_size, stride, padding, dilation (int or sequence): as ``torch.nn.Conv3d``. A submanifold
            convolution's output sites are its input sites: its ``padding`` has no effect (as in spconv,
            where detector code passes ``padding=1``) and its ``stride`` must be 1.
        groups (int): must be 1 (spconv 2.x has no groups).
        bias (bool): (default: True).
        subm, transposed, inverse (bool): which convolution (default: a regular strided one).
        output_padding (int or sequence): transposed convolutions only (default: 0).
        indice_key (str, optional): names the rulebook for reuse checks and inverse convolutions.
        algo (ConvAlgo, optional): kept as ``self.algo`` (``ConvAlgo.Native`` when None); irregconv runs one
            algorithm whatever it says.
        fp32_accum, large_kernel_fast_algo: ignored (spconv's CUDA kernel choice).
        record_voxel_count (bool): keep spconv's ``max_num_voxels_during_training`` buffer (strided and
            transposed convs): the largest output size seen in training (default: False).
        name (str, optional): kept as ``self.name``.

    Attributes:
        weight: ``[C_out, *kernel_size, C_in]`` (spconv's KRSC).
        bias: ``[C_out]`` or None.
    """

    def __init__(self, ndim: int, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, subm: bool = False, output_padding=0,
                 transposed: bool = False, inverse: bool = False, indice_key: Optional[str] = None, algo=None,
                 fp32_accum: Optional[bool] = None, record_voxel_count: bool = False,
                 large_kernel_fast_algo: bool = False, name: Optional[str] = None, device=None, dtype=None):
        super().__init__(name=name)
        owner = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{owner}: {arg} must be a positive int, got {value!r}")
        if groups != 1:
            raise ValueError(f"{owner}: groups={groups!r}, but spconv 2.x convolutions are ungrouped (groups=1); for "
                             f"grouped or depthwise sparse convolution use irregconv.nn.SubMConv3d / SparseConv3d(groups=...)")
        if sum((subm, transposed, inverse)) > 1:
            raise ValueError(f"{owner}: at most one of subm, transposed, inverse may be True, got subm={subm}, "
                             f"transposed={transposed}, inverse={inverse}")
        if inverse and indice_key is None:
            raise ValueError(f"{owner}: an inverse convolution needs indice_key, the key of the strided convolution "
                             f"(or max pool) it inverts")
        self.ndim, self.in_channels, self.out_channels, self.groups = ndim, in_channels, out_channels, groups
        self.kernel_size = list(as_tuple(kernel_size, ndim, "kernel_size", owner))
        self.stride = list(as_tuple(stride, ndim, "stride", owner))
        self.padding = list(as_tuple(padding, ndim, "padding", owner, minimum=0))
        self.dilation = list(as_tuple(dilation, ndim, "dilation", owner))
        self.output_padding = list(as_tuple(output_padding, ndim, "output_padding", owner, minimum=0))
        if subm and any(s != 1 for s in self.stride):
            raise ValueError(f"{owner}: stride={stride!r}, but a submanifold convolution keeps its input sites; "
                             f"use stride=1, or SparseConv{ndim}d to downsample")
        self.subm, self.transposed, self.inverse, self.indice_key = subm, transposed, inverse, indice_key
        self.algo, self.fp32_accum = as_conv_algo(algo, owner), fp32_accum
        self.region = KernelRegion.cube(self.kernel_size, ndim)
        self.conv1x1 = is_conv1x1(self.region.volume, self.stride, subm or inverse)
        if self.conv1x1 and not (subm or inverse) and any(self.padding):
            raise ValueError(f"{owner}: padding={padding!r} with kernel volume 1 and stride 1; spconv computes "
                             f"this layer as a plain matmul on the input sites, so padding must be 0")
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, *self.kernel_size, in_channels, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        if record_voxel_count and not (subm or inverse):
            self.register_buffer(MAX_NUM_VOXELS, torch.zeros(1, dtype=torch.int32, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As spconv and ``torch.nn.Conv3d``: uniform in ``+-1/sqrt(fan_in)``, ``fan_in = K * C_in``."""
        bound = 1.0 / math.sqrt(self.region.volume * self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def native_weight(self) -> Tensor:
        """The weight in the engine's ``[K, C_in, C_out]`` layout (differentiable; see :func:`weight_to_native`)."""
        return weight_to_native(self.weight, self.conv1x1)

    @property
    def kind(self) -> str:
        return "subm" if self.subm else "inverse" if self.inverse else "transposed" if self.transposed else "strided"

    def _geometry(self) -> tuple:
        if self.subm:
            return tuple(self.kernel_size), tuple(self.dilation)
        geometry = (tuple(self.kernel_size), tuple(self.stride), tuple(self.padding), tuple(self.dilation))
        return geometry + (tuple(self.output_padding),) if self.transposed else geometry

    def forward(self, input: SparseConvTensor, add_input: Optional[SparseConvTensor] = None) -> SparseConvTensor:
        _check_input(self, input, self.ndim, self.in_channels)
        check_weight_dtype(self, input.features, self.weight)
        sites, record = input.sites(), None
        if self.conv1x1 and not self.inverse:
            feats = input.features @ self.native_weight()[0]
            out = SparseTensor.from_sites(feats if self.bias is None else feats + self.bias, sites)
        elif self.inverse:
            out = self._inverse(input, sites)
        else:
            kind, geometry = self.kind, self._geometry()
            if self.indice_key is not None:
                sites = _keyed_sites(self, input, kind, geometry, sites)
            out = sparse_conv(SparseTensor.from_sites(input.features, sites), self.native_weight(), self.bias,
                              self.region, kind, self.stride, self.padding, self.dilation, self.output_padding,
                              owner=type(self).__name__)
            if self.indice_key is not None:
                record = IndiceData(kind, geometry, sites, out.sites)
        if add_input is not None:
            out = out.replace(out.feats + add_input.features)
        return _output(self, input, out, record)

    def _inverse(self, input: SparseConvTensor, sites: Sites) -> SparseTensor:
        """Back onto the input sites of the strided convolution (or max pool) recorded under ``indice_key``."""
        owner, key = type(self).__name__, self.indice_key
        record = input.find_indice_pair(key)
        if record is None:
            raise ValueError(f"{owner}: indice_key={key!r} is not in the input's indice_dict (keys: "
                             f"{sorted(input.indice_dict)}); an inverse convolution must run on features derived "
                             f"from the output of the strided convolution or max pool with that key")
        if record.kind != "strided":
            raise ValueError(f"{owner}: indice_key={key!r} names a {record.describe()}; an inverse convolution "
                             f"inverts a strided convolution or max pool")
        if record.ksize != self.kernel_size:
            raise ValueError(f"{owner}: kernel_size={self.kernel_size}, but the layer recorded under indice_key={key!r} "
                             f"has kernel_size={record.ksize}; an inverse convolution needs the same kernel size")
        if not _same_sites(record.out_sites, sites):
            raise ValueError(f"{owner}: the input has {_describe_sites(sites)}, but the layer recorded under "
                             f"indice_key={key!r} produced {_describe_sites(record.out_sites)}; an inverse "
                             f"convolution must run on the sites that layer produced")
        _, stride, padding, dilation = record.geometry
        return sparse_conv(SparseTensor.from_sites(input.features, record.out_sites), self.native_weight(), self.bias,
                           self.region, "inverse", stride, padding, dilation, owner=owner,
                           inverse_of={"stride": stride, "padding": padding, "dilation": dilation})

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"]
        if not (self.subm or self.inverse):
            parts.append(f"stride={self.stride}")
            if any(self.padding):
                parts.append(f"padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            parts.append(f"dilation={self.dilation}")
        if self.transposed and any(self.output_padding):
            parts.append(f"output_padding={self.output_padding}")
        if self.bias is None:
            parts.append("bias=False")
        if self.indice_key is not None:
            parts.append(f"indice_key={self.indice_key!r}")
        return ", ".join(parts)


class SubMConvNd(SparseConvolution):
    """Submanifold convolution (outputs on the input sites, same row order), spconv's signature."""
    ndim = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 indice_key=None, algo=None, fp32_accum=None, large_kernel_fast_algo=False, name=None):
        super().__init__(type(self).ndim, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, subm=True, indice_key=indice_key, algo=algo, fp32_accum=fp32_accum,
                         large_kernel_fast_algo=large_kernel_fast_algo, name=name)


class _StridedSignature(SparseConvolution):
    """spconv's signature of the strided and the transposed convolutions; subclasses set ``ndim`` and
    ``generative`` (False: a strided convolution, True: a generative transposed one)."""
    ndim = 0
    generative = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 indice_key=None, algo=None, fp32_accum=None, record_voxel_count=False, large_kernel_fast_algo=False,
                 name=None):
        super().__init__(type(self).ndim, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, transposed=type(self).generative, indice_key=indice_key, algo=algo,
                         fp32_accum=fp32_accum, record_voxel_count=record_voxel_count,
                         large_kernel_fast_algo=large_kernel_fast_algo, name=name)


class SparseConvNd(_StridedSignature):
    """Strided sparse convolution (outputs on every site a kernel tap reaches), spconv's signature."""


class SparseConvTransposeNd(_StridedSignature):
    """Generative transposed sparse convolution, spconv's signature."""
    generative = True


class SparseInverseConvNd(SparseConvolution):
    """Inverse of the strided convolution (or max pool) recorded under ``indice_key``: back onto its input
    sites and grid, spconv's signature."""
    ndim = 0

    def __init__(self, in_channels, out_channels, kernel_size, indice_key, bias=True, algo=None, fp32_accum=None,
                 large_kernel_fast_algo=False, name=None):
        super().__init__(type(self).ndim, in_channels, out_channels, kernel_size, bias=bias, inverse=True,
                         indice_key=indice_key, algo=algo, fp32_accum=fp32_accum,
                         large_kernel_fast_algo=large_kernel_fast_algo, name=name)


class SubMConv1d(SubMConvNd):
    ndim = 1


class SubMConv2d(SubMConvNd):
    ndim = 2


class SubMConv3d(SubMConvNd):
    ndim = 3


class SubMConv4d(SubMConvNd):
    ndim = 4


class SparseConv1d(SparseConvNd):
    ndim = 1


class SparseConv2d(SparseConvNd):
    ndim = 2


class SparseConv3d(SparseConvNd):
    ndim = 3


class SparseConv4d(SparseConvNd):
    ndim = 4


class SparseConvTranspose1d(SparseConvTransposeNd):
    ndim = 1


class SparseConvTranspose2d(SparseConvTransposeNd):
    ndim = 2


class SparseConvTranspose3d(SparseConvTransposeNd):
    ndim = 3


class SparseConvTranspose4d(SparseConvTransposeNd):
    ndim = 4


class SparseInverseConv1d(SparseInverseConvNd):
    ndim = 1


class SparseInverseConv2d(SparseInverseConvNd):
    ndim = 2


class SparseInverseConv3d(SparseInverseConvNd):
    ndim = 3


class SparseInverseConv4d(SparseInverseConvNd):
    ndim = 4

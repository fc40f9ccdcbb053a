"""Shared base of the sparse convolution modules (thin per-dimension subclasses live in one file per kind)."""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from ...functional.sparse_conv import sparse_conv
from ...rulebook import KernelRegion
from ...rulebook.region import as_tuple
from ...tensor import SparseTensor


class SparseModule(nn.Module):
    """Marker base: ``forward`` takes and returns a :class:`~irregconv.SparseTensor`.

    :class:`~irregconv.nn.SparseSequential` passes a SparseTensor to these modules and only the features to
    any other module.
    """


def check_weight_dtype(module: nn.Module, feats: Tensor, weight: Tensor) -> None:
    """Features and weight of one dtype, unless autocast (enabled for their device) casts both for the engine."""
    if feats.dtype != weight.dtype and not torch.is_autocast_enabled(feats.device.type):
        raise TypeError(f"{type(module).__name__}: input features are {feats.dtype} but the weight is "
                        f"{weight.dtype}; cast one of them (e.g. module.to({feats.dtype}))")


def check_sparse_input(module: nn.Module, input, dims: int, in_channels: Optional[int]) -> None:
    """Raise a clear error unless ``input`` is a SparseTensor of ``dims`` spatial axes and ``in_channels`` channels."""
    name = type(module).__name__
    if not isinstance(input, SparseTensor):
        raise TypeError(f"{name}: input must be an irregconv.SparseTensor, got {type(input).__name__}")
    if input.dims != dims:
        raise ValueError(f"{name}: expects {dims} spatial axes (coords [N, {1 + dims}]), got a SparseTensor with "
                         f"{input.dims} (coords {list(input.coords.shape)}); use the {input.dims}d variant")
    if in_channels is not None and input.num_channels != in_channels:
        raise ValueError(f"{name}: in_channels={in_channels} but the input has {input.num_channels} channels; "
                         f"feed features [N, {in_channels}] or build the layer with in_channels={input.num_channels}")


def check_channels(owner: str, in_channels: int, out_channels: int, groups: int) -> None:
    """Raise a clear error unless the channel counts are positive ints and ``groups`` divides both."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{owner}: groups={groups} must divide in_channels={in_channels} and "
                         f"out_channels={out_channels}")


def make_region(region: Union[str, KernelRegion], kernel_size, dims: int, owner: str) -> KernelRegion:
    """``"cube"`` / ``"cross"`` / a :class:`KernelRegion` -> KernelRegion with ``dims`` axes."""
    if isinstance(region, KernelRegion):
        if region.dims != dims:
            raise ValueError(f"{owner}: region has {region.dims} axes, expected {dims}")
        return region
    if region == "cube":
        return KernelRegion.cube(as_tuple(kernel_size, dims, "kernel_size", owner), dims)
    if region == "cross":
        return KernelRegion.cross(as_tuple(kernel_size, dims, "kernel_size", owner), dims)
    raise ValueError(f"{owner}: region must be 'cube', 'cross' or a KernelRegion, got {region!r}")


class SparseConvBase(SparseModule):
    """Base of every sparse convolution: holds the weight ``[K, C_in, C_out]`` (grouped:
    ``[K, G, C_in/G, C_out/G]``), the bias ``[C_out]`` and the geometry; ``forward`` calls
    :func:`irregconv.functional.sparse_conv.sparse_conv` with the subclass's ``kind``."""

    kind: str = ""
    dims: int = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, region: Union[str, KernelRegion] = "cube", output_padding=0):
        super().__init__()
        owner = type(self).__name__
        check_channels(owner, in_channels, out_channels, groups)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.region = make_region(region, kernel_size, self.dims, owner)
        self.kernel_size = self.region.kernel_size
        self.stride = as_tuple(stride, self.dims, "stride", owner)
        self.padding = as_tuple(padding, self.dims, "padding", owner, minimum=0)
        self.dilation = as_tuple(dilation, self.dims, "dilation", owner)
        self.output_padding = as_tuple(output_padding, self.dims, "output_padding", owner, minimum=0)
        k = self.region.volume
        shape = (k, in_channels, out_channels) if groups == 1 else \
            (k, groups, in_channels // groups, out_channels // groups)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As ``torch.nn.Conv3d``: uniform in ``+-1/sqrt(fan_in)`` with ``fan_in = K * C_in / G``."""
        bound = 1.0 / math.sqrt(self.region.volume * self.in_channels // self.groups)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: SparseTensor) -> SparseTensor:
        check_sparse_input(self, input, self.dims, self.in_channels)
        check_weight_dtype(self, input.feats, self.weight)
        return sparse_conv(input, self.weight, self.bias, self.region, self.kind, self.stride, self.padding,
                           self.dilation, self.output_padding, inverse_of=getattr(self, "inverse_of", None),
                           owner=type(self).__name__)

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"]
        if self.kind not in ("subm", "inverse"):
            parts.append(f"stride={self.stride}")
            if any(self.padding):
                parts.append(f"padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            parts.append(f"dilation={self.dilation}")
        if self.kind == "transposed" and any(self.output_padding):
            parts.append(f"output_padding={self.output_padding}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.region.kind != "cube":
            parts.append(f"region={self.region.kind}")
        if self.bias is None:
            parts.append("bias=False")
        return ", ".join(parts)

"""Shared base of Conv2d, Conv3d, ConvTranspose2d and ConvTranspose3d.

The weight keeps torch's layout (``[C_out, C_in/G, *k]``, transposed ``[C_in, C_out/G, *k]``) and
initialisation, so ``load_state_dict`` from ``torch.nn.Conv*`` works. ``backend`` picks who runs it:
``"native"`` (``torch.nn.functional``, the fast default), ``"engine"`` (a full-grid rulebook through
:func:`irregconv.engine.gather_scatter`) or a per-class alternative formulation.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...functional.dense_conv import dense_conv, dense_conv_rulebook
from ...rulebook import conv_output_shape, transposed_output_shape
from ._args import check_divisible, check_int
from ._counting import CountingMixin
from ._init import init_like_conv_

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
# rulebooks kept per module: one per recent (input shape, device); a few suffice for train/eval sizes
RULEBOOK_CACHE_SIZE = 4


def to_tuple(owner: str, name: str, value, dims: int, minimum: int = 1) -> Tuple[int, ...]:
    """An int or ``dims`` ints as a ``dims``-tuple, each >= ``minimum``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (check_int(owner, name, value, minimum),) * dims
    if isinstance(value, (tuple, list)) and len(value) == dims:
        return tuple(check_int(owner, name, v, minimum) for v in value)
    raise TypeError(f"{owner}: {name} must be an int or a sequence of {dims} ints, got {value!r}")


class DenseConvNd(CountingMixin, nn.Module):
    """Convolution on a full ``D``-dimensional grid with a selectable backend (see the module docstring).

    Subclasses set ``dims``, ``transposed`` and ``backends`` (the names accepted besides
    ``"native"`` and ``"engine"``) and implement ``_alternative`` for those.
    """

    dims: int = 2
    transposed: bool = False
    backends: Tuple[str, ...] = ()

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 output_padding=0, backend: str = "native"):
        super().__init__()
        owner = type(self).__name__
        d = self.dims
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        self.kernel_size = to_tuple(owner, "kernel_size", kernel_size, d)
        self.stride = to_tuple(owner, "stride", stride, d)
        self.dilation = to_tuple(owner, "dilation", dilation, d)
        if padding is None:
            padding = tuple(dl * (k - 1) // 2 for k, dl in zip(self.kernel_size, self.dilation))
        self.padding = to_tuple(owner, "padding", padding, d, minimum=0)
        self.groups = check_int(owner, "groups", groups)
        check_divisible(owner, "in_channels", in_channels, groups, "groups")
        check_divisible(owner, "out_channels", out_channels, groups, "groups")
        allowed_modes = ("zeros",) if self.transposed else PADDING_MODES
        if padding_mode not in allowed_modes:
            raise ValueError(f"{owner}: padding_mode must be one of {allowed_modes}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.output_padding = to_tuple(owner, "output_padding", output_padding, d, minimum=0)
        if self.transposed and any(o >= s for o, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"{owner}: output_padding must be smaller than stride={self.stride} per axis, "
                             f"got {self.output_padding}")
        names = ("native", "engine") + self.backends
        if backend not in names:
            raise ValueError(f"{owner}: backend must be one of {names}, got {backend!r}")
        self.backend = backend
        self._check_backend(owner)
        shape = ((in_channels, out_channels // groups) if self.transposed
                 else (out_channels, in_channels // groups))
        self.weight = nn.Parameter(torch.empty(*shape, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._rulebooks: "OrderedDict[tuple, object]" = OrderedDict()
        self.reset_parameters()

    def _check_backend(self, owner: str) -> None:
        """Raise if the chosen alternative backend cannot run this geometry (default: nothing to check)."""

    def reset_parameters(self) -> None:
        """``torch.nn.Conv*``'s initialisation: Kaiming-uniform weight (a = sqrt 5), uniform bias."""
        init_like_conv_(self.weight, self.bias)

    def _check_input(self, x) -> None:
        owner = type(self).__name__
        dims = ", ".join("DHW"[3 - self.dims:])
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{owner}: input must be a floating-point tensor [B, {self.in_channels}, {dims}], "
                            f"got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() != 2 + self.dims or x.size(1) != self.in_channels:
            raise ValueError(f"{owner}: input must have shape [B, {self.in_channels}, {dims}], got {list(x.shape)}")
        # an input smaller than the (dilated) kernel: name the axis here rather than fail inside torch
        if self.transposed:
            transposed_output_shape(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation,
                                    self.output_padding, owner)
        else:
            conv_output_shape(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation, owner)

    def _pad(self, x: Tensor) -> Tuple[Tensor, Sequence[int]]:
        """Non-zero padding modes pad the tensor (as torch does); returns it with the conv's padding."""
        if self.padding_mode == "zeros":
            return x, self.padding
        pads = [p for p in reversed(self.padding) for _ in range(2)]
        return F.pad(x, pads, mode=self.padding_mode), (0,) * self.dims

    def rulebook(self, x: Tensor, padding: Sequence[int]):
        """The full-grid rulebook for ``x``'s shape, cached per (shape, device, padding) in a bounded dict."""
        key = (tuple(x.shape), x.device, tuple(padding))
        if key in self._rulebooks:
            self._rulebooks.move_to_end(key)
            return self._rulebooks[key]
        rb = dense_conv_rulebook(x.shape[2:], x.size(0), self.kernel_size, self.stride, padding, self.dilation,
                                 self.transposed, self.output_padding, device=x.device)
        self._rulebooks[key] = rb
        if len(self._rulebooks) > RULEBOOK_CACHE_SIZE:
            self._rulebooks.popitem(last=False)
        return rb

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        x, padding = self._pad(x)
        if self.backend == "engine":
            return dense_conv(x, self.weight, self.bias, self.rulebook(x, padding), self.groups, self.transposed)
        if self.backend == "native":
            return self._native(x, padding)
        return self._alternative(x, padding)

    def _native(self, x: Tensor, padding: Sequence[int]) -> Tensor:
        if self.transposed:
            fn = F.conv_transpose2d if self.dims == 2 else F.conv_transpose3d
            return fn(x, self.weight, self.bias, self.stride, padding, self.output_padding, self.groups,
                      self.dilation)
        fn = F.conv2d if self.dims == 2 else F.conv3d
        return fn(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

    def _alternative(self, x: Tensor, padding: Sequence[int]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no backend {self.backend!r}")

    def output_shape(self, spatial: Sequence[int]) -> Tuple[int, ...]:
        """Output spatial size for an input of spatial size ``spatial`` (torch's formulas)."""
        if self.transposed:
            return tuple((n - 1) * s - 2 * p + d * (k - 1) + o + 1 for n, k, s, p, d, o in
                         zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation, self.output_padding))
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                     zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation))

    def macs(self, input_size: Sequence[int]) -> int:
        """Multiply-accumulates of the dense formula: ``K C_in C_out / G`` per output site, or per input
        site for a transposed conv (taps landing in zero padding included, as torch computes them).

        Args:
            input_size: ``(C_in, *S)`` for one sample or ``(B, C_in, *S)`` for a batch.
        """
        owner = type(self).__name__
        size = tuple(input_size)
        if len(size) not in (self.dims + 1, self.dims + 2) or any(
                isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in size):
            raise ValueError(f"{owner}.macs: input_size must be (C_in, *S) or (B, C_in, *S) with {self.dims} "
                             f"spatial sizes, positive ints, got {input_size!r}")
        batch = size[0] if len(size) == self.dims + 2 else 1
        channels, spatial = size[-self.dims - 1], size[-self.dims:]
        if channels != self.in_channels:
            raise ValueError(f"{owner}.macs: input_size has {channels} channels, the module expects "
                             f"in_channels={self.in_channels}")
        sites = math.prod(spatial if self.transposed else self.output_shape(spatial))
        return batch * sites * self.weight.numel()

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}")
        if any(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        if self.backend != "native":
            s += f", backend={self.backend!r}"
        return s


def chain_macs(convs: Sequence[DenseConvNd], input_size: Sequence[int]) -> int:
    """MACs of convs applied one after the other to an input of ``input_size`` ``(C_in, *S)``."""
    total, channels, spatial = 0, input_size[0], tuple(input_size[1:])
    for conv in convs:
        total += conv.macs((channels, *spatial))
        channels, spatial = conv.out_channels, conv.output_shape(spatial)
    return total

"""Argument checks shared by the dense variants.

Every check raises with the owner (class name), the argument, the value received and what would
work, and never rewrites a value silently (STYLE.md: "Never rewrite an argument silently").
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

from torch import Tensor

IntOrPair = Union[int, Sequence[int]]


def check_int(owner: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum``; bool and float are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value}")
    return value


def check_odd(owner: str, name: str, value, why: str) -> int:
    """``value`` as an odd ``int`` >= 1; ``why`` says what needs the centre tap."""
    value = check_int(owner, name, value)
    if value % 2 == 0:
        raise ValueError(f"{owner}: {name} must be odd ({why}), got {value}")
    return value


def check_float(owner: str, name: str, value, low: float, high: float) -> float:
    """``value`` as a float in the closed range ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a float, got {value!r} ({type(value).__name__})")
    if not low <= value <= high:
        raise ValueError(f"{owner}: {name} must lie in [{low}, {high}], got {value}")
    return float(value)


def to_pair(owner: str, name: str, value: IntOrPair, minimum: int = 1) -> Tuple[int, int]:
    """An int or a pair of ints as ``(height, width)``, each >= ``minimum``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (check_int(owner, name, value, minimum),) * 2
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(check_int(owner, name, v, minimum) for v in value)
    raise TypeError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")


def check_divisible(owner: str, name: str, value: int, divisor: int, divisor_name: str) -> None:
    """Raise unless ``value`` is a multiple of ``divisor``."""
    if value % divisor:
        raise ValueError(
            f"{owner}: {name}={value} must be divisible by {divisor_name}={divisor}; "
            f"use a multiple of {divisor}"
        )


def same_padding(owner: str, padding, kernel_size: Tuple[int, int],
                 dilation: Tuple[int, int] = (1, 1)) -> Tuple[int, int]:
    """``padding`` as a pair; ``None`` means "same" (``dilation * (k - 1) // 2``), which keeps
    ``H x W`` at stride 1 for odd kernels."""
    if padding is None:
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation))
    return to_pair(owner, "padding", padding, minimum=0)


def init_conv_geometry(module, owner: str, in_channels, out_channels, kernel_size: IntOrPair, stride: IntOrPair,
                       padding, dilation: IntOrPair) -> None:
    """Check and store ``in_channels``, ``out_channels``, ``kernel_size``, ``stride``, ``dilation`` and ``padding``
    (``None``: "same", see :func:`same_padding`) on ``module``, as every 2D conv-like variant keeps them."""
    module.in_channels = check_int(owner, "in_channels", in_channels)
    module.out_channels = check_int(owner, "out_channels", out_channels)
    module.kernel_size = to_pair(owner, "kernel_size", kernel_size)
    module.stride = to_pair(owner, "stride", stride)
    module.dilation = to_pair(owner, "dilation", dilation)
    module.padding = same_padding(owner, padding, module.kernel_size, module.dilation)


def check_input(owner: str, x, channels: int, name: str = "input") -> None:
    """Raise unless ``x`` is a ``[B, channels, H, W]`` floating-point tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {name} must be a tensor [B, {channels}, H, W], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 4 or x.size(1) != channels:
        raise ValueError(
            f"{owner}: {name} must have shape [B, {channels}, H, W], got {list(x.shape)}"
        )


def conv_extra_repr(module) -> str:
    """``extra_repr`` of a conv-like module: channels, kernel, stride, padding, and dilation /
    groups / bias when they differ from the defaults (as ``nn.Conv2d`` prints them)."""
    s = (f"{module.in_channels}, {module.out_channels}, kernel_size={module.kernel_size}, "
         f"stride={module.stride}, padding={module.padding}")
    if getattr(module, "dilation", (1, 1)) != (1, 1):
        s += f", dilation={module.dilation}"
    if getattr(module, "groups", 1) != 1:
        s += f", groups={module.groups}"
    if getattr(module, "bias", True) is None:
        s += ", bias=False"
    return s

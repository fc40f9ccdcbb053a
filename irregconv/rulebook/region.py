"""Kernel regions: which taps of a ``kernel_size`` box a convolution uses.

A tap is an integer vector ``t`` in ``[0, kernel_size)`` per axis; the weight of tap ``k`` is
``weight[k]``. For a submanifold (centred) convolution the displacement of tap ``t`` is
``(t - centre) * dilation`` with ``centre = kernel_size // 2``; for strided and transposed convolutions
tap ``t`` relates sites by ``in = out * stride - padding + t * dilation`` (cross-correlation, as torch).
"""
from __future__ import annotations

import itertools
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor


def as_tuple(value, dims: int, name: str, owner: str = "KernelRegion", minimum: int = 1) -> Tuple[int, ...]:
    """Expand an int or sequence to a ``dims``-tuple of ints, each ``>= minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be an int or a sequence of {dims} ints, got {value!r}")
    if isinstance(value, int):
        out = (value,) * dims
    else:
        try:
            out = tuple(int(v) for v in value)
            # int() would silently truncate 2.5 or parse "3"; only integral numbers are accepted
            integral = all(not isinstance(v, (str, bytes, bool)) and v == int(v) for v in value)
        except (TypeError, ValueError):
            integral = False
        if not integral:
            raise TypeError(f"{owner}: {name} must be an int or a sequence of {dims} ints, got {value!r}") from None
        if len(out) != dims:
            raise ValueError(f"{owner}: {name} must have {dims} entries (one per spatial axis), got {value!r}")
    if any(v < minimum for v in out):
        raise ValueError(f"{owner}: {name} must be >= {minimum} on every axis, got {value!r}")
    return out


class KernelRegion:
    """The taps a kernel uses, as an object yielding offsets (as MinkowskiEngine's kernel generator).

    Build with :meth:`cube` (every tap of the box), :meth:`cross` (the centre and the taps on the axes
    through it) or :meth:`custom` (explicit displacements from the centre).

    Attributes:
        kernel_size (tuple): the bounding box, one entry per axis.
        taps (Tensor): ``[K, D]`` int64 tap vectors, in C order for cubes (the order of torch's and
            spconv's kernel axes), so ``weight[k]`` is the same tap as ``torch_weight[..., *taps[k]]``.
        kind (str): ``"cube"``, ``"cross"`` or ``"custom"``.
    """

    def __init__(self, kernel_size: Sequence[int], taps: Tensor, kind: str):
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.taps = taps.long().reshape(-1, len(self.kernel_size))
        self.kind = kind
        self.key = (kind, self.kernel_size, tuple(map(tuple, self.taps.tolist())))

    @classmethod
    def cube(cls, kernel_size, dims: int) -> "KernelRegion":
        ks = as_tuple(kernel_size, dims, "kernel_size")
        taps = torch.tensor(list(itertools.product(*[range(k) for k in ks])), dtype=torch.long)
        return cls(ks, taps.reshape(-1, dims), "cube")

    @classmethod
    def cross(cls, kernel_size, dims: int) -> "KernelRegion":
        ks = as_tuple(kernel_size, dims, "kernel_size")
        centre = [k // 2 for k in ks]
        taps = [t for t in itertools.product(*[range(k) for k in ks])
                if sum(a != c for a, c in zip(t, centre)) <= 1]
        return cls(ks, torch.tensor(taps, dtype=torch.long), "cross")

    @classmethod
    def custom(cls, displacements: Sequence[Sequence[int]]) -> "KernelRegion":
        """Region from displacements relative to the centre, e.g. ``[[0, 0, 0], [1, 0, 0], [-1, 0, 0]]``."""
        disp = torch.as_tensor(displacements, dtype=torch.long)
        if disp.dim() != 2 or disp.size(0) == 0:
            raise ValueError(f"KernelRegion.custom: displacements must be a non-empty [K, D] list of integer "
                             f"vectors, got shape {list(disp.shape)}")
        if torch.unique(disp, dim=0).size(0) != disp.size(0):
            raise ValueError("KernelRegion.custom: displacements contains a repeated vector; each must be unique")
        radius = disp.abs().max(dim=0).values
        ks = tuple(int(2 * r + 1) for r in radius)
        return cls(ks, disp + radius, "custom")

    @property
    def dims(self) -> int:
        return len(self.kernel_size)

    @property
    def volume(self) -> int:
        """Number of taps ``K``."""
        return self.taps.size(0)

    @property
    def centre(self) -> Tuple[int, ...]:
        return tuple(k // 2 for k in self.kernel_size)

    def displacements(self, dilation: Sequence[int]) -> Tensor:
        """``[K, D]`` centred displacements ``(tap - centre) * dilation`` (submanifold convention)."""
        return (self.taps - torch.tensor(self.centre)) * torch.tensor(dilation)

    def centre_index(self) -> Optional[int]:
        """Index of the centre tap, or None if the region does not contain it."""
        hit = (self.taps == torch.tensor(self.centre)).all(dim=1).nonzero()
        return int(hit[0]) if hit.numel() else None

    def mirror(self) -> Optional[Tensor]:
        """``[K]`` index of the tap with the opposite centred displacement, or None if some tap has none.

        For odd kernels every cube and cross region is symmetric, which lets the submanifold builder look
        up only half of the offsets: offset ``-k`` is the transpose of offset ``k``.
        """
        if any(k % 2 == 0 for k in self.kernel_size):
            return None
        disp = self.taps - torch.tensor(self.centre)
        index = {tuple(d): i for i, d in enumerate(disp.tolist())}
        mirror = [index.get(tuple(-v for v in d)) for d in disp.tolist()]
        return None if any(m is None for m in mirror) else torch.tensor(mirror)

    def dense_mask(self) -> Tensor:
        """``[*kernel_size]`` bool, True at the taps of this region (for masked dense oracles)."""
        mask = torch.zeros(self.kernel_size, dtype=torch.bool)
        mask[tuple(self.taps.t())] = True
        return mask

    def __repr__(self) -> str:
        return f"KernelRegion(kind={self.kind!r}, kernel_size={self.kernel_size}, volume={self.volume})"

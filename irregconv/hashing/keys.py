"""Pack integer coordinates ``(batch, c_0, ..., c_{D-1})`` into int64 keys and back.

Keys are mixed-radix numbers over the key space ``(batch_size, *spatial_shape)``: key order equals
lexicographic order of ``(b, c_0, ..., c_{D-1})``, so sorting keys sorts sites deterministically.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .._numba import cpu_kernels, kernels, native_kernels

#: Largest key space (product of batch size and spatial extents) that fits an int64 key.
MAX_KEY_SPACE = 2 ** 62


def key_radices(spatial_shape: Sequence[int], batch_size: int, owner: str = "pack_keys") -> Tuple[int, ...]:
    """Extents ``(batch_size, *spatial_shape)`` of the key space, checked to fit int64 (errors name ``owner``)."""
    radices = (int(batch_size),) + tuple(int(s) for s in spatial_shape)
    space = 1
    for axis, r in enumerate(radices):
        if r <= 0:
            name = "batch_size" if axis == 0 else f"spatial_shape[{axis - 1}]"
            raise ValueError(f"{owner}: {name} must be positive, got {r}")
        space *= r
    if space > MAX_KEY_SPACE:
        raise ValueError(
            f"{owner}: key space batch_size x spatial_shape = {radices} has {space} cells, more than "
            f"2**62; use a coarser voxel size or a smaller point range")
    return radices


def pack_keys(coords: Tensor, spatial_shape: Sequence[int], batch_size: int, check: bool = True,
              owner: str = "pack_keys") -> Tensor:
    """Pack ``coords [N, 1 + D]`` (batch index in column 0) into int64 keys ``[N]``; errors name ``owner``
    (the public entry point that called it).

    Raises:
        ValueError: naming the axis and its limit when a coordinate is negative or not below the
            key space extent (``batch_size`` for column 0, ``spatial_shape[d]`` for column ``1 + d``).
    """
    radices = key_radices(spatial_shape, batch_size, owner)
    if coords.dim() != 2 or coords.size(1) != len(radices):
        raise ValueError(
            f"{owner}: coords must have shape [N, {len(radices)}] (batch + {len(radices) - 1} spatial "
            f"axes), got {list(coords.shape)}")
    if coords.dtype.is_floating_point or coords.dtype == torch.bool:
        raise TypeError(f"{owner}: coords must be an integer tensor, got {coords.dtype}")
    c = coords.long()
    if check and c.numel() > 0:
        lo = c.min(dim=0).values.tolist()
        hi = c.max(dim=0).values.tolist()
        for axis, (a, b, r) in enumerate(zip(lo, hi, radices)):
            name = "batch index (column 0)" if axis == 0 else f"spatial axis {axis - 1} (column {axis})"
            limit = "batch_size" if axis == 0 else f"spatial_shape[{axis - 1}]"
            if a < 0:
                raise ValueError(f"{owner}: coords has a negative {name}: {a}; coordinates must be >= 0")
            if b >= r:
                raise ValueError(
                    f"{owner}: coords has {name} = {b}, but {limit} = {r}; every value must be < {r}")
    key = c[:, 0].clone()
    for axis in range(1, len(radices)):
        key.mul_(radices[axis]).add_(c[:, axis])
    return key


def unpack_keys(keys: Tensor, spatial_shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`pack_keys`: ``keys [N]`` -> ``coords [N, 1 + D]`` int32."""
    path = cpu_kernels(keys)
    if path == "native":
        return native_kernels("hashing").unpack(keys.long(), spatial_shape)
    if path == "numba":
        shape = np.asarray([int(s) for s in spatial_shape], dtype=np.int64)
        return torch.from_numpy(kernels("irregconv.hashing._numba_kernels").unpack(keys.long().numpy(), shape))
    cols = []
    rest = keys.long()
    for extent in reversed([int(s) for s in spatial_shape]):
        cols.append(rest % extent)
        rest = rest // extent
    cols.append(rest)
    return torch.stack(cols[::-1], dim=1).to(torch.int32)

"""Full dense grid rulebook: every site of a ``[B, *spatial_shape]`` grid is active."""
from __future__ import annotations

from typing import Sequence

import torch

from .region import KernelRegion, as_tuple
from .rulebook import Geometry, Rulebook, pointer_from_counts
from .strided import conv_output_shape


def build_dense_rulebook(spatial_shape: Sequence[int], batch_size: int, kernel_size, stride=1, padding=0,
                         dilation=1, device=None) -> Rulebook:
    """Rulebook of an ordinary convolution on a full grid (the dense special case of the engine).

    Rows are sites in C order: input row ``b * prod(S) + flat(x)``, output row ``b * prod(S_out) + flat(o)``.
    Offset ``k`` is the C-order index of the kernel tap, matching torch's weight ``[C_out, C_in/G, *kernel]``;
    input ``x = o * stride - padding + tap * dilation`` (cross-correlation). Taps that land in the padding
    have no pair (zero padding). Built analytically, without hashing.

    Returns:
        Rulebook: ``geometry.out_spatial_shape`` holds the output shape (torch's conv output formula).
    """
    dims = len(spatial_shape)
    ks = as_tuple(kernel_size, dims, "kernel_size", "build_dense_rulebook")
    st = as_tuple(stride, dims, "stride", "build_dense_rulebook")
    pd = as_tuple(padding, dims, "padding", "build_dense_rulebook", minimum=0)
    dl = as_tuple(dilation, dims, "dilation", "build_dense_rulebook")
    shape = tuple(int(s) for s in spatial_shape)
    out_shape = conv_output_shape(shape, ks, st, pd, dl, owner="build_dense_rulebook")
    region = KernelRegion.cube(ks, dims)
    out_grid = torch.stack(torch.meshgrid(*[torch.arange(o, device=device) for o in out_shape], indexing="ij"),
                           dim=-1).reshape(-1, dims)
    src = (out_grid.unsqueeze(0) * torch.tensor(st, device=device) - torch.tensor(pd, device=device)
           + (region.taps * torch.tensor(dl)).to(device).unsqueeze(1))                    # [K, M, D]
    valid = ((src >= 0) & (src < torch.tensor(shape, device=device))).all(dim=2)
    k_idx, o_idx = valid.nonzero(as_tuple=True)
    flat_in = torch.zeros_like(o_idx)
    for a in range(dims):
        flat_in = flat_in * shape[a] + src[k_idx, o_idx, a]
    cells_in, cells_out = 1, out_grid.size(0)
    for s in shape:
        cells_in *= s
    counts = valid.sum(dim=1).cpu() * batch_size
    # pairs of batch item b follow those of b - 1 within each offset, keeping (offset, out) order
    per_k = torch.split(torch.arange(k_idx.numel(), device=device), valid.sum(dim=1).tolist())
    batch = torch.arange(batch_size, device=device)
    in_parts, out_parts = [], []
    for idx in per_k:
        in_parts.append((flat_in[idx].unsqueeze(0) + batch.unsqueeze(1) * cells_in).reshape(-1))
        out_parts.append((o_idx[idx].unsqueeze(0) + batch.unsqueeze(1) * cells_out).reshape(-1))
    geometry = Geometry("dense", region_key=region.key, stride=st, padding=pd, dilation=dl,
                        in_spatial_shape=shape, out_spatial_shape=out_shape)
    identity = region.centre_index() if (out_shape == shape and all(s == 1 for s in st) and
                                         all(p == d * (k // 2) for p, d, k in zip(pd, dl, ks)) and
                                         all(k % 2 == 1 for k in ks)) else None
    return Rulebook(in_idx=torch.cat(in_parts), out_idx=torch.cat(out_parts), offset_ptr=pointer_from_counts(counts),
                    num_in=batch_size * cells_in, num_out=batch_size * out_grid.size(0), geometry=geometry,
                    identity_offset=identity)

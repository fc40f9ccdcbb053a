"""The oracle: a plain per-offset loop of gather -> matmul -> scatter, differentiated by autograd.

Every fast path in :mod:`irregconv.engine.gather_scatter` is tested against this. It is also the
fallback that runs anywhere torch runs.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..rulebook import Rulebook


def apply_weight(x: Tensor, weight_k: Optional[Tensor], out: Optional[Tensor] = None) -> Tensor:
    """``x [P, C_in]`` times one offset's weight: ``[C_in, C_out]``, grouped ``[G, C_in/G, C_out/G]``, or None.

    ``out`` is an optional ``[P, C_out]`` buffer the result is written into (without weights, ``x`` itself
    is returned).
    """
    if weight_k is None:
        return x
    if weight_k.dim() == 2:
        return torch.mm(x, weight_k, out=out) if out is not None else x @ weight_k
    groups, cin, cout = weight_k.shape
    if cin == 1 and cout == 1:  # depthwise: an elementwise product
        return torch.mul(x, weight_k.reshape(groups), out=out)
    result = torch.bmm(x.reshape(-1, groups, cin).transpose(0, 1), weight_k).transpose(0, 1).reshape(-1, groups * cout)
    return out.copy_(result) if out is not None else result


def gather_scatter_reference(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook,
                             pair_scale: Optional[Tensor] = None) -> Tensor:
    """``out[o] = sum_k sum_{(i, o) in offset k} scale_p * feats[i] @ weight[k]``. Shapes as
    :func:`irregconv.engine.gather_scatter`."""
    c_out = feats.size(1) if weight is None else (weight.size(-1) * (weight.size(1) if weight.dim() == 4 else 1))
    out = feats.new_zeros(rulebook.num_out, c_out)
    ptr = rulebook.offset_ptr.tolist()
    for k in range(rulebook.kernel_volume):
        s, e = ptr[k], ptr[k + 1]
        msg = apply_weight(feats[rulebook.in_idx[s:e]], None if weight is None else weight[k])
        if pair_scale is not None:
            msg = msg * pair_scale[s:e].unsqueeze(1)
        out = out.index_add(0, rulebook.out_idx[s:e], msg)
    return out

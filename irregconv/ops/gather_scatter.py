"""``torch.ops.irregconv.gather_scatter`` and ``gather_scatter_backward``: the engine's convolution as operators.

.. math::
    \\mathbf{y}_o = \\mathbf{b} + \\sum_k \\sum_{(i, o) \\in R_k} s_{p} \\, \\mathbf{x}_i \\mathbf{W}_k

The rulebook ``R`` travels as its tensors (``in_idx``, ``out_idx``, ``offset_ptr``) and the few facts the engine
reads from it (``num_out``, ``injective``, ``identity_offset``, and ``mirror``, the offset permutation that makes a
symmetric submanifold rulebook its own transpose), so one schema serves convolution rulebooks (injective: one pair
per output row per offset) and graph rulebooks (many pairs per output row). The kernels rebuild a
:class:`~irregconv.rulebook.Rulebook` from them and run the engine (:func:`~irregconv.engine.gather_scatter.forward_kernel`,
:func:`~irregconv.engine.gather_scatter.backward_kernel`): the same bits as :func:`irregconv.engine.gather_scatter`.

Registered per dispatch key:

* ``CPU``: the engine (native kernels where they serve, torch elsewhere);
* ``CompositeExplicitAutograd`` of the forward (every other device): :func:`~irregconv.engine.gather_scatter_reference`
  plus the bias;
* ``Meta`` / fake: output shapes from the input shapes alone;
* ``Autograd``: ``gather_scatter_backward`` with an output mask, so one call returns exactly the gradients
  autograd asks for (the engine shares work between them);
* ``AutocastCPU``: ``feats``, ``weight`` and ``bias`` rounded to the autocast dtype, ``pair_scale`` to float32, then
  the operator with autocast off, whose CPU kernel sums half rows in float32 and rounds the output once: what
  :func:`irregconv.engine.gather_scatter` does under autocast.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from ..engine.gather_scatter import HALF_DTYPES, backward_kernel, forward_kernel
from ..engine.reference import gather_scatter_reference
from ..rulebook.rulebook import Geometry, Rulebook

LIBRARY = torch.library.Library("irregconv", "DEF")

_RULEBOOK_ARGS = "Tensor in_idx, Tensor out_idx, Tensor offset_ptr, SymInt num_out"
_RULEBOOK_FACTS = "bool injective, int? identity_offset, int[]? mirror"
LIBRARY.define(f"gather_scatter(Tensor feats, Tensor? weight, {_RULEBOOK_ARGS}, Tensor? pair_scale, Tensor? bias, "
               f"{_RULEBOOK_FACTS}) -> Tensor")
LIBRARY.define(f"gather_scatter_backward(Tensor grad_out, Tensor feats, Tensor? weight, {_RULEBOOK_ARGS}, "
               f"Tensor? pair_scale, {_RULEBOOK_FACTS}, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)")


class _RecentRulebooks:
    """The rulebooks rebuilt for the last ``capacity`` distinct argument sets, so repeated calls on one rulebook (every
    step of a compiled model) reuse what the engine derives and caches on it (CSR forms, transposes, chunks): on a
    20-node graph that derived state is 90% of a call. Keyed on the identity of the index tensors (address, dtype,
    shape, strides, version counter: a tensor changed in place misses) and the rulebook's facts; the entries keep
    their tensors alive, so an address cannot be reused by another tensor while it is cached.

    Attributes:
        builds (int): how many rulebooks were rebuilt (for reuse tests).
    """

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self.builds = 0
        self._entries: "OrderedDict[tuple, Rulebook]" = OrderedDict()

    def get_or_build(self, key: tuple, build: Callable[[], Rulebook]) -> Rulebook:
        rulebook = self._entries.get(key)
        if rulebook is None:
            rulebook = self._entries[key] = build()
            self.builds += 1
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return rulebook


_RECENT = _RecentRulebooks()


def _identity(t: Tensor) -> tuple:
    return t.data_ptr(), t.dtype, t.device, t.shape, t.stride(), t._version


def _rulebook(num_in: int, in_idx: Tensor, out_idx: Tensor, offset_ptr: Tensor, num_out: int, injective: bool,
              identity_offset: Optional[int], mirror: Optional[List[int]]) -> Rulebook:
    """The :class:`Rulebook` the engine reads, from the operator's arguments: checked (the engine trusts a rulebook),
    built once per argument set among the recent ones (see :class:`_RecentRulebooks`)."""
    key = (*map(_identity, (in_idx, out_idx, offset_ptr)), num_in, num_out, injective, identity_offset,
           None if mirror is None else tuple(mirror))
    return _RECENT.get_or_build(key, lambda: _build_rulebook(num_in, in_idx, out_idx, offset_ptr, num_out, injective,
                                                            identity_offset, mirror))


def _build_rulebook(num_in: int, in_idx: Tensor, out_idx: Tensor, offset_ptr: Tensor, num_out: int, injective: bool,
                    identity_offset: Optional[int], mirror: Optional[List[int]]) -> Rulebook:
    name = "torch.ops.irregconv.gather_scatter"
    for arg, index in (("in_idx", in_idx), ("out_idx", out_idx)):
        if index.dtype != torch.int64 or index.dim() != 1:
            raise ValueError(f"{name}: {arg} must be a [P] int64 tensor, got {index.dtype} of shape {list(index.shape)}")
    if out_idx.shape != in_idx.shape or in_idx.device != out_idx.device:
        raise ValueError(f"{name}: in_idx ({list(in_idx.shape)}, {in_idx.device}) and out_idx ({list(out_idx.shape)}, "
                         f"{out_idx.device}) must have one shape and device")
    if offset_ptr.dtype != torch.int64 or offset_ptr.dim() != 1 or offset_ptr.numel() < 1 or \
            offset_ptr.device.type != "cpu":
        raise ValueError(f"{name}: offset_ptr must be a [K + 1] int64 CPU tensor, got {offset_ptr.dtype} of shape "
                         f"{list(offset_ptr.shape)} on {offset_ptr.device}")
    kernel_volume = offset_ptr.numel() - 1
    for arg, offset in (("identity_offset", identity_offset), *(("mirror", m) for m in mirror or ())):
        if offset is not None and not 0 <= offset < kernel_volume:
            raise ValueError(f"{name}: {arg} must name offsets in [0, K = {kernel_volume}), got {offset}")
    if mirror is not None and len(mirror) != kernel_volume:
        raise ValueError(f"{name}: mirror must list K = {kernel_volume} offsets, got {len(mirror)}")
    rulebook = Rulebook(in_idx=in_idx, out_idx=out_idx, offset_ptr=offset_ptr, num_in=num_in, num_out=num_out,
                        geometry=Geometry("graph" if not injective else "subm"),  # the engine reads no geometry
                        identity_offset=identity_offset, injective=injective)
    if mirror is not None:
        rulebook._derived["mirror"] = list(mirror)
    return rulebook


def _c_out(feats: Tensor, weight: Optional[Tensor]) -> int:
    if weight is None:
        return feats.size(1)
    return weight.size(-1) * (weight.size(1) if weight.dim() == 4 else 1)


@torch.library.impl(LIBRARY, "gather_scatter", "CPU")
def _gather_scatter_cpu(feats: Tensor, weight: Optional[Tensor], in_idx: Tensor, out_idx: Tensor, offset_ptr: Tensor,
                        num_out: int, pair_scale: Optional[Tensor], bias: Optional[Tensor], injective: bool,
                        identity_offset: Optional[int], mirror: Optional[List[int]]) -> Tensor:
    rulebook = _rulebook(feats.size(0), in_idx, out_idx, offset_ptr, num_out, injective, identity_offset, mirror)
    return forward_kernel(feats, weight, rulebook, pair_scale, bias).contiguous()


@torch.library.impl(LIBRARY, "gather_scatter", "CompositeExplicitAutograd")
def _gather_scatter_reference(feats: Tensor, weight: Optional[Tensor], in_idx: Tensor, out_idx: Tensor,
                              offset_ptr: Tensor, num_out: int, pair_scale: Optional[Tensor], bias: Optional[Tensor],
                              injective: bool, identity_offset: Optional[int],
                              mirror: Optional[List[int]]) -> Tensor:
    rulebook = _rulebook(feats.size(0), in_idx, out_idx, offset_ptr, num_out, injective, identity_offset, mirror)
    out = gather_scatter_reference(feats, weight, rulebook, pair_scale)
    return out if bias is None else out + bias


@torch.library.register_fake("irregconv::gather_scatter", lib=LIBRARY)
def _gather_scatter_fake(feats: Tensor, weight: Optional[Tensor], in_idx: Tensor, out_idx: Tensor, offset_ptr: Tensor,
                         num_out: int, pair_scale: Optional[Tensor], bias: Optional[Tensor], injective: bool,
                         identity_offset: Optional[int], mirror: Optional[List[int]]) -> Tensor:
    _check_shapes(feats, weight, in_idx, offset_ptr, pair_scale, bias)
    return feats.new_empty(num_out, _c_out(feats, weight))


def _check_shapes(feats: Tensor, weight: Optional[Tensor], in_idx: Tensor, offset_ptr: Tensor,
                  pair_scale: Optional[Tensor], bias: Optional[Tensor]) -> None:
    """The checks a trace can make without data: shapes and dtypes (the kernels check the rest)."""
    name = "torch.ops.irregconv.gather_scatter"
    torch._check(feats.dim() == 2, lambda: f"{name}: feats must be [N_in, C_in], got {list(feats.shape)}")
    if feats.dtype not in HALF_DTYPES:  # half rows take any floating weight and bias (rounded to their dtype)
        for arg, t in (("weight", weight), ("bias", bias)):
            torch._check(t is None or t.dtype == feats.dtype,
                         lambda: f"{name}: {arg} ({t.dtype}) must match feats ({feats.dtype})")
    if weight is not None:
        torch._check(weight.dim() in (3, 4) and weight.size(0) == offset_ptr.size(0) - 1,
                     lambda: f"{name}: weight must be [K, C_in, C_out] or [K, G, C_in/G, C_out/G] with "
                             f"K = offset_ptr.numel() - 1 = {offset_ptr.size(0) - 1}, got {list(weight.shape)}")
        groups = weight.size(1) if weight.dim() == 4 else 1
        torch._check(weight.size(-2) * groups == feats.size(1),
                     lambda: f"{name}: weight {list(weight.shape)} expects C_in = {weight.size(-2) * groups}, "
                             f"feats has {feats.size(1)}")
    if pair_scale is not None:
        torch._check(pair_scale.dim() == 1 and pair_scale.size(0) == in_idx.size(0),
                     lambda: f"{name}: pair_scale must be [P] = [{in_idx.size(0)}], got {list(pair_scale.shape)}")
    if bias is not None:
        torch._check(bias.dim() == 1 and bias.size(0) == _c_out(feats, weight),
                     lambda: f"{name}: bias must be [C_out] = [{_c_out(feats, weight)}], got {list(bias.shape)}")


@torch.library.impl(LIBRARY, "gather_scatter_backward", "CPU")
def _gather_scatter_backward_cpu(grad_out: Tensor, feats: Tensor, weight: Optional[Tensor], in_idx: Tensor,
                                 out_idx: Tensor, offset_ptr: Tensor, num_out: int, pair_scale: Optional[Tensor],
                                 injective: bool, identity_offset: Optional[int], mirror: Optional[List[int]],
                                 output_mask: List[bool]) -> Tuple[Optional[Tensor], ...]:
    rulebook = _rulebook(feats.size(0), in_idx, out_idx, offset_ptr, num_out, injective, identity_offset, mirror)
    if grad_out.shape != (num_out, _c_out(feats, weight)):
        raise ValueError(f"torch.ops.irregconv.gather_scatter_backward: grad_out must be [N_out, C_out] = "
                         f"[{num_out}, {_c_out(feats, weight)}], got {list(grad_out.shape)}")
    grads = backward_kernel(grad_out, feats, weight, rulebook, pair_scale, tuple(output_mask))
    return tuple(None if g is None else g.contiguous() for g in grads)


@torch.library.register_fake("irregconv::gather_scatter_backward", lib=LIBRARY)
def _gather_scatter_backward_fake(grad_out: Tensor, feats: Tensor, weight: Optional[Tensor], in_idx: Tensor,
                                  out_idx: Tensor, offset_ptr: Tensor, num_out: int, pair_scale: Optional[Tensor],
                                  injective: bool, identity_offset: Optional[int], mirror: Optional[List[int]],
                                  output_mask: List[bool]) -> Tuple[Optional[Tensor], ...]:
    _check_shapes(feats, weight, in_idx, offset_ptr, pair_scale, None)
    likes = (feats, weight, pair_scale, grad_out[0])
    return tuple(torch.empty_like(like, memory_format=torch.contiguous_format) if need else None
                 for need, like in zip(output_mask, likes))


def _setup_context(ctx, inputs, output) -> None:
    feats, weight, in_idx, out_idx, offset_ptr, num_out, pair_scale, bias, injective, identity_offset, mirror = inputs
    ctx.save_for_backward(feats, weight, in_idx, out_idx, offset_ptr, pair_scale)
    ctx.facts = (num_out, injective, identity_offset, mirror)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_out: Tensor):
    feats, weight, in_idx, out_idx, offset_ptr, pair_scale = ctx.saved_tensors
    num_out, injective, identity_offset, mirror = ctx.facts
    needs = ctx.needs_input_grad
    output_mask = [needs[0], weight is not None and needs[1], pair_scale is not None and needs[6],
                   ctx.has_bias and needs[7]]
    grads = (None, None, None, None)
    if any(output_mask):
        grads = torch.ops.irregconv.gather_scatter_backward(
            grad_out.contiguous(), feats, weight, in_idx, out_idx, offset_ptr, num_out, pair_scale, injective,
            identity_offset, mirror, output_mask)
    grad_feats, grad_weight, grad_scale, grad_bias = grads
    return grad_feats, grad_weight, None, None, None, None, grad_scale, grad_bias, None, None, None


torch.library.register_autograd("irregconv::gather_scatter", _backward, setup_context=_setup_context, lib=LIBRARY)


def _autocast(dtype: torch.dtype, t: Optional[Tensor]) -> Optional[Tensor]:
    return t if t is None or not t.dtype.is_floating_point else t.to(dtype)


def _gather_scatter_autocast_cpu(feats: Tensor, weight: Optional[Tensor], in_idx: Tensor, out_idx: Tensor,
                                 offset_ptr: Tensor, num_out: int, pair_scale: Optional[Tensor],
                                 bias: Optional[Tensor], injective: bool, identity_offset: Optional[int],
                                 mirror: Optional[List[int]]) -> Tensor:
    """``feats``, ``weight`` and ``bias`` in the autocast dtype (float64 ``feats`` stay float64, as in the engine),
    ``pair_scale`` in float32, then the operator with autocast off."""
    if feats.dtype != torch.float64:
        dtype = torch.get_autocast_dtype("cpu")
        feats, weight, bias = (_autocast(dtype, t) for t in (feats, weight, bias))
        pair_scale = None if pair_scale is None else pair_scale.float()
    with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)):
        return torch.ops.irregconv.gather_scatter(feats, weight, in_idx, out_idx, offset_ptr, num_out, pair_scale,
                                                  bias, injective, identity_offset, mirror)


LIBRARY.impl("gather_scatter", lambda _keyset, *args: _gather_scatter_autocast_cpu(*args), "AutocastCPU",
             with_keyset=True)
torch.ops.irregconv.gather_scatter.default.py_impl(torch._C.DispatchKey.AutocastCPU)(_gather_scatter_autocast_cpu)

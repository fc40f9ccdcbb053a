"""Batch normalisation of feature rows with thread-count-independent statistics.

``torch.nn.BatchNorm1d`` on the CPU splits its reduction over rows across threads, so its output and
gradients change in the last bits between 1 and 2 threads (measured here on ``[41281, 16]`` features).
Here the batch statistics are summed in a fixed order whatever the thread count: for float32 CPU rows by the
native column-sum kernel (in double, over fixed blocks of rows), otherwise as matrix products with a row of
ones, which the BLAS computes bit-identically for any thread count (see ``irregconv/_determinism.py``);
everything else is elementwise. Same formula, parameters and running-statistics update as
``torch.nn.functional.batch_norm``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .._autograd import differentiable_once
from ..engine.backends import native


class _BatchStatsNorm(torch.autograd.Function):
    """``(x - mean) * rsqrt(var + eps) * weight + bias`` with the batch's ``mean`` and biased ``var``, and the
    closed-form backward: ``dx = rsqrt(var + eps) * weight * (g - mean(g) - xhat * mean(g * xhat))``.

    Autograd through the elementwise forward took ~10 passes over ``[N, C]`` per layer; this takes 4, and its
    sums are the same row-of-ones products as the forward's (thread-count independent).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float):
        ctx.has_bias = bias is not None
        if native.serves_rows(x):
            return _native_forward(ctx, x, weight, bias, eps)
        n = x.size(0)
        ones = x.new_ones(1, n)
        mean = (ones @ x) / n
        centered = x - mean
        var = (ones @ centered.square()) / n
        inv_std = torch.rsqrt(var + eps)
        xhat = centered.mul_(inv_std)
        ctx.native = False
        ctx.save_for_backward(xhat, inv_std, weight)
        out = xhat.clone() if weight is None else xhat * weight   # never the saved xhat: ReLU(inplace) follows
        if bias is not None:
            out.add_(bias)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @differentiable_once
    def backward(ctx, grad: Tensor, _grad_mean, _grad_var):
        if ctx.native:
            return _native_backward(ctx, grad.contiguous())
        xhat, inv_std, weight = ctx.saved_tensors
        n = xhat.size(0)
        grad = grad.contiguous()
        ones = grad.new_ones(1, n)
        grad_bias = ones @ grad                      # [1, C]: sum of g
        grad_weight = ones @ (grad * xhat)           # [1, C]: sum of g * xhat
        coef = inv_std if weight is None else inv_std * weight
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.addcmul(-(grad_bias / n) * coef, grad, coef)
            grad_x.addcmul_(xhat, (grad_weight / n) * coef, value=-1.0)
        grad_w = grad_weight.reshape(-1) if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = grad_bias.reshape(-1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


def _native_forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float):
    """float32 CPU rows: the statistics in two native passes summed in double (fixed blocks of rows, the same
    bits for any thread count), the output in one fused ``x * scale + shift`` pass; the backward recomputes
    ``xhat`` from the saved ``x`` instead of keeping it (3 passes over ``[N, C]`` instead of 7, one buffer)."""
    mean, var = native.column_moments(x)
    inv_std = torch.rsqrt(var + eps)
    scale = inv_std if weight is None else inv_std * weight.double()
    shift = -mean * scale if bias is None else bias.double() - mean * scale
    out = torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))
    ctx.native = True
    ctx.save_for_backward(x, mean, inv_std, weight)
    mean, var = mean.to(x.dtype).unsqueeze(0), var.to(x.dtype).unsqueeze(0)
    ctx.mark_non_differentiable(mean, var)
    return out, mean, var


def _native_backward(ctx, grad: Tensor):
    """``dx = coef * (g - mean(g) - xhat * mean(g * xhat))`` with ``coef = inv_std * weight``, as
    ``g * coef + x * a + b`` per column after one native pass for the two sums."""
    x, mean, inv_std, weight = ctx.saved_tensors
    n = x.size(0)
    sum_g, sum_g_xhat = native.column_grad_sums(grad, x, mean, inv_std)
    grad_x = None
    if ctx.needs_input_grad[0]:
        coef = inv_std if weight is None else inv_std * weight.double()
        a = -coef * sum_g_xhat * inv_std / n
        b = -coef * sum_g / n - a * mean
        grad_x = torch.addcmul(b.to(x.dtype), grad, coef.to(x.dtype)).addcmul_(x, a.to(x.dtype))
    grad_w = sum_g_xhat.to(x.dtype) if weight is not None and ctx.needs_input_grad[1] else None
    grad_b = sum_g.to(x.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return grad_x, grad_w, grad_b, None


def batch_norm_rows(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                    weight: Optional[Tensor], bias: Optional[Tensor], training: bool, momentum: float,
                    eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the rows of ``x [N, C]``.

    In training (or without running statistics) ``mean`` and the biased ``var`` are the batch's, and the
    running statistics (if given) move by ``momentum`` towards the batch mean and unbiased variance.
    float16 / bfloat16 rows, and rows inside an autocast region, are normalised in float32 (statistics included)
    and the output has ``x``'s dtype, as ``torch.nn.BatchNorm1d`` under autocast.
    """
    if x.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(x.device.type):
        as_float = lambda t: None if t is None else t.float()  # noqa: E731
        with torch.autocast(x.device.type, enabled=False):
            out = batch_norm_rows(x.float(), running_mean, running_var, as_float(weight), as_float(bias), training,
                                  momentum, eps)
        return out.to(x.dtype)
    if training or running_mean is None:
        n = x.size(0)
        if n == 0:  # as torch.nn.BatchNorm1d: no rows, no statistics; an empty output still joins the graph
            out = x if weight is None else x * weight
            return out if bias is None else out + bias
        if n == 1 and training:
            raise ValueError("batch_norm_rows: expected more than 1 row in training mode, got 1 "
                             "(as torch.nn.BatchNorm1d)")
        out, mean, var = _BatchStatsNorm.apply(x, weight, bias, eps)
        if training and running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean.squeeze(0), alpha=momentum)
                running_var.mul_(1 - momentum).add_(var.squeeze(0) * (n / (n - 1)), alpha=momentum)
        return out
    # running statistics (in x's dtype: half ones are read in float32): one fused pass x * scale + shift, as torch's
    # own CPU kernel computes it
    running_mean, running_var = running_mean.to(x.dtype), running_var.to(x.dtype)
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale if bias is None else bias - running_mean * scale
    return torch.addcmul(shift, x, scale)


def batch_norm_module_rows(module: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Apply a ``BatchNorm1d`` module to rows ``x [N, C]`` through :func:`batch_norm_rows`, honouring its
    ``momentum`` (``None`` = cumulative average), ``track_running_stats`` and ``num_batches_tracked``."""
    if x.dim() != 2 or x.size(1) != module.num_features:
        raise ValueError(f"{type(module).__name__}({module.num_features}): expected feature rows [N, "
                         f"{module.num_features}], got {list(x.shape)}; the previous layer's out_channels must "
                         f"equal num_features")
    momentum = 0.0 if module.momentum is None else module.momentum
    if module.training and module.track_running_stats and module.num_batches_tracked is not None:
        module.num_batches_tracked.add_(1)
        if module.momentum is None:
            momentum = 1.0 / float(module.num_batches_tracked)
    use_batch_stats = module.training or not module.track_running_stats
    return batch_norm_rows(x, module.running_mean if module.track_running_stats else None,
                           module.running_var if module.track_running_stats else None,
                           module.weight, module.bias, use_batch_stats, momentum, module.eps)

"""Autograd helpers shared by the library's ``torch.autograd.Function`` subclasses."""
from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable


def differentiable_once(backward):
    """Decorate a ``Function.backward`` like :func:`torch.autograd.function.once_differentiable` (its gradients
    cannot be differentiated again), paying for that only when they could be: with ``create_graph=True``.

    Autograd runs a backward with gradients off unless ``create_graph=True``; there ``once_differentiable``'s
    no-grad block and output checks only cost time (10 us a call here, 6% of a Cora GCN training step), so the
    backward runs directly, and through ``once_differentiable`` when gradients are on.
    """
    checked = once_differentiable(backward)

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            return checked(ctx, *grads)
        return backward(ctx, *grads)

    return wrapper

"""Containers and adapters between sparse and dense modules."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, Tuple

import torch
from torch import Tensor, nn

from ...functional.batch_norm import batch_norm_module_rows
from ...tensor import SparseTensor
from .base import SparseModule


def feature_steps(modules: Iterable[nn.Module]) -> Iterator[Tuple[nn.Module, bool]]:
    """The modules in order as ``(module, relu_after)``: a ``BatchNorm1d`` directly followed by a plain
    ``nn.ReLU`` (without hooks) comes with ``relu_after=True`` and the ReLU is left out, so that
    :func:`apply_feature_step` applies it in place on the normalised rows (one [N, C] buffer and pass fewer)."""
    modules = list(modules)
    i = 0
    while i < len(modules):
        relu = modules[i + 1] if i + 1 < len(modules) else None
        fuse = (isinstance(modules[i], nn.BatchNorm1d) and type(relu) is nn.ReLU and not relu._forward_hooks
                and not relu._forward_pre_hooks)
        yield modules[i], fuse
        i += 2 if fuse else 1


def apply_feature_step(module: nn.Module, relu_after: bool, feats: Tensor) -> Tensor:
    """``module(feats)`` for a non-sparse module; batch norms run through
    :func:`~irregconv.functional.batch_norm.batch_norm_module_rows`, whose output is always a new tensor that
    its backward does not keep, so a following ReLU may run in place on it."""
    if not isinstance(module, nn.BatchNorm1d):
        return module(feats)
    out = batch_norm_module_rows(module, feats)
    return torch.relu_(out) if relu_after and out.numel() else out


class SparseSequential(nn.Sequential):
    """``nn.Sequential`` for SparseTensors: sparse modules get the SparseTensor; any other module
    (``BatchNorm1d``, ``ReLU``, ``Dropout``, ``Linear``, ...) is applied to its features ``[N, C]``.

    ``torch.nn.BatchNorm1d`` modules run through
    :func:`~irregconv.functional.batch_norm.batch_norm_module_rows`: the same computation with the same
    parameters and buffers, but statistics that are bit-identical for any thread count (torch's CPU
    kernel is not), so a sparse network stays deterministic end to end.

    Accepts modules positionally, as an ``OrderedDict``, or as keyword arguments (named, in order).
    """

    def __init__(self, *args, **kwargs):
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            super().__init__(args[0])
        else:
            super().__init__(*args)
        for name, module in kwargs.items():
            if name in self._modules:
                raise ValueError(f"SparseSequential: module name {name!r} given twice")
            self.add_module(name, module)

    def forward(self, input):
        for module, relu_after in feature_steps(self):
            if isinstance(input, SparseTensor) and not isinstance(module, (SparseModule, SparseSequential)):
                input = input.replace(apply_feature_step(module, relu_after, input.feats))
            else:
                input = module(input)
                if relu_after:  # a batch norm given a dense tensor: its ReLU runs as usual
                    input = torch.relu(input)
        return input


class ToDense(SparseModule):
    """SparseTensor ``[N, C]`` -> dense ``[B, C, *spatial_shape]`` (channels first, zeros elsewhere)."""

    def forward(self, input: SparseTensor):
        if not isinstance(input, SparseTensor):
            raise TypeError(f"ToDense: input must be an irregconv.SparseTensor, got {type(input).__name__}")
        return input.dense()

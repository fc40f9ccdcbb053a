"""Containers and adapters between sparse and dense modules."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ...functional.batch_norm import batch_norm_module_rows
from ...tensor import SparseTensor
from .base import SparseModule


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
        for module in self:
            if isinstance(input, SparseTensor) and isinstance(module, nn.BatchNorm1d):
                input = input.replace(batch_norm_module_rows(module, input.feats))
            elif isinstance(input, SparseTensor) and not isinstance(module, (SparseModule, SparseSequential)):
                input = input.replace(module(input.feats))
            else:
                input = module(input)
        return input


class ToDense(SparseModule):
    """SparseTensor ``[N, C]`` -> dense ``[B, C, *spatial_shape]`` (channels first, zeros elsewhere)."""

    def forward(self, input: SparseTensor):
        if not isinstance(input, SparseTensor):
            raise TypeError(f"ToDense: input must be an irregconv.SparseTensor, got {type(input).__name__}")
        return input.dense()

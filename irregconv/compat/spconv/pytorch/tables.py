"""``spconv.pytorch.tables``: modules over lists of sparse tensors, as spconv's (from SparseConvNet):
:class:`ConcatTable` runs several modules on one tensor and returns their outputs; :class:`JoinTable`
concatenates the features of tensors on the same sites, :class:`AddTable` adds them, and
:class:`AddTableMisaligned` adds tensors whose sites differ (:func:`~.functional.sparse_add`).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .core import SparseConvTensor, _same_sites
from .functional import sparse_add
from .modules import SparseModule

__all__ = ["AddTable", "AddTableMisaligned", "ConcatTable", "JoinTable"]


def _aligned_operands(module: nn.Module, input) -> List[SparseConvTensor]:
    """``input`` checked to be a non-empty list of SparseConvTensors on the same sites (the same indices in the
    same order, as spconv assumes without checking more than the row count)."""
    owner = type(module).__name__
    if not isinstance(input, (list, tuple)) or not input:
        raise TypeError(f"{owner}: input must be a non-empty list of SparseConvTensors, got "
                        f"{type(input).__name__ if not isinstance(input, (list, tuple)) else 'an empty list'}")
    for i, t in enumerate(input):
        if not isinstance(t, SparseConvTensor):
            raise TypeError(f"{owner}: input[{i}] must be a SparseConvTensor, got {type(t).__name__}")
    first = input[0].sites()
    for i, t in enumerate(input[1:], 1):
        if not _same_sites(t.sites(), first):
            raise ValueError(f"{owner}: input[{i}] has {t.features.size(0)} sites on spatial_shape {t.spatial_shape} "
                             f"but input[0] has {input[0].features.size(0)} on {input[0].spatial_shape}; the tensors "
                             f"must have the same indices in the same order (use AddTableMisaligned or "
                             f"spconv.pytorch.functional.sparse_add for different sites)")
    return list(input)


class JoinTable(SparseModule):
    """Concatenates the features of tensors on the same sites: ``[N, C_1], [N, C_2], ... -> [N, sum C_i]`` on
    ``input[0]``'s sites and ``indice_dict``. spconv also asserts that every ``C_i`` is equal; here they may
    differ.

    Shapes:
        - input: list of SparseConvTensor ``features [N, C_i]`` -> output ``features [N, sum C_i]``.
    """

    def forward(self, input: Sequence[SparseConvTensor]) -> SparseConvTensor:
        tensors = _aligned_operands(self, input)
        return tensors[0].replace_feature(torch.cat([t.features for t in tensors], dim=1))

    def input_spatial_size(self, out_size):
        return out_size


class AddTable(SparseModule):
    """Adds the features of tensors on the same sites, on ``input[0]``'s sites and ``indice_dict``.

    Shapes:
        - input: list of SparseConvTensor ``features [N, C]`` -> output ``features [N, C]``.
    """

    def forward(self, input: Sequence[SparseConvTensor]) -> SparseConvTensor:
        tensors = _aligned_operands(self, input)
        channels = [t.features.size(1) for t in tensors]
        if len(set(channels)) > 1:
            raise ValueError(f"AddTable: the tensors have {channels} channels; they must all have the same number")
        return tensors[0].replace_feature(sum((t.features for t in tensors[1:]), tensors[0].features))

    def input_spatial_size(self, out_size):
        return out_size


class AddTableMisaligned(SparseModule):
    """Adds tensors whose sites differ (:func:`~.functional.sparse_add`): features summed where sites
    coincide. The ``indice_dict`` is kept only when the sum has the largest operand's sites.

    Shapes:
        - input: list of SparseConvTensor ``features [N_i, C]`` -> output ``features [N_out, C]``.
    """

    def forward(self, input: Sequence[SparseConvTensor]) -> SparseConvTensor:
        if not isinstance(input, (list, tuple)):
            raise TypeError(f"AddTableMisaligned: input must be a list of SparseConvTensors, got "
                            f"{type(input).__name__}")
        return sparse_add(*input)

    def input_spatial_size(self, out_size):
        return out_size


class ConcatTable(SparseModule):
    """Runs every child module on the same input and returns the list of their outputs (in order).

    Shapes:
        - input: SparseConvTensor -> list of each child's output.
    """

    def forward(self, input) -> list:
        return [module(input) for module in self._modules.values()]

    def add(self, module: nn.Module) -> "ConcatTable":
        """Append ``module`` (named by its position); returns the table, so calls chain."""
        if not isinstance(module, nn.Module):
            raise TypeError(f"ConcatTable.add: module must be a torch.nn.Module, got {type(module).__name__}")
        self.add_module(str(len(self._modules)), module)
        return self

    def input_spatial_size(self, out_size):
        return self._modules["0"].input_spatial_size(out_size)

"""``spconv.pytorch.functional``: :func:`sparse_add`, the sum of sparse tensors whose sites differ.

The union of the sites is found through irregconv's packed coordinate keys (:mod:`irregconv.hashing`): the
keys of every tensor are concatenated and made unique, and each tensor's features are scattered (summed) into
the rows of their sites. Differentiable with respect to every input's features.
"""
from __future__ import annotations

from typing import List

import torch

from .core import SparseConvTensor

__all__ = ["sparse_add", "sparse_add_hash_based"]


def _check_operands(tensors, owner: str) -> List[SparseConvTensor]:
    if not tensors:
        raise ValueError(f"{owner}: give at least one SparseConvTensor, got none")
    for i, t in enumerate(tensors):
        if not isinstance(t, SparseConvTensor):
            raise TypeError(f"{owner}: argument {i} must be a SparseConvTensor, got {type(t).__name__}")
    first = tensors[0]
    for i, t in enumerate(tensors[1:], 1):
        for what, mine, theirs in (("spatial_shape", t.spatial_shape, first.spatial_shape),
                                   ("batch_size", t.batch_size, first.batch_size),
                                   ("channel count", t.features.size(1), first.features.size(1)),
                                   ("features dtype", t.features.dtype, first.features.dtype)):
            if mine != theirs:
                raise ValueError(f"{owner}: tensor {i} has {what} {mine} but tensor 0 has {theirs}; sparse tensors "
                                 f"can only be added on the same grid, batch and channels")
    return list(tensors)


def sparse_add(*tens: SparseConvTensor) -> SparseConvTensor:
    """The sum of sparse tensors on the union of their sites: where sites coincide the features are added,
    elsewhere each tensor's rows are kept.

    Rows come sorted by ``(batch, *spatial)``, as spconv's, except when the union is the sites of the largest
    operand: then the output keeps that operand's rows, order and ``indice_dict``, so an inverse convolution
    recorded on those sites still applies (spconv keeps the ``indice_dict`` in that case but sorts the rows,
    which misaligns them with it). Otherwise the ``indice_dict`` is empty.

    Args:
        *tens (SparseConvTensor): one or more tensors with the same ``spatial_shape``, ``batch_size`` and
            channel count ``C``.

    Shapes:
        - ``features [N_i, C]`` each -> ``features [N_out, C]``, ``N_out`` the number of distinct sites.
    """
    tensors = _check_operands(tens, "sparse_add")
    first, sizes = tensors[0], [t.features.size(0) for t in tensors]
    largest = max(range(len(tensors)), key=sizes.__getitem__)  # the first of the largest, as spconv
    union, rows = torch.unique(torch.cat([t.sites().keys for t in tensors]), sorted=True, return_inverse=True)
    keep_largest = union.numel() == sizes[largest]
    if keep_largest:  # number the union in the largest operand's row order
        position = torch.empty_like(union)
        position[rows.split(sizes)[largest]] = torch.arange(union.numel(), device=union.device)
        rows = position[rows]
    features = first.features.new_zeros(union.numel(), first.features.size(1))
    for t, t_rows in zip(tensors, rows.split(sizes)):
        features = features.index_add(0, t_rows, t.features)
    if keep_largest:
        return SparseConvTensor._on_sites(features, tensors[largest].sites(), tensors[largest].indice_dict,
                                          first.grid, first.voxel_num)
    indices = first.indices.new_empty(union.numel(), first.indices.size(1))
    indices[rows] = torch.cat([t.indices for t in tensors])
    return SparseConvTensor(features, indices, first.spatial_shape, first.batch_size, first.grid, first.voxel_num)


def sparse_add_hash_based(*tens: SparseConvTensor) -> SparseConvTensor:
    """spconv's hash-table variant of :func:`sparse_add` (used by ``AddTableMisaligned``): the same sum; here
    the rows come in :func:`sparse_add`'s order, where spconv's come in its hash table's order."""
    _check_operands(tens, "sparse_add_hash_based")
    return sparse_add(*tens)

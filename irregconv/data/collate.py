"""Batching :class:`~irregconv.SparseTensor` samples for a ``torch.utils.data.DataLoader``.

A data set returns one scan per item (a SparseTensor with batch index 0, or with several batch entries of
its own); :func:`collate` stacks them into one SparseTensor whose batch column is renumbered, and collates
whatever else the items hold (targets, ids, dicts, tuples) as torch's ``default_collate`` does.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data._utils.collate import collate as _collate_with_map
from torch.utils.data._utils.collate import default_collate_fn_map

from ..hashing.keys import key_radices
from ..tensor import SparseTensor, Sites


def collate_sparse_tensors(tensors: Sequence[SparseTensor]) -> SparseTensor:
    """One SparseTensor holding ``tensors`` one after another along the batch axis.

    Tensor ``i``'s batch entry ``b`` becomes batch entry ``b + batch_size_0 + ... + batch_size_{i-1}``; rows keep
    their order (all of tensor 0's first). The features are concatenated, so gradients flow back to each input.

    Args:
        tensors (sequence of SparseTensor): same spatial shape, number of channels, dtype and device.

    Returns:
        SparseTensor: ``batch_size = sum of the batch sizes``, on new sites (no rulebooks yet).

    Shapes:
        - ``T`` tensors ``feats [N_t, C]``, ``coords [N_t, 1 + D]`` -> ``feats [sum N_t, C]``,
          ``coords [sum N_t, 1 + D]``.

    Raises:
        TypeError: ``tensors`` is not a sequence of SparseTensor.
        ValueError: ``tensors`` is empty, or naming the first tensor whose spatial shape, channels, dtype or device differs from tensor 0's.
    """
    owner = "collate_sparse_tensors"
    if isinstance(tensors, SparseTensor) or not isinstance(tensors, Sequence):
        raise TypeError(f"{owner}: tensors must be a sequence of SparseTensor, got {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ValueError(f"{owner}: tensors is empty; give at least one SparseTensor")
    first = tensors[0]
    for i, t in enumerate(tensors):
        if not isinstance(t, SparseTensor):
            raise TypeError(f"{owner}: item {i} is a {type(t).__name__}, not a SparseTensor; a batch cannot mix them")
        checks = (("spatial_shape", t.spatial_shape, first.spatial_shape,
                   "voxelize every scan with the same point range and voxel size"),
                  ("num_channels", t.num_channels, first.num_channels, "give every scan the same features"),
                  ("dtype", t.dtype, first.dtype, "convert them with .to(dtype)"),
                  ("device", t.device, first.device, "collate on one device (usually the CPU) and move the batch"))
        for name, got, want, fix in checks:
            if got != want:
                raise ValueError(f"{owner}: item {i} has {name} {got} but item 0 has {want}; {fix}")
    batch_size = sum(t.batch_size for t in tensors)
    key_radices(first.spatial_shape, batch_size, owner)  # the batched key space must still fit int64
    coords = torch.cat([t.coords for t in tensors])
    offsets = torch.tensor([0] + [t.batch_size for t in tensors[:-1]], dtype=torch.int32, device=coords.device)
    counts = torch.tensor([t.num_sites for t in tensors], device=coords.device)
    coords[:, 0] += torch.repeat_interleave(offsets.cumsum(0, dtype=torch.int32), counts)
    feats = torch.cat([t.feats for t in tensors])
    return SparseTensor.from_sites(feats, Sites(coords, first.spatial_shape, batch_size))


def _collate_sparse_field(batch, *, collate_fn_map=None):
    return collate_sparse_tensors(batch)


#: torch's default collate functions plus SparseTensor (see ``torch.utils.data.default_collate``)
COLLATE_FN_MAP = {**default_collate_fn_map, SparseTensor: _collate_sparse_field}


def collate(batch: Sequence):
    """DataLoader ``collate_fn``: SparseTensors batched by :func:`collate_sparse_tensors`, everything else as
    ``torch.utils.data.default_collate`` does (tensors and numbers stacked, tuples and dicts field by field).

    Args:
        batch (sequence): the items of one batch: SparseTensors, or tuples / lists / dicts (nested freely)
            whose fields are SparseTensors, tensors, numpy arrays, numbers or strings.

    Returns:
        the batch: a SparseTensor for SparseTensor items; for ``(SparseTensor, target)`` items a tuple
        ``(SparseTensor, stacked targets)``; for dicts a dict of collated fields.

    Example:
        >>> loader = torch.utils.data.DataLoader(scans, batch_size=4, collate_fn=collate)  # doctest: +SKIP
        >>> for x, target in loader:  # x: one SparseTensor with batch_size 4
        ...     ...
    """
    if isinstance(batch, (SparseTensor, str, bytes)) or not isinstance(batch, Sequence):
        raise TypeError(f"collate: batch must be a sequence of samples (what a DataLoader passes its collate_fn), "
                        f"got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("collate: batch is empty; give at least one sample")
    return _collate_with_map(batch, collate_fn_map=COLLATE_FN_MAP)

"""``spconv.pytorch.core``: :class:`SparseConvTensor`, spconv's sparse tensor, and :class:`IndiceData`, what a
layer with an ``indice_key`` records in the tensor's ``indice_dict``.

A :class:`SparseConvTensor` is ``features [N, C]`` on ``indices [N, 1 + D]`` (batch index in column 0); the
first layer that needs its coordinate set builds an irregconv :class:`~irregconv.tensor.Sites` (hash table and
rulebook cache) from ``indices`` and keeps it while ``indices`` is unchanged, so layers on the same sites share
rulebooks with or without ``indice_key``.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ....functional.sparse_conv import strided_rulebook, subm_rulebook, transposed_rulebook
from ....rulebook import KernelRegion, Rulebook
from ....rulebook.rulebook import rows_from_pointer
from ....tensor import Sites, SparseTensor
from ..core import ConvAlgo
from ..weights import MAX_NUM_VOXELS

__all__ = ["IndiceData", "SparseConvTensor"]


@dataclass(frozen=True, eq=False)
class IndiceData:
    """What a layer with an ``indice_key`` recorded: its geometry and the sites it read and wrote, with the
    fields of spconv's ``IndiceData`` that model code reads.

    ``kind`` is ``"subm"``, ``"strided"`` (convolutions and pools) or ``"transposed"``; ``geometry``
    holds kernel size and dilation (``"subm"``) or kernel size, stride, padding, dilation (and output padding
    for ``"transposed"``), as tuples.

    spconv's fields: ``indices`` ``[N_in, 1 + D]`` and ``out_indices`` ``[N_out, 1 + D]`` int32,
    ``spatial_shape``, ``out_spatial_shape``, ``is_subm``, ``ksize``, ``stride``, ``padding``, ``dilation``
    (lists; a submanifold record has stride 1 and padding 0, since its padding has no effect), ``algo``
    (``ConvAlgo.Native``), ``voxel_num`` (None), and the rulebook in spconv's native layout:
    ``indice_pairs`` ``[2, K, N_in]`` int32 (row 0 the input row, row 1 the output row of each pair of offset
    ``k``, padded with -1) and ``indice_pair_num`` ``[K]`` int32. Two differences from spconv's CPU build:
    ``indice_pair_num`` counts every pair of every offset (spconv's submanifold record counts only the offsets
    before the centre and 0 for the centre, and relies on symmetry), and pairs within one offset come in
    irregconv's rulebook order. :attr:`rulebook` is the irregconv rulebook itself.
    """
    kind: str
    geometry: Tuple[Tuple[int, ...], ...]
    in_sites: Sites
    out_sites: Sites

    @property
    def is_subm(self) -> bool:
        return self.kind == "subm"

    @property
    def ksize(self) -> List[int]:
        return list(self.geometry[0])

    @property
    def stride(self) -> List[int]:
        return [1] * len(self.geometry[0]) if self.is_subm else list(self.geometry[1])

    @property
    def padding(self) -> List[int]:
        return [0] * len(self.geometry[0]) if self.is_subm else list(self.geometry[2])

    @property
    def dilation(self) -> List[int]:
        return list(self.geometry[1] if self.is_subm else self.geometry[3])

    @property
    def algo(self) -> ConvAlgo:
        return ConvAlgo.Native

    @property
    def voxel_num(self) -> None:
        return None

    @property
    def indices(self) -> Tensor:
        return self.in_sites.coords

    @property
    def out_indices(self) -> Tensor:
        return self.out_sites.coords

    @property
    def spatial_shape(self) -> List[int]:
        return list(self.in_sites.spatial_shape)

    @property
    def out_spatial_shape(self) -> List[int]:
        return list(self.out_sites.spatial_shape)

    @property
    def rulebook(self) -> Rulebook:
        """The irregconv rulebook this layer ran on (from the input sites' cache: built once)."""
        region = KernelRegion.cube(self.geometry[0], len(self.geometry[0]))
        if self.is_subm:
            return subm_rulebook(self.in_sites, region, self.geometry[1])
        if self.kind == "transposed":
            return transposed_rulebook(self.in_sites, region, *self.geometry[1:])[0]
        return strided_rulebook(self.in_sites, region, *self.geometry[1:])[0]

    @property
    def indice_pairs(self) -> Tensor:
        """``[2, K, N_in]`` int32: ``[0, k, j]`` the input row and ``[1, k, j]`` the output row of the ``j``-th pair
        of offset ``k``; -1 after the last pair."""
        rulebook = self.rulebook
        pairs = torch.full((2, rulebook.kernel_volume, rulebook.num_in), -1, dtype=torch.int32,
                           device=rulebook.device)
        ptr = rulebook.offset_ptr.to(rulebook.device)
        offset = rows_from_pointer(ptr)
        slot = torch.arange(rulebook.num_pairs, device=rulebook.device) - ptr[offset]
        pairs[0, offset, slot] = rulebook.in_idx.to(torch.int32)
        pairs[1, offset, slot] = rulebook.out_idx.to(torch.int32)
        return pairs

    @property
    def indice_pair_num(self) -> Tensor:
        """``[K]`` int32: the number of pairs of every kernel offset."""
        return self.rulebook.counts().to(torch.int32)

    def describe(self) -> str:
        names = ("kernel_size", "dilation") if self.kind == "subm" else \
            ("kernel_size", "stride", "padding", "dilation", "output_padding")
        return f"{self.kind} layer with " + ", ".join(f"{n}={v}" for n, v in zip(names, self.geometry))


def _same_sites(a: Sites, b: Sites) -> bool:
    return a is b or (a.spatial_shape == b.spatial_shape and a.batch_size == b.batch_size and len(a) == len(b)
                      and torch.equal(a.coords, b.coords))


def _describe_sites(sites: Sites) -> str:
    return f"{len(sites)} sites on spatial_shape {list(sites.spatial_shape)} (batch_size {sites.batch_size})"


class SparseConvTensor:
    """spconv's sparse tensor: ``features [N, C]`` on ``indices [N, 1 + D]`` (batch index in column 0).

    Args:
        features (Tensor): ``[N, C]`` floating point.
        indices (Tensor): ``[N, 1 + D]`` int32 or int64 (stored as int32), unique, inside the grid.
        spatial_shape (sequence of int): ``D`` grid extents, in the order of ``indices`` columns 1..
        batch_size (int): ``B``.
        grid, voxel_num: kept as attributes (spconv's TensorRT helpers); unused.
        indice_dict (dict, optional): ``indice_key -> IndiceData`` of earlier layers (default: empty).
        benchmark, permanent_thrust_allocator, enable_timer, force_algo: spconv's CUDA/profiling options,
            accepted and ignored.

    Methods as spconv's: :meth:`replace_feature`, :meth:`shadow_copy`, :meth:`minus`, :meth:`select_by_index`,
    :meth:`dense`, :meth:`from_dense`, :meth:`find_indice_pair`, ``+`` (features added on the same sites).

    ``features`` and ``indices`` may be reassigned (spconv 1.x style, and the concatenations of VoxelNeXt-like
    code); the coordinate set (hash table, cached rulebooks) is rebuilt and validated the next time a
    layer needs it, also after an in-place change of ``indices``. Rows of ``features`` and ``indices`` must
    agree by then.

    Shapes:
        - features ``[N, C]``, indices ``[N, 1 + D]`` -> :meth:`dense` ``[B, C, *spatial_shape]``.
    """

    def __init__(self, features: Tensor, indices: Tensor, spatial_shape: Sequence[int], batch_size: int,
                 grid: Optional[Tensor] = None, voxel_num: Optional[Tensor] = None,
                 indice_dict: Optional[Dict[str, IndiceData]] = None, benchmark: bool = False,
                 permanent_thrust_allocator: bool = False, enable_timer: bool = False, force_algo=None):
        self.features = features
        self.indices = indices
        try:  # operator.index: ints and numpy ints pass, 8.5 or "8" are refused rather than truncated or parsed
            self.spatial_shape = [operator.index(s) for s in spatial_shape]
        except TypeError:
            raise TypeError(f"SparseConvTensor: spatial_shape must be a sequence of {indices.size(1) - 1} ints, "
                            f"got {spatial_shape!r}") from None
        if len(self.spatial_shape) != indices.size(1) - 1:
            raise ValueError(f"SparseConvTensor: spatial_shape {self.spatial_shape} has {len(self.spatial_shape)} "
                             f"axes but indices has {indices.size(1) - 1} spatial columns (indices "
                             f"{list(indices.shape)}); give one extent per column after the batch index")
        try:
            count = operator.index(batch_size)  # ints, numpy ints and 0-d integer tensors
        except TypeError:
            count = None
        if count is None or isinstance(batch_size, bool) or count <= 0:
            raise ValueError(f"SparseConvTensor: batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = count
        self.indice_dict = {} if indice_dict is None else indice_dict
        self.grid = grid
        self.voxel_num = voxel_num
        self._bound: Optional[Tuple[Tensor, int, Tuple[int, ...], int, Sites]] = None

    # features and indices are assignable, checked on assignment
    @property
    def features(self) -> Tensor:
        return self._features

    @features.setter
    def features(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"SparseConvTensor: features must be a torch.Tensor [N, C], got {type(value).__name__}")
        if value.dim() != 2:
            raise ValueError(f"SparseConvTensor: features must have shape [N, C], got {list(value.shape)}")
        self._features = value

    @property
    def indices(self) -> Tensor:
        return self._indices

    @indices.setter
    def indices(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"SparseConvTensor: indices must be an integer torch.Tensor [N, 1 + D], got "
                            f"{type(value).__name__}")
        if value.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"SparseConvTensor: indices must be int32 or int64, got {value.dtype}")
        if value.dim() != 2 or value.size(1) < 2:
            raise ValueError(f"SparseConvTensor: indices must have shape [N, 1 + D] with the batch index in column 0, "
                             f"got {list(value.shape)}")
        self._indices = value.to(torch.int32)

    @property
    def spatial_size(self) -> int:
        return math.prod(self.spatial_shape)

    def sites(self) -> Sites:
        """The irregconv coordinate set of ``indices`` (hash table and rulebook cache), built and validated
        on first use and again whenever ``indices``, ``spatial_shape`` or ``batch_size`` changed."""
        indices, shape = self._indices, tuple(self.spatial_shape)
        bound = self._bound
        if (bound is not None and bound[0] is indices and bound[1] == indices._version and bound[2] == shape
                and bound[3] == self.batch_size):
            return bound[4]
        if self._features.size(0) != indices.size(0):
            raise ValueError(f"SparseConvTensor: features has {self._features.size(0)} rows but indices has "
                             f"{indices.size(0)}; they must describe the same sites")
        try:
            sites = SparseTensor(self._features, indices, shape, self.batch_size).sites
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"SparseConvTensor.indices: {exc}") from None
        self._bind(sites)
        return sites

    def _bind(self, sites: Sites) -> None:
        self._bound = (self._indices, self._indices._version, tuple(self.spatial_shape), self.batch_size, sites)

    @classmethod
    def _on_sites(cls, features: Tensor, sites: Sites, indice_dict: Dict[str, IndiceData],
                  grid: Optional[Tensor] = None, voxel_num: Optional[Tensor] = None) -> "SparseConvTensor":
        """A tensor on already validated sites (a layer's output): no checks, no hashing."""
        out = cls.__new__(cls)
        out._features, out._indices = features, sites.coords
        out.spatial_shape, out.batch_size = list(sites.spatial_shape), sites.batch_size
        out.indice_dict, out.grid, out.voxel_num = indice_dict, grid, voxel_num
        out._bind(sites)
        return out

    def replace_feature(self, feature: Tensor) -> "SparseConvTensor":
        """A new tensor with ``feature [N, C']`` on the same indices, sharing ``indice_dict`` and sites."""
        out = SparseConvTensor.__new__(SparseConvTensor)
        out.features = feature
        out._indices, out.spatial_shape, out.batch_size = self._indices, list(self.spatial_shape), self.batch_size
        out.indice_dict, out.grid, out.voxel_num, out._bound = self.indice_dict, self.grid, self.voxel_num, self._bound
        return out

    def shadow_copy(self) -> "SparseConvTensor":
        """A new tensor object with the same features, indices, sites and the same ``indice_dict`` (shared, as
        spconv's)."""
        return self.replace_feature(self._features)

    def minus(self) -> "SparseConvTensor":
        """The tensor with negated features, on the same sites."""
        return self.replace_feature(-self._features)

    def select_by_index(self, valid_indices: Tensor) -> "SparseConvTensor":
        """The rows ``valid_indices`` selects (a bool mask ``[N]`` or integer row indices ``[M]``), with an empty
        ``indice_dict``: the records of earlier layers describe the old sites.

        spconv 2.3.8's version raises (it assigns ``features``, which its tensor refuses) and clears the
        ``indice_dict`` it shares with ``self``; this one leaves ``self`` unchanged.
        """
        if not isinstance(valid_indices, Tensor) or valid_indices.dim() != 1 or \
                valid_indices.dtype.is_floating_point or valid_indices.is_complex():
            got = f"{valid_indices.dtype} {list(valid_indices.shape)}" if isinstance(valid_indices, Tensor) \
                else type(valid_indices).__name__
            raise TypeError(f"SparseConvTensor.select_by_index: valid_indices must be a bool mask [N] = "
                            f"[{self._indices.size(0)}] or an integer tensor of row indices [M], got {got}")
        if valid_indices.dtype == torch.bool and valid_indices.numel() != self._indices.size(0):
            raise ValueError(f"SparseConvTensor.select_by_index: the bool mask has {valid_indices.numel()} entries "
                             f"but the tensor has {self._indices.size(0)} rows")
        rows = valid_indices.to(self._indices.device)
        return SparseConvTensor(self._features[rows.to(self._features.device)], self._indices[rows],
                                self.spatial_shape, self.batch_size, self.grid, self.voxel_num)

    def find_indice_pair(self, key) -> Optional[IndiceData]:
        """The :class:`IndiceData` recorded under ``key`` by an earlier layer, or None."""
        return None if key is None else self.indice_dict.get(key)

    def dense(self, channels_first: bool = True) -> Tensor:
        """``[B, C, *spatial_shape]`` (or channels last) with zeros at inactive sites; differentiable.

        Contiguous, as spconv's: detector code reshapes it with ``.view`` (height compression)."""
        return SparseTensor.from_sites(self._features, self.sites()).dense(channels_first).contiguous()

    @classmethod
    def from_dense(cls, x: Tensor) -> "SparseConvTensor":
        """Sites with any nonzero channel of a channels-last ``x [B, *spatial, C]`` (as spconv's)."""
        native = SparseTensor.from_dense(x.movedim(-1, 1))
        return cls._on_sites(native.feats, native.sites, {})

    def __add__(self, other) -> "SparseConvTensor":
        return self.replace_feature(self._features + (other.features if isinstance(other, SparseConvTensor) else other))

    __radd__ = __add__

    def __repr__(self) -> str:
        return (f"SparseConvTensor[shape={list(self._features.shape)}, spatial_shape={self.spatial_shape}, "
                f"batch_size={self.batch_size}]")


def _check_input(module: nn.Module, input, ndim: int, in_channels: Optional[int]) -> None:
    name = type(module).__name__
    if not isinstance(input, SparseConvTensor):
        raise TypeError(f"{name}: input must be a SparseConvTensor (irregconv.compat.spconv), got "
                        f"{type(input).__name__}")
    if len(input.spatial_shape) != ndim:
        raise ValueError(f"{name}: expects {ndim} spatial axes (indices [N, {1 + ndim}]), got a tensor with "
                         f"spatial_shape {input.spatial_shape}; use the {len(input.spatial_shape)}d variant")
    if in_channels is not None and input.features.size(1) != in_channels:
        raise ValueError(f"{name}: in_channels={in_channels} but the input features have {input.features.size(1)} "
                         f"channels (features {list(input.features.shape)})")


def _keyed_sites(module, input: SparseConvTensor, kind: str, geometry: tuple, sites: Sites) -> Sites:
    """Check this layer against the record under its ``indice_key``; the recorded sites when they match."""
    key = module.indice_key
    record = input.find_indice_pair(key)
    if record is None:
        return sites
    owner = type(module).__name__
    mine = IndiceData(kind, geometry, sites, sites)
    if record.kind != kind or record.geometry != geometry:
        raise ValueError(f"{owner}: indice_key={key!r} was recorded by a {record.describe()}, but this is a "
                         f"{mine.describe()}; one key names one rulebook, so give this layer its own indice_key")
    if not _same_sites(record.in_sites, sites):
        raise ValueError(f"{owner}: indice_key={key!r} was recorded on {_describe_sites(record.in_sites)}, but this "
                         f"input has {_describe_sites(sites)}; a key may only be reused on the same sites (after a "
                         f"strided conv, use a new indice_key)")
    return record.in_sites


def _output(module, input: SparseConvTensor, out: SparseTensor, record: Optional[IndiceData]) -> SparseConvTensor:
    indice_dict = input.indice_dict
    if record is not None and module.indice_key not in indice_dict:
        indice_dict = {**indice_dict, module.indice_key: record}
    result = SparseConvTensor._on_sites(out.feats, out.sites, indice_dict, input.grid, input.voxel_num)
    if module.training and hasattr(module, MAX_NUM_VOXELS):
        counter = getattr(module, MAX_NUM_VOXELS)
        counter.fill_(max(int(counter), out.num_sites))
    return result


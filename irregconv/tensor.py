"""SparseTensor: features on a set of integer sites, with the sites' rulebook cache.

A :class:`SparseTensor` is immutable: ``feats [N, C]`` on ``coords [N, 1 + D]`` (int32, batch index in
column 0) inside a grid ``(batch_size, *spatial_shape)``. The coordinates, their hash table and every
rulebook built on them live in a :class:`Sites` object that ``replace(feats=...)`` shares, so
consecutive layers reuse rulebooks automatically; new coordinates get a fresh :class:`Sites`.

``torch.save`` / ``torch.load`` (with the default ``weights_only=True``) and pickling (DataLoader workers)
keep the features, coordinates, spatial shape and batch size; the rulebook cache is not saved and is rebuilt
on first use. :func:`irregconv.data.collate` batches tensors of one scan each.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .hashing import HashTable, pack_keys
from .rulebook import RulebookCache

MERGE_MODES = ("sum", "mean", "max")


class Sites:
    """A coordinate set: ``coords [N, 1 + D]`` int32, its grid, lazily its keys and hash table, and the
    cache of rulebooks built on it (plus, for sites made by a strided conv, the rulebooks that lead back).

    Attributes:
        coords (Tensor): ``[N, 1 + D]`` int32, unique rows.
        spatial_shape (tuple): ``D`` extents.
        batch_size (int): ``B``.
        cache (RulebookCache): rulebooks whose inputs are these sites, keyed by geometry.
        parents (dict): geometry key -> (input Sites, Rulebook) for the strided convs that produced these
            sites; :class:`~irregconv.nn.SparseInverseConv3d` reads it.
    """

    def __init__(self, coords: Tensor, spatial_shape: Tuple[int, ...], batch_size: int,
                 keys: Optional[Tensor] = None):
        self.coords = coords
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        self.batch_size = int(batch_size)
        self.cache = RulebookCache()
        self.parents = {}
        self._keys = keys
        self._table = None

    @property
    def keys(self) -> Tensor:
        if self._keys is None:
            self._keys = pack_keys(self.coords, self.spatial_shape, self.batch_size, check=False)
        return self._keys

    @property
    def table(self) -> HashTable:
        if self._table is None:
            self._table = HashTable(self.keys)
        return self._table

    def __len__(self) -> int:
        return self.coords.size(0)


def _check_coords(coords, owner: str) -> Tensor:
    if not isinstance(coords, Tensor):
        raise TypeError(f"{owner}: coords must be an integer torch.Tensor [N, 1 + D], got {type(coords).__name__}")
    if coords.dtype.is_floating_point or coords.dtype.is_complex or coords.dtype == torch.bool:
        raise TypeError(f"{owner}: coords must be an integer tensor (int32 or int64), got {coords.dtype}; "
                        f"voxelize float points first (irregconv.data.voxelize)")
    if coords.dim() != 2 or coords.size(1) < 2:
        raise ValueError(f"{owner}: coords must have shape [N, 1 + D] with the batch index in column 0 and D >= 1, "
                         f"got {list(coords.shape)}")
    if coords.numel() and (int(coords.max()) > torch.iinfo(torch.int32).max):
        raise ValueError(f"{owner}: coords has value {int(coords.max())}, beyond int32; coordinates must be "
                         f"< 2**31")
    return coords.to(torch.int32)


def _as_count(value, name: str, owner: str) -> int:
    """``value`` as an int >= 1; a float such as 8.5, a string or a bool is refused instead of truncated."""
    try:
        integral = not isinstance(value, (str, bytes, bool)) and bool(value == int(value))
    except (TypeError, ValueError, OverflowError):
        integral = False
    if not integral:
        raise TypeError(f"{owner}: {name} must be an int, got {value!r} ({type(value).__name__})")
    if int(value) < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {int(value)}")
    return int(value)


def _as_spatial_shape(spatial_shape, dims: int, owner: str) -> Tuple[int, ...]:
    """``spatial_shape`` as ``dims`` positive ints (one extent per coordinate column after the batch)."""
    if isinstance(spatial_shape, (str, bytes)) or not hasattr(spatial_shape, "__iter__"):
        raise TypeError(f"{owner}: spatial_shape must be a sequence of {dims} ints (one extent per coordinate "
                        f"column after the batch), got {spatial_shape!r}")
    shape = tuple(_as_count(s, f"spatial_shape[{i}]", owner) for i, s in enumerate(spatial_shape))
    if len(shape) != dims:
        raise ValueError(f"{owner}: spatial_shape {shape} has {len(shape)} axes but coords has {dims} spatial "
                         f"columns; give one extent per coordinate column after the batch")
    return shape


class SparseTensor:
    """Features on sparse integer sites.

    Args:
        feats (Tensor): ``[N, C]`` floating point features.
        coords (Tensor): ``[N, 1 + D]`` int32 or int64 sites, batch index in column 0, all >= 0.
        spatial_shape (sequence of int, optional): ``D`` grid extents, in the axis order of ``coords``
            columns 1.. (for voxelized LiDAR ``(Z, Y, X)``); default ``coords.max(0) + 1``.
        batch_size (int, optional): ``B``; default ``max batch index + 1``.
        merge (str, optional): duplicate coordinates raise a ValueError unless ``merge`` is
            ``"sum"``, ``"mean"`` or ``"max"``, which merges their features (default: None).

    Shapes:
        - feats ``[N, C]``, coords ``[N, 1 + D]`` -> :meth:`dense` ``[B, C, *spatial_shape]``.

    Example:
        >>> import torch
        >>> t = SparseTensor(torch.ones(2, 3), torch.tensor([[0, 1, 2], [0, 3, 0]]), spatial_shape=(4, 4))
        >>> t.dense().shape
        torch.Size([1, 3, 4, 4])
    """

    __slots__ = ("feats", "sites")

    def __setattr__(self, name, value):
        raise AttributeError(f"SparseTensor is immutable: cannot set {name!r}; make a new tensor with "
                             f"x.replace(feats=...) (new features on the same sites) or SparseTensor(feats, coords, "
                             f"...) (new sites)")

    def __delattr__(self, name):
        raise AttributeError(f"SparseTensor is immutable: cannot delete {name!r}")

    def __reduce__(self):
        # Rebuilt through the checked constructor (a loaded file is validated like user input); the sites'
        # rulebook cache and hash table are not saved. SparseTensor is a torch.load safe global (see below).
        return SparseTensor, (self.feats, self.coords, self.spatial_shape, self.batch_size)

    def __init__(self, feats: Tensor, coords: Tensor, spatial_shape: Optional[Sequence[int]] = None,
                 batch_size: Optional[int] = None, merge: Optional[str] = None):
        owner = "SparseTensor"
        coords = _check_coords(coords, owner)
        if not isinstance(feats, Tensor):
            raise TypeError(f"{owner}: feats must be a torch.Tensor [N, C], got {type(feats).__name__}")
        if feats.dim() != 2:
            raise ValueError(f"{owner}: feats must have shape [N, C], got {list(feats.shape)}")
        if not (feats.dtype.is_floating_point or feats.dtype.is_complex):
            raise TypeError(f"{owner}: feats must be floating point, got {feats.dtype}; cast with .float()")
        if feats.size(0) != coords.size(0):
            raise ValueError(f"{owner}: feats has {feats.size(0)} rows but coords has {coords.size(0)}; "
                             f"they must describe the same sites")
        if feats.device != coords.device:
            raise ValueError(f"{owner}: feats is on {feats.device} but coords on {coords.device}; "
                             f"put both on one device")
        if merge is not None and merge not in MERGE_MODES:
            raise ValueError(f"{owner}: merge must be None or one of {MERGE_MODES}, got {merge!r}")
        dims = coords.size(1) - 1
        if coords.numel() and int(coords.min()) < 0:
            column = int((coords.min(dim=0).values < 0).nonzero()[0])
            raise ValueError(f"{owner}: coords column {column} has negative value {int(coords[:, column].min())}; "
                             f"coordinates must be >= 0 (shift them or crop the point range)")
        if spatial_shape is None:
            spatial_shape = (coords[:, 1:].max(dim=0).values + 1).tolist() if coords.numel() else [1] * dims
        spatial_shape = _as_spatial_shape(spatial_shape, dims, owner)
        if batch_size is None:
            batch_size = int(coords[:, 0].max()) + 1 if coords.numel() else 1
        batch_size = _as_count(batch_size, "batch_size", owner)
        keys = pack_keys(coords, spatial_shape, batch_size, owner=owner)  # bounds-checked, names the axis
        unique_keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        if unique_keys.numel() != keys.numel():
            if merge is None:
                counts = torch.bincount(inverse, minlength=unique_keys.numel())
                dup = int((counts > 1).nonzero()[0])
                rows = (inverse == dup).nonzero().flatten()[:2].tolist()
                raise ValueError(f"{owner}: coords has duplicate site {coords[rows[0]].tolist()} at rows {rows}; "
                                 f"sites must be unique, or pass merge='sum'|'mean'|'max' to merge them")
            merged = torch.zeros(unique_keys.numel(), feats.size(1), dtype=feats.dtype, device=feats.device)
            if merge == "sum":  # index_reduce knows prod, mean, amax and amin, not sum
                feats = merged.index_add_(0, inverse, feats)
            else:
                feats = merged.index_reduce_(0, inverse, feats, "amax" if merge == "max" else merge, include_self=False)
            coords = coords[torch.zeros_like(unique_keys).scatter_(
                0, inverse, torch.arange(inverse.numel(), device=inverse.device))]
            keys = unique_keys
        object.__setattr__(self, "feats", feats)
        object.__setattr__(self, "sites", Sites(coords, spatial_shape, batch_size, keys=keys))

    @classmethod
    def from_sites(cls, feats: Tensor, sites: Sites) -> "SparseTensor":
        """Wrap ``feats`` on existing (already checked) sites without copying or validating coordinates."""
        if feats.dim() != 2 or feats.size(0) != len(sites):
            raise ValueError(f"SparseTensor.from_sites: feats must be [N, C] with N = {len(sites)}, "
                             f"got {list(feats.shape)}")
        obj = cls.__new__(cls)
        object.__setattr__(obj, "feats", feats)
        object.__setattr__(obj, "sites", sites)
        return obj

    @classmethod
    def from_dense(cls, dense: Tensor, mask: Optional[Tensor] = None) -> "SparseTensor":
        """Active sites of ``dense [B, C, *S]``: ``mask [B, *S]`` or, by default, sites with any nonzero channel."""
        if dense.dim() < 3:
            raise ValueError(f"SparseTensor.from_dense: dense must be [B, C, *spatial] with >= 1 spatial axis, "
                             f"got {list(dense.shape)}")
        channels_last = dense.movedim(1, -1)
        if mask is None:
            mask = (channels_last != 0).any(dim=-1)
        if mask.shape != channels_last.shape[:-1]:
            raise ValueError(f"SparseTensor.from_dense: mask must have shape {list(channels_last.shape[:-1])}, "
                             f"got {list(mask.shape)}")
        coords = mask.nonzero().to(torch.int32)
        feats = channels_last[mask]
        return cls(feats, coords, spatial_shape=dense.shape[2:], batch_size=dense.size(0))

    @property
    def coords(self) -> Tensor:
        return self.sites.coords

    @property
    def spatial_shape(self) -> Tuple[int, ...]:
        return self.sites.spatial_shape

    @property
    def batch_size(self) -> int:
        return self.sites.batch_size

    @property
    def num_sites(self) -> int:
        return self.feats.size(0)

    @property
    def num_channels(self) -> int:
        return self.feats.size(1)

    @property
    def dims(self) -> int:
        return len(self.sites.spatial_shape)

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    def replace(self, feats: Tensor) -> "SparseTensor":
        """A new tensor with ``feats [N, C']`` on the same sites (sharing coordinates and rulebooks)."""
        if not isinstance(feats, Tensor) or feats.dim() != 2 or feats.size(0) != self.num_sites:
            shape = list(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
            raise ValueError(f"SparseTensor.replace: feats must be [N, C] with N = {self.num_sites} rows, got {shape}")
        if feats.device != self.device:
            raise ValueError(f"SparseTensor.replace: feats is on {feats.device}, the sites on {self.device}")
        return SparseTensor.from_sites(feats, self.sites)

    @classmethod
    def cat(cls, tensors: Sequence["SparseTensor"]) -> "SparseTensor":
        """Features of tensors on the same sites, side by side (``torch.cat`` along channels); differentiable.

        The tensors must be on the same sites: made from one another by :meth:`replace` or by layers that keep
        the sites (submanifold convs, BatchNorm, activations), or built on equal coordinates in the same row
        order with the same spatial shape and batch size. The result shares the first tensor's sites (and
        its rulebooks). To batch tensors of different scans, use :func:`irregconv.data.collate`.

        Shapes:
            - ``[N, C_1], ..., [N, C_T]`` on one set of sites -> ``[N, C_1 + ... + C_T]`` on those sites.
        """
        owner = "SparseTensor.cat"
        if isinstance(tensors, SparseTensor) or not isinstance(tensors, (list, tuple)) or not tensors:
            raise TypeError(f"{owner}: tensors must be a non-empty list or tuple of SparseTensor, got "
                            f"{type(tensors).__name__}{'' if tensors else ' (empty)'}")
        first = tensors[0]
        for i, t in enumerate(tensors):
            if not isinstance(t, SparseTensor):
                raise TypeError(f"{owner}: tensors[{i}] must be a SparseTensor, got {type(t).__name__}")
            if t.dtype != first.dtype or t.device != first.device:
                raise ValueError(f"{owner}: tensors[{i}] has {t.dtype} on {t.device} but tensors[0] {first.dtype} on "
                                 f"{first.device}; convert them with .to(...) first")
            if t.sites is first.sites:
                continue
            same_grid = t.spatial_shape == first.spatial_shape and t.batch_size == first.batch_size
            if same_grid and torch.equal(t.coords, first.coords):
                continue
            if same_grid and t.num_sites == first.num_sites and torch.equal(t.sites.keys.sort().values,
                                                                            first.sites.keys.sort().values):
                raise ValueError(f"{owner}: tensors[{i}] has the sites of tensors[0] in another row order; rows must "
                                 f"match, so build both on the same coords tensor (or use replace())")
            raise ValueError(f"{owner}: tensors[{i}] ({t.num_sites} sites, spatial_shape {t.spatial_shape}, batch_size "
                             f"{t.batch_size}) is not on the sites of tensors[0] ({first.num_sites} sites, spatial_shape "
                             f"{first.spatial_shape}, batch_size {first.batch_size}); cat joins channels of tensors on "
                             f"the same sites (to batch scans use irregconv.data.collate)")
        return SparseTensor.from_sites(torch.cat([t.feats for t in tensors], dim=1), first.sites)

    def dense(self, channels_first: bool = True) -> Tensor:
        """``[B, C, *spatial_shape]`` (or channels last), zeros at inactive sites; differentiable."""
        out = self.feats.new_zeros((self.batch_size, *self.spatial_shape, self.num_channels))
        out[tuple(self.coords.long().t())] = self.feats
        return out.movedim(-1, 1) if channels_first else out

    def to(self, *args, **kwargs) -> "SparseTensor":
        """As ``Tensor.to``: a dtype changes the features; a device moves features, sites and rulebooks."""
        feats = self.feats.to(*args, **kwargs)
        if feats.device == self.device:
            return self if feats is self.feats else SparseTensor.from_sites(feats, self.sites)
        sites = Sites(self.coords.to(feats.device), self.spatial_shape, self.batch_size)
        return SparseTensor.from_sites(feats, sites)

    def cpu(self) -> "SparseTensor":
        return self.to("cpu")

    def cuda(self, device=None) -> "SparseTensor":
        return self.to("cuda" if device is None else device)

    def __repr__(self) -> str:
        return (f"SparseTensor(num_sites={self.num_sites}, channels={self.num_channels}, "
                f"spatial_shape={self.spatial_shape}, batch_size={self.batch_size}, dtype={self.dtype}, "
                f"device={self.device})")


# torch.load's default weights_only=True unpickler rebuilds only allow-listed globals: SparseTensor's
# __reduce__ names the class itself, whose constructor checks the loaded coordinates like user input.
if hasattr(torch.serialization, "add_safe_globals"):  # torch >= 2.4; older torch has no allow-list to extend
    torch.serialization.add_safe_globals([SparseTensor])

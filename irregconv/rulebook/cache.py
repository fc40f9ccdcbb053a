"""Rulebook caches: :class:`RulebookCache`, owned by one coordinate set, and :class:`IdentityCache`, a one-entry
cache keyed on the identity of tensors (graphs, sparsity patterns).

RulebookCache:

Keys are structural: the geometry of the operation (kind, kernel region, stride, padding, dilation,
...). Identity of the coordinate set is the owner itself: a tensor made with ``replace(feats=...)``
shares its sites and therefore this cache; new coordinates get a new, empty cache. Nothing is global,
nothing needs clearing: the cache dies with its sites.
"""
from __future__ import annotations

from typing import Callable, Dict, Hashable, Optional, Sequence, TypeVar

from torch import Tensor

T = TypeVar("T")


class RulebookCache:
    """Structural-key cache; ``builds`` counts how many entries were computed (for reuse tests)."""

    def __init__(self):
        self._entries: Dict[Hashable, object] = {}
        self.builds = 0

    def get_or_build(self, key: Hashable, build: Callable[[], T]) -> T:
        if key not in self._entries:
            self._entries[key] = build()
            self.builds += 1
        return self._entries[key]

    def get(self, key: Hashable, default=None):
        return self._entries.get(key, default)

    def put(self, key: Hashable, value) -> None:
        self._entries[key] = value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class IdentityCache:
    """One-entry cache keyed on the identity of some tensors plus a hashable ``extra`` key.

    A tensor's identity is its storage address, dtype, device, shape, strides and version counter: the
    same unmodified tensor hits, a new or in-place-modified one misses (structural reuse without user
    keys, as the rulebook cache of a voxel tensor). The entry keeps the key tensors alive, so their memory
    cannot be reused by another tensor while it exists. Writes that bypass autograd's version counter
    (through ``tensor.numpy()``) are not detected.

    Attributes:
        builds (int): how many entries were computed (for reuse tests).
    """

    def __init__(self):
        self._key = None
        self._tensors = None
        self._value = None
        self.builds = 0

    def get_or_build(self, tensors: Sequence[Optional[Tensor]], extra: Hashable, build: Callable[[], T]) -> T:
        key = (extra, *[None if t is None else (t.data_ptr(), t.dtype, t.device, t.shape, t.stride(), t._version)
                        for t in tensors])
        if key != self._key:
            self._value = build()
            self._key, self._tensors = key, tuple(tensors)
            self.builds += 1
        return self._value

    def clear(self) -> None:
        self._key = self._tensors = self._value = None

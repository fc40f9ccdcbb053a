"""Rulebook cache owned by one coordinate set.

Keys are structural: the geometry of the operation (kind, kernel region, stride, padding, dilation,
...). Identity of the coordinate set is the owner itself: a tensor made with ``replace(feats=...)``
shares its sites and therefore this cache; new coordinates get a new, empty cache. Nothing is global,
nothing needs clearing: the cache dies with its sites.
"""
from __future__ import annotations

from typing import Callable, Dict, Hashable, TypeVar

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

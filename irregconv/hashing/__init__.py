"""Coordinate hashing: int64 keys for ``(batch, x, y, z)`` and a hash table with batched lookup."""
from .keys import key_radices, pack_keys, unpack_keys
from .table import HashTable, available_backends

__all__ = ["HashTable", "available_backends", "key_radices", "pack_keys", "unpack_keys"]

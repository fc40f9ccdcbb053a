"""``spconv.pytorch.hash``: :class:`HashTable`, spconv's key -> value table, on :class:`irregconv.hashing.HashTable`.

The keys are kept in first-insertion order next to their values; an irregconv hash table over them (rebuilt
after an insert that adds keys) answers the lookups.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ....hashing import HashTable as _KeyTable

__all__ = ["HashTable"]

KEY_DTYPES = (torch.int32, torch.int64)
VALUE_DTYPES = (torch.int32, torch.int64, torch.float32, torch.float64)


class HashTable:
    """spconv's hash table with the semantics of its CPU build: ``insert`` adds keys that are not present yet
    (the first value given for a key stays; an insert without values gives 0), ``query`` returns values and a
    "missing" mask, ``insert_exist_keys`` updates present keys only, ``assign_arange_`` numbers the keys and
    ``items`` lists them.

    Differences from spconv: ``items`` and ``assign_arange_`` follow first-insertion order (spconv follows
    its hash map's iteration order, which is not specified); a missing key's value is 0 (spconv leaves memory
    uninitialised); keys must be non-negative (irregconv's table holds site keys); ``max_size`` is accepted
    and not needed, on every device. spconv 2.3.8's CPU build raises after every ``insert`` and ``query``
    (its CUDA branch is compiled in unconditionally), so code that ran only on spconv's GPU build runs here.

    Args:
        device (torch.device or str): where keys and values live.
        key_dtype (torch.dtype): ``torch.int32`` or ``torch.int64``.
        value_dtype (torch.dtype): ``torch.int32``, ``torch.int64``, ``torch.float32`` or ``torch.float64``.
        max_size (int): spconv's capacity of its CUDA table; accepted and ignored (default: -1).

    Shapes:
        - ``insert(keys [N], values [N])``; ``query(keys [M]) -> (values [M], is_empty [M] bool)``.
    """

    def __init__(self, device, key_dtype: torch.dtype, value_dtype: torch.dtype, max_size: int = -1):
        try:
            self.device = torch.device(device)
        except (TypeError, RuntimeError):
            raise TypeError(f"HashTable: device must be a torch.device or a device string such as 'cpu', got "
                            f"{device!r}") from None
        if key_dtype not in KEY_DTYPES:
            raise ValueError(f"HashTable: key_dtype must be torch.int32 or torch.int64, got {key_dtype!r}")
        if value_dtype not in VALUE_DTYPES:
            raise ValueError(f"HashTable: value_dtype must be one of {[str(d) for d in VALUE_DTYPES]}, got "
                             f"{value_dtype!r}")
        self.is_cpu = self.device.type == "cpu"
        self.key_dtype, self.value_dtype, self.max_size = key_dtype, value_dtype, max_size
        self._keys = torch.empty(0, dtype=torch.int64, device=self.device)
        self._values = torch.empty(0, dtype=value_dtype, device=self.device)
        self._table = _KeyTable(self._keys)

    def _check_keys(self, keys, method: str) -> Tensor:
        if not isinstance(keys, Tensor) or keys.dim() != 1 or keys.dtype != self.key_dtype:
            got = f"{keys.dtype} {list(keys.shape)}" if isinstance(keys, Tensor) else type(keys).__name__
            raise TypeError(f"HashTable.{method}: keys must be a 1-d {self.key_dtype} tensor (the table's key_dtype), "
                            f"got {got}")
        keys = keys.to(self.device, torch.int64)
        if keys.numel() and int(keys.min()) < 0:
            raise ValueError(f"HashTable.{method}: keys has the negative key {int(keys.min())}; this table holds keys "
                             f">= 0 (linear site indices, as spconv's sparse_add inserts)")
        return keys

    def _check_values(self, values, count: int, method: str) -> Tensor:
        if not isinstance(values, Tensor) or values.dim() != 1 or values.dtype != self.value_dtype \
                or values.numel() != count:
            got = f"{values.dtype} {list(values.shape)}" if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"HashTable.{method}: values must be a 1-d {self.value_dtype} tensor (the table's "
                             f"value_dtype) with one entry per key ([{count}]), got {got}")
        return values.to(self.device)

    def insert(self, keys: Tensor, values: Optional[Tensor] = None) -> None:
        """Add the keys that are not in the table yet, with ``values`` (0 when None); a key that is present,
        or repeated within ``keys``, keeps its first value."""
        keys = self._check_keys(keys, "insert")
        values = torch.zeros(keys.numel(), dtype=self.value_dtype, device=self.device) if values is None \
            else self._check_values(values, keys.numel(), "insert")
        new = self._table.lookup(keys) < 0
        keys, values = keys[new], values[new]
        if keys.numel() == 0:
            return
        unique, inverse = torch.unique(keys, return_inverse=True)
        first = torch.full((unique.numel(),), keys.numel(), dtype=torch.long, device=self.device)
        first = first.scatter_reduce(0, inverse, torch.arange(keys.numel(), device=self.device), "amin")
        first = first.sort().values  # first occurrences, in input order
        self._keys = torch.cat([self._keys, keys[first]])
        self._values = torch.cat([self._values, values[first]])
        self._table = _KeyTable(self._keys)

    def query(self, keys: Tensor, values: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The values of ``keys`` and ``is_empty`` (True where a key is missing).

        With ``values`` given, found values are written into it and missing entries are left as they are
        (as spconv); otherwise a new tensor holds 0 for missing keys."""
        keys = self._check_keys(keys, "query")
        if values is None:
            values = torch.zeros(keys.numel(), dtype=self.value_dtype, device=self.device)
        else:
            self._check_values(values, keys.numel(), "query")
        rows = self._table.lookup(keys)
        found = rows >= 0
        values[found] = self._values[rows[found]].to(values.device)
        return values, ~found

    def insert_exist_keys(self, keys: Tensor, values: Tensor) -> Tensor:
        """Set the values of the ``keys`` that are present; returns ``is_empty`` ``[N]`` uint8, 1 where a key is
        missing (and nothing was written)."""
        keys = self._check_keys(keys, "insert_exist_keys")
        values = self._check_values(values, keys.numel(), "insert_exist_keys")
        rows = self._table.lookup(keys)
        found = rows >= 0
        self._values[rows[found]] = values[found]
        return (~found).to(torch.uint8)

    def assign_arange_(self) -> Tensor:
        """Number the keys 0, 1, ... in :meth:`items` order (values must be integers); returns the count as a
        ``[1]`` int64 tensor."""
        if self.value_dtype not in (torch.int32, torch.int64):
            raise TypeError(f"HashTable.assign_arange_: needs an integer value_dtype (torch.int32 or torch.int64), "
                            f"this table has {self.value_dtype}")
        self._values = torch.arange(self._keys.numel(), dtype=self.value_dtype, device=self.device)
        return torch.tensor([self._keys.numel()], dtype=torch.int64)

    def items(self, max_size: int = -1) -> Tuple[Tensor, Tensor, Tensor]:
        """``(keys [N], values [N], count [1])`` of every entry, in first-insertion order (``max_size``: spconv's
        CUDA buffer size, ignored)."""
        return (self._keys.to(self.key_dtype), self._values.clone(),
                torch.tensor([self._keys.numel()], dtype=torch.int64))

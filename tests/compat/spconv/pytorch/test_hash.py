"""spconv.pytorch.hash: HashTable against a dict with the semantics of spconv's CPU table (read from its source,
csrc/hash/core.py: ``insert`` keeps a present key's value, ``query`` reports missing keys, ``insert_exist_keys``
updates present keys only, ``assign_arange_`` numbers the keys); spconv 2.3.8's CPU build itself raises after
every insert and query (checked), so it cannot serve as the reference here."""
import pytest
import torch

from irregconv.compat import spconv
from irregconv.testing import with_package

needs_spconv = with_package("spconv")
HashTable = spconv.hash.HashTable


class DictTable:
    """The oracle: a Python dict in first-insertion order."""

    def __init__(self):
        self.items = {}

    def insert(self, keys, values):
        for k, v in zip(keys, values):
            self.items.setdefault(k, v)

    def insert_exist_keys(self, keys, values):
        for k, v in zip(keys, values):
            if k in self.items:
                self.items[k] = v


@pytest.mark.parametrize("value_dtype", [torch.int32, torch.int64, torch.float32, torch.float64])
@pytest.mark.parametrize("key_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("seed", [0, 1])
def test_insert_query_update_match_a_dict(seed, key_dtype, value_dtype):
    gen = torch.Generator().manual_seed(seed)
    table, oracle = HashTable("cpu", key_dtype, value_dtype), DictTable()
    for step in range(4):  # repeated keys within a call and across calls
        keys = torch.randint(0, 60, (25,), generator=gen, dtype=torch.int64).to(key_dtype)
        values = (torch.randn(25, generator=gen) * 100).to(value_dtype)
        if step == 2:
            table.insert(keys)
            oracle.insert(keys.tolist(), [0] * 25)
        else:
            table.insert(keys, values)
            oracle.insert(keys.tolist(), values.tolist())
        update = torch.randint(0, 80, (10,), generator=gen).to(key_dtype)
        new_values = (torch.randn(10, generator=gen) * 100).to(value_dtype)
        missing = table.insert_exist_keys(update, new_values)
        assert missing.dtype == torch.uint8 and missing.tolist() == [int(k not in oracle.items) for k in update.tolist()]
        oracle.insert_exist_keys(update.tolist(), new_values.tolist())
        query = torch.arange(80, dtype=key_dtype)
        values, is_empty = table.query(query)
        assert values.dtype == value_dtype and is_empty.dtype == torch.bool
        assert is_empty.tolist() == [k not in oracle.items for k in range(80)]
        assert values.tolist() == [oracle.items.get(k, 0) for k in range(80)]
    keys, values, count = table.items()
    assert keys.dtype == key_dtype and count.tolist() == [len(oracle.items)]
    assert list(zip(keys.tolist(), values.tolist())) == list(oracle.items.items())
    if value_dtype in (torch.int32, torch.int64):
        assert table.assign_arange_().tolist() == [len(oracle.items)]
        keys, values, _ = table.items()
        assert values.tolist() == list(range(len(oracle.items))) and keys.tolist() == list(oracle.items)


def test_query_into_given_values_leaves_missing_entries():
    table = HashTable(torch.device("cpu"), torch.int64, torch.int64)
    table.insert(torch.tensor([5, 3, 7, 5]), torch.tensor([1, 2, 3, 4]))
    out = torch.full((4,), -9)
    values, is_empty = table.query(torch.tensor([5, 3, 7, 9]), out)
    assert values is out and out.tolist() == [1, 2, 3, -9] and is_empty.tolist() == [False, False, False, True]


def test_sparse_add_hash_based_numbering_as_spconv_uses_the_table():
    """spconv's sparse_add_hash_based: insert every tensor's linear indices, number them, query each tensor."""
    table = HashTable("cpu", torch.int32, torch.int32, max_size=100)
    first, second = torch.tensor([4, 9, 2], dtype=torch.int32), torch.tensor([9, 11], dtype=torch.int32)
    table.insert(first)
    table.insert(second)
    assert table.assign_arange_().item() == 4
    assert table.query(first)[0].tolist() == [0, 1, 2] and table.query(second)[0].tolist() == [1, 3]


@needs_spconv
def test_spconvs_cpu_table_raises_after_every_insert():
    from spconv.pytorch.hash import HashTable as Theirs
    table = Theirs(torch.device("cpu"), torch.int64, torch.int64)
    with pytest.raises(RuntimeError, match="spconv not compiled with cuda"):
        table.insert(torch.tensor([5, 3]), torch.tensor([1, 2]))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="HashTable: key_dtype must be torch.int32 or torch.int64, got torch.float32"):
        HashTable("cpu", torch.float32, torch.int32)
    with pytest.raises(ValueError, match="HashTable: value_dtype must be one of"):
        HashTable("cpu", torch.int32, torch.uint8)
    with pytest.raises(TypeError, match="HashTable: device must be a torch.device or a device string"):
        HashTable(3.5, torch.int32, torch.int32)
    table = HashTable("cpu", torch.int32, torch.float32)
    with pytest.raises(TypeError, match=r"HashTable.insert: keys must be a 1-d torch.int32 tensor \(the table's "
                                        r"key_dtype\), got torch.int64 \[2\]"):
        table.insert(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"HashTable.insert: values must be a 1-d torch.float32 tensor .* \(\[2\]\), "
                                         r"got torch.float32 \[3\]"):
        table.insert(torch.tensor([1, 2], dtype=torch.int32), torch.zeros(3))
    with pytest.raises(ValueError, match="HashTable.query: keys has the negative key -4"):
        table.query(torch.tensor([1, -4], dtype=torch.int32))
    with pytest.raises(TypeError, match="HashTable.assign_arange_: needs an integer value_dtype"):
        table.assign_arange_()

"""Open-addressing hash table kernels (numba, CPU). Imported lazily by :mod:`irregconv.hashing.table`.

Layout: ``slots_key [capacity]`` int64 (-1 = empty) and ``slots_val [capacity]`` int64, capacity a power
of two at least twice the number of keys, linear probing. Builds are serial (insertion order decides
slot placement, so the table is the same bits every run); lookups are parallel and read-only.
"""
import numba
import numpy as np

_MULT = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, inline="always")
def _slot(key, mask):
    return np.int64((np.uint64(key) * _MULT) >> np.uint64(17)) & mask


@numba.njit(cache=True)
def build(keys, capacity):
    slots_key = np.full(capacity, -1, dtype=np.int64)
    slots_val = np.full(capacity, -1, dtype=np.int64)
    mask = capacity - 1
    duplicate = -1
    for i in range(keys.shape[0]):
        k = keys[i]
        s = _slot(k, mask)
        while slots_key[s] != -1 and slots_key[s] != k:
            s = (s + 1) & mask
        if slots_key[s] == k:
            duplicate = i
            break
        slots_key[s] = k
        slots_val[s] = i
    return slots_key, slots_val, duplicate


@numba.njit(cache=True, inline="always")
def _find(slots_key, slots_val, k, mask):
    s = _slot(k, mask)
    while True:
        cur = slots_key[s]
        if cur == k:
            return slots_val[s]
        if cur == -1:
            return -1
        s = (s + 1) & mask


@numba.njit(parallel=True, cache=True)
def lookup(slots_key, slots_val, query):
    mask = slots_key.shape[0] - 1
    out = np.empty(query.shape[0], dtype=np.int64)
    for i in numba.prange(query.shape[0]):
        k = query[i]
        out[i] = -1 if k < 0 else _find(slots_key, slots_val, k, mask)
    return out


@numba.njit(parallel=True, cache=True)
def lookup_neighbors(slots_key, slots_val, coords, displacements, radices):
    """``out[k, i]`` = row of site ``coords[i] + displacements[k]`` (batch unchanged), or -1."""
    mask = slots_key.shape[0] - 1
    n = coords.shape[0]
    num_disp = displacements.shape[0]
    dims = displacements.shape[1]
    out = np.empty((num_disp, n), dtype=np.int64)
    for i in numba.prange(n):
        for k in range(num_disp):
            key = np.int64(coords[i, 0])
            inside = True
            for a in range(dims):
                c = np.int64(coords[i, a + 1]) + displacements[k, a]
                if c < 0 or c >= radices[a + 1]:
                    inside = False
                    break
                key = key * radices[a + 1] + c
            out[k, i] = _find(slots_key, slots_val, key, mask) if inside else -1
    return out


@numba.njit(parallel=True, cache=True)
def unpack(keys, spatial_shape):
    """``coords [N, 1 + D]`` int32 of ``keys [N]`` packed over ``(batch, *spatial_shape)``."""
    dims = spatial_shape.shape[0]
    coords = np.empty((keys.shape[0], dims + 1), dtype=np.int32)
    for i in numba.prange(keys.shape[0]):
        rest = keys[i]
        for a in range(dims - 1, -1, -1):
            coords[i, a + 1] = rest % spatial_shape[a]
            rest //= spatial_shape[a]
        coords[i, 0] = rest
    return coords

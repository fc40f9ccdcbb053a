// The open-addressing hash table of irregconv/hashing (C interface: kernels.h), ported from the numba kernels of
// irregconv/hashing/_numba_kernels.py with the same tables and results bit for bit.
//
// Layout: slots_key [capacity] int64 (-1 = empty) and slots_val [capacity] int64, capacity a power of two above
// the number of keys, linear probing. Builds are serial (insertion order decides slot placement, so a table is
// the same bits every run); lookups are parallel and read only, each probe bounded by the capacity (a full table
// handed in cannot make one loop forever).
#include <cstdint>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace {

using irc::parallel_ranges;

inline int64_t slot(int64_t key, int64_t mask) {
    return static_cast<int64_t>((static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

inline int64_t find(const int64_t* slots_key, const int64_t* slots_val, int64_t key, int64_t mask) {
    int64_t s = slot(key, mask);
    for (int64_t probe = 0; probe <= mask; ++probe) {
        const int64_t current = slots_key[s];
        if (current == key) return slots_val[s];
        if (current == -1) return -1;
        s = (s + 1) & mask;
    }
    return -1;
}

bool power_of_two(int64_t capacity) { return capacity > 0 && (capacity & (capacity - 1)) == 0; }

// floor division and modulo (Python's and numba's), so negative keys unpack as there
inline int64_t floor_div(int64_t a, int64_t b) {
    const int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace

// slots_key and slots_val [capacity] of keys [n] (row i -> value i). Returns -1, or the first row whose key
// repeats an earlier one (building stops there), or -2 if capacity is not a power of two above n, or -3 - i if
// key i is negative.
int64_t irc_hash_build(const int64_t* keys, int64_t n, int64_t capacity, int64_t* slots_key, int64_t* slots_val) {
    if (!power_of_two(capacity) || capacity <= n) return -2;
    for (int64_t i = 0; i < n; ++i)
        if (keys[i] < 0) return -3 - i;
    for (int64_t s = 0; s < capacity; ++s) {
        slots_key[s] = -1;
        slots_val[s] = -1;
    }
    const int64_t mask = capacity - 1;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t k = keys[i];
        int64_t s = slot(k, mask);
        while (slots_key[s] != -1 && slots_key[s] != k) s = (s + 1) & mask;
        if (slots_key[s] == k) return i;
        slots_key[s] = k;
        slots_val[s] = i;
    }
    return -1;
}

// out [n]: the value of each query key in the table, -1 where missing or negative. Returns 0, or 1 if capacity is
// not a power of two.
int64_t irc_hash_lookup(const int64_t* slots_key, const int64_t* slots_val, int64_t capacity, const int64_t* query,
                        int64_t n, int64_t* out, int64_t threads) {
    if (!power_of_two(capacity)) return 1;
    parallel_ranges(n, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
            out[i] = query[i] < 0 ? -1 : find(slots_key, slots_val, query[i], capacity - 1);
    });
    return 0;
}

// out [num_disp, n]: the value of site coords[i] + displacements[k] (batch unchanged; coords [n, 1 + dims], int32
// when coords32), packed over the key space radices [1 + dims], or -1 when absent or outside the grid. Returns 0,
// or 1 if capacity is not a power of two.
int64_t irc_hash_lookup_neighbors(const int64_t* slots_key, const int64_t* slots_val, int64_t capacity,
                                  const void* coords, int64_t coords32, int64_t n, int64_t dims,
                                  const int64_t* displacements, int64_t num_disp, const int64_t* radices, int64_t* out,
                                  int64_t threads) {
    if (!power_of_two(capacity)) return 1;
    auto coord = [&](int64_t i, int64_t column) -> int64_t {
        return coords32 ? static_cast<const int32_t*>(coords)[i * (dims + 1) + column]
                        : static_cast<const int64_t*>(coords)[i * (dims + 1) + column];
    };
    parallel_ranges(n, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
            for (int64_t k = 0; k < num_disp; ++k) {
                int64_t key = coord(i, 0);
                bool inside = true;
                for (int64_t a = 0; a < dims; ++a) {
                    const int64_t c = coord(i, a + 1) + displacements[k * dims + a];
                    if (c < 0 || c >= radices[a + 1]) {
                        inside = false;
                        break;
                    }
                    key = key * radices[a + 1] + c;
                }
                out[k * n + i] = inside ? find(slots_key, slots_val, key, capacity - 1) : -1;
            }
        }
    });
    return 0;
}

// coords [n, 1 + dims] int32 of keys [n] packed over (batch, *spatial_shape [dims]). Returns 0, or 1 if an extent
// is not positive.
int64_t irc_unpack_keys(const int64_t* keys, int64_t n, const int64_t* spatial_shape, int64_t dims, int32_t* coords,
                        int64_t threads) {
    for (int64_t a = 0; a < dims; ++a)
        if (spatial_shape[a] < 1) return 1;
    parallel_ranges(n, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
            int64_t rest = keys[i];
            for (int64_t a = dims - 1; a >= 0; --a) {
                const int64_t quotient = floor_div(rest, spatial_shape[a]);
                coords[i * (dims + 1) + a + 1] = static_cast<int32_t>(rest - quotient * spatial_shape[a]);
                rest = quotient;
            }
            coords[i * (dims + 1)] = static_cast<int32_t>(rest);
        }
    });
    return 0;
}

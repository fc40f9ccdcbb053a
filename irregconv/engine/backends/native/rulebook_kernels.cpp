// Rulebook building on the CPU (C interface: kernels.h), ported from the numba kernels of
// irregconv/rulebook/_numba_kernels.py with the same results bit for bit:
//   * irc_count_neighbors / irc_compact_neighbors: a [K, N_out] neighbour map -> pairs grouped by offset;
//   * irc_merge_neighbors: a submanifold neighbour map by a merge join over the sites' sorted keys;
//   * irc_candidate_counts / irc_candidate_fill: every (tap, input) of a strided or transposed convolution;
//   * irc_argsort_keys, irc_rank_sorted, irc_candidate_outputs, irc_fill_new_neighbors: the output sites of the
//     candidates and the pairs that reach them;
//   * irc_sort_pairs: the permutation sorting pairs by (offset, out, in).
//
// Every parallel part writes memory no other part writes, and every reduction runs in a fixed order, so the bits
// never depend on the thread count. Every index read from data is checked against the buffer it indexes; a kernel
// returns a nonzero status instead of reading or writing outside (its outputs are then unspecified).
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace {

using irc::parallel_parts;
using irc::parallel_ranges;
using irc::parts_for;

bool all_set(const std::vector<char>& flags) {
    for (char f : flags)
        if (!f) return false;
    return true;
}

template <typename T>
int64_t count_neighbors(const T* neighbors, int64_t num_k, int64_t num_out, int64_t num_in, int64_t* counts,
                        int64_t threads) {
    std::vector<char> valid(num_k, 1);
    parallel_ranges(num_k, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t k = lo; k < hi; ++k) {
            const T* row = neighbors + k * num_out;
            int64_t count = 0;
            bool inside = true;
            for (int64_t o = 0; o < num_out; ++o) {
                count += row[o] >= 0;
                inside &= row[o] < num_in;
            }
            counts[k] = count;
            valid[k] = inside;
        }
    });
    return all_set(valid) ? 0 : 1;
}

// Branch-free, as the numba kernel: every entry is written at the offset's cursor, which advances past valid ones.
template <typename T>
void compact_neighbors(const T* neighbors, int64_t num_k, int64_t num_out, const int64_t* ptr, int64_t* in_idx,
                       int64_t* out_idx, int64_t threads) {
    parallel_ranges(num_k, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t k = lo; k < hi; ++k) {
            const T* row = neighbors + k * num_out;
            int64_t p = ptr[k];
            const int64_t end = ptr[k + 1];
            for (int64_t o = 0; o < num_out && p < end; ++o) {
                const int64_t i = row[o];
                in_idx[p] = i;
                out_idx[p] = o;
                p += i >= 0;
            }
        }
    });
}

template <typename T, typename C>
void merge_rows(const int64_t* sorted_keys, const int64_t* order, const C* coords, int64_t n, int64_t dims,
                const int64_t* displacements, const int64_t* radices, int64_t k, int64_t m, T* neighbors) {
    T* row = neighbors + k * n;
    T* mirror = neighbors + m * n;
    int64_t delta = 0;
    for (int64_t a = 0; a < dims; ++a) delta = delta * radices[a + 1] + displacements[k * dims + a];
    for (int64_t i = 0; i < n; ++i) {
        row[i] = -1;
        mirror[i] = -1;
    }
    int64_t r = 0, j = 0;
    while (r < n && j < n) {
        const int64_t i = order[r];
        bool inside = true;
        for (int64_t a = 0; a < dims; ++a) {
            const int64_t c = static_cast<int64_t>(coords[i * (dims + 1) + a + 1]) + displacements[k * dims + a];
            inside &= (c >= 0) & (c < radices[a + 1]);
        }
        const int64_t query = sorted_keys[r] + delta;
        const int64_t key = sorted_keys[j];
        const bool match = inside & (query == key);
        const int64_t other = order[j];
        row[i] = match ? static_cast<T>(other) : row[i];
        mirror[other] = match ? static_cast<T>(i) : mirror[other];
        r += query <= key;
        j += key <= query;
    }
}

template <typename T, typename C>
int64_t merge_neighbors(const int64_t* sorted_keys, const int64_t* order, const C* coords, int64_t n, int64_t dims,
                        const int64_t* displacements, int64_t num_k, const int64_t* radices, const int64_t* half,
                        const int64_t* mirrored, int64_t num_half, T* neighbors, int64_t threads) {
    // every row written by one part only, every order entry a row of coords
    std::vector<char> taken(num_k, 0);
    for (int64_t h = 0; h < num_half; ++h) {
        for (int64_t row : {half[h], mirrored[h]}) {
            if (row < 0 || row >= num_k || taken[row]) return 1;
            taken[row] = 1;
        }
    }
    for (int64_t r = 0; r < n; ++r)
        if (order[r] < 0 || order[r] >= n) return 1;
    parallel_ranges(num_half, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t h = lo; h < hi; ++h)
            merge_rows(sorted_keys, order, coords, n, dims, displacements, radices, half[h], mirrored[h], neighbors);
    });
    return 0;
}

// The geometry of a strided (or transposed) convolution's candidates.
struct Candidates {
    const void* coords; bool coords32; int64_t n; int64_t dims; const int64_t* tap_of; int64_t num_combinations;
    const int64_t* axis_taps; int64_t width; const int64_t* axis_counts; const int64_t* stride;
    const int64_t* padding; const int64_t* dilation; const int64_t* out_shape; bool transposed; int64_t num_k;
    int64_t blocks;

    int64_t coord(int64_t i, int64_t column) const {
        return coords32 ? static_cast<const int32_t*>(coords)[i * (dims + 1) + column]
                        : static_cast<const int64_t*>(coords)[i * (dims + 1) + column];
    }

    // For input i and every axis a, the valid_count[a] tap values (valid_tap) reaching an output coordinate
    // (valid_out); false when some axis has none.
    bool valid_axis_outputs(int64_t i, int64_t* valid_count, int64_t* valid_tap, int64_t* valid_out) const {
        for (int64_t a = 0; a < dims; ++a) {
            const int64_t x = coord(i, a + 1);
            int64_t c = 0;
            for (int64_t u = 0; u < axis_counts[a]; ++u) {
                const int64_t tap = axis_taps[a * width + u] * dilation[a];
                int64_t o;
                if (transposed) {
                    o = x * stride[a] - padding[a] + tap;
                } else {
                    const int64_t numer = x + padding[a] - tap;
                    o = numer >= 0 && numer % stride[a] == 0 ? numer / stride[a] : -1;
                }
                if (0 <= o && o < out_shape[a]) {
                    valid_tap[a * width + c] = u;
                    valid_out[a * width + c] = o;
                    ++c;
                }
            }
            if (c == 0) return false;
            valid_count[a] = c;
        }
        return true;
    }

    // Block b's candidates: count[k] += 1 for each (without keys), or written at cursor[k] below end[k]. False
    // if a tap_of entry is not a tap or a cursor would pass its end.
    bool block(int64_t b, int64_t* cursor, const int64_t* end, int64_t* keys, int64_t* inputs, int64_t* scratch) const {
        int64_t* valid_count = scratch;
        int64_t* position = scratch + dims;
        int64_t* valid_tap = scratch + 2 * dims;
        int64_t* valid_out = valid_tap + dims * width;
        for (int64_t a = 0; a < dims; ++a) position[a] = 0;
        for (int64_t i = n * b / blocks; i < n * (b + 1) / blocks; ++i) {
            if (!valid_axis_outputs(i, valid_count, valid_tap, valid_out)) continue;
            bool more = true;
            while (more) {
                int64_t flat = 0;
                for (int64_t a = 0; a < dims; ++a) flat = flat * axis_counts[a] + valid_tap[a * width + position[a]];
                const int64_t k = tap_of[flat];
                if (k >= num_k) return false;
                if (k >= 0) {
                    if (keys != nullptr) {
                        if (cursor[k] >= end[k]) return false;
                        int64_t key = coord(i, 0);
                        for (int64_t a = 0; a < dims; ++a)
                            key = key * out_shape[a] + valid_out[a * width + position[a]];
                        keys[cursor[k]] = key;
                        inputs[cursor[k]] = i;
                    }
                    ++cursor[k];
                }
                more = false;  // the odometer over the valid values of every axis
                for (int64_t a = dims - 1; a >= 0 && !more; --a) {
                    more = ++position[a] < valid_count[a];
                    if (!more) position[a] = 0;
                }
            }
        }
        return true;
    }

    // 0, or 2 if the geometry would index outside its arrays (an axis without taps or with more than width, a
    // tap_of of another size, a stride below 1).
    int64_t check() const {
        int64_t combinations = 1;
        for (int64_t a = 0; a < dims; ++a) {
            if (axis_counts[a] < 1 || axis_counts[a] > width || stride[a] < 1) return 2;
            combinations *= axis_counts[a];
            if (combinations > num_combinations) return 2;
        }
        return combinations == num_combinations && blocks >= 1 ? 0 : 2;
    }

    // Runs block() for every block, one scratch and cursor row per block; 0, or 1 if a block failed.
    int64_t run(int64_t* cursors, const int64_t* ends, int64_t* keys, int64_t* inputs, int64_t threads) const {
        const int64_t parts = parts_for(blocks, threads);
        std::vector<int64_t> scratch(parts * (2 * dims + 2 * dims * width));
        std::vector<char> valid(blocks, 1);
        parallel_parts(parts, [&](int64_t t) {
            int64_t* mine = scratch.data() + t * (2 * dims + 2 * dims * width);
            for (int64_t b = blocks * t / parts; b < blocks * (t + 1) / parts; ++b)
                valid[b] = block(b, cursors + b * num_k, ends == nullptr ? nullptr : ends + b * num_k, keys, inputs,
                                 mine);
        });
        return all_set(valid) ? 0 : 1;
    }
};

// Stable counting sort of the permutation src by keys[src] into dst; false if a key lies outside [0, size).
bool counting_pass(const int64_t* keys, int64_t size, const int64_t* src, int64_t* dst, int64_t n) {
    std::vector<int64_t> starts(size + 1, 0);
    for (int64_t p = 0; p < n; ++p) {
        const int64_t v = keys[src[p]];
        if (v < 0 || v >= size) return false;
        ++starts[v + 1];
    }
    for (int64_t v = 0; v < size; ++v) starts[v + 1] += starts[v];
    for (int64_t p = 0; p < n; ++p) dst[starts[keys[src[p]]]++] = src[p];
    return true;
}

}  // namespace

// counts [num_k]: the entries >= 0 of each row of neighbors [num_k, num_out] (int32 when index32, else int64).
// Returns 0, or 1 if an entry is num_in or more.
int64_t irc_count_neighbors(const void* neighbors, int64_t index32, int64_t num_k, int64_t num_out, int64_t num_in,
                            int64_t* counts, int64_t threads) {
    return index32 ? count_neighbors(static_cast<const int32_t*>(neighbors), num_k, num_out, num_in, counts, threads)
                   : count_neighbors(static_cast<const int64_t*>(neighbors), num_k, num_out, num_in, counts, threads);
}

// The pairs of neighbors [num_k, num_out] with the counts of irc_count_neighbors: in_idx and out_idx
// [num_pairs], grouped by offset, outputs ascending. Returns 0, or 1 if the counts are negative or do not add up
// to num_pairs (nothing written).
int64_t irc_compact_neighbors(const void* neighbors, int64_t index32, int64_t num_k, int64_t num_out,
                              const int64_t* counts, int64_t* in_idx, int64_t* out_idx, int64_t num_pairs,
                              int64_t threads) {
    std::vector<int64_t> ptr(num_k + 1, 0);
    for (int64_t k = 0; k < num_k; ++k) {
        if (counts[k] < 0 || counts[k] > num_out) return 1;
        ptr[k + 1] = ptr[k] + counts[k];
    }
    if (ptr[num_k] != num_pairs) return 1;
    if (index32)
        compact_neighbors(static_cast<const int32_t*>(neighbors), num_k, num_out, ptr.data(), in_idx, out_idx, threads);
    else
        compact_neighbors(static_cast<const int64_t*>(neighbors), num_k, num_out, ptr.data(), in_idx, out_idx, threads);
    return 0;
}

// Rows half[h] and mirrored[h] of neighbors [num_k, n] (int32 when index32) by a merge join of the sites' keys
// sorted_keys [n] ascending (order [n]: their rows of coords [n, 1 + dims], int32 when coords32), for the
// displacements [num_k, dims] over the key space radices [1 + dims]. Returns 0, or 1 if a row of half / mirrored
// is outside [0, num_k) or repeats, or an order entry is outside [0, n) (nothing written).
int64_t irc_merge_neighbors(const int64_t* sorted_keys, const int64_t* order, const void* coords, int64_t coords32,
                            int64_t n, int64_t dims, const int64_t* displacements, int64_t num_k,
                            const int64_t* radices, const int64_t* half, const int64_t* mirrored, int64_t num_half,
                            void* neighbors, int64_t index32, int64_t threads) {
    if (coords32 && index32)
        return merge_neighbors(sorted_keys, order, static_cast<const int32_t*>(coords), n, dims, displacements, num_k,
                               radices, half, mirrored, num_half, static_cast<int32_t*>(neighbors), threads);
    if (coords32)
        return merge_neighbors(sorted_keys, order, static_cast<const int32_t*>(coords), n, dims, displacements, num_k,
                               radices, half, mirrored, num_half, static_cast<int64_t*>(neighbors), threads);
    if (index32)
        return merge_neighbors(sorted_keys, order, static_cast<const int64_t*>(coords), n, dims, displacements, num_k,
                               radices, half, mirrored, num_half, static_cast<int32_t*>(neighbors), threads);
    return merge_neighbors(sorted_keys, order, static_cast<const int64_t*>(coords), n, dims, displacements, num_k,
                           radices, half, mirrored, num_half, static_cast<int64_t*>(neighbors), threads);
}

// block_counts [blocks, num_k]: the candidates of each tap among the inputs of each of `blocks` ranges of the n
// inputs (see irregconv/rulebook/_numba_kernels.py, candidate_pairs, for the geometry). Returns 0, 1 if a tap_of
// entry is num_k or more, 2 if the geometry's sizes disagree.
int64_t irc_candidate_counts(const void* coords, int64_t coords32, int64_t n, int64_t dims, const int64_t* tap_of,
                             int64_t num_combinations, const int64_t* axis_taps, int64_t width,
                             const int64_t* axis_counts, const int64_t* stride, const int64_t* padding,
                             const int64_t* dilation, const int64_t* out_shape, int64_t transposed, int64_t num_k,
                             int64_t blocks, int64_t* block_counts, int64_t threads) {
    const Candidates geometry{coords, coords32 != 0, n, dims, tap_of, num_combinations, axis_taps, width, axis_counts,
                              stride, padding, dilation, out_shape, transposed != 0, num_k, blocks};
    if (const int64_t status = geometry.check()) return status;
    std::memset(block_counts, 0, sizeof(int64_t) * blocks * num_k);
    return geometry.run(block_counts, nullptr, nullptr, nullptr, threads);
}

// keys and inputs [total] of the candidates counted by irc_candidate_counts (block_counts), grouped by tap, inputs
// ascending within a tap. Returns 0, 1 if a block finds other candidates than counted, 2 if the geometry's sizes
// disagree or the counts do not add up to total.
int64_t irc_candidate_fill(const void* coords, int64_t coords32, int64_t n, int64_t dims, const int64_t* tap_of,
                           int64_t num_combinations, const int64_t* axis_taps, int64_t width,
                           const int64_t* axis_counts, const int64_t* stride, const int64_t* padding,
                           const int64_t* dilation, const int64_t* out_shape, int64_t transposed, int64_t num_k,
                           int64_t blocks, const int64_t* block_counts, int64_t* keys, int64_t* inputs, int64_t total,
                           int64_t threads) {
    const Candidates geometry{coords, coords32 != 0, n, dims, tap_of, num_combinations, axis_taps, width, axis_counts,
                              stride, padding, dilation, out_shape, transposed != 0, num_k, blocks};
    if (const int64_t status = geometry.check()) return status;
    std::vector<int64_t> cursors(blocks * num_k), ends(blocks * num_k);
    int64_t cursor = 0;
    for (int64_t k = 0; k < num_k; ++k) {
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t count = block_counts[b * num_k + k];
            if (count < 0 || count > total - cursor) return 2;
            cursors[b * num_k + k] = cursor;
            cursor += count;
            ends[b * num_k + k] = cursor;
        }
    }
    if (cursor != total) return 2;
    return geometry.run(cursors.data(), ends.data(), keys, inputs, threads);
}

// Stable ascending sort of keys [n], each in [0, key_bound): sorted [n] and their positions order [n]. An LSD
// radix sort of 12-bit digits. Returns 0, or 1 if a key lies outside [0, key_bound) (nothing written).
int64_t irc_argsort_keys(const int64_t* keys, int64_t n, int64_t key_bound, int64_t* sorted, int64_t* order) {
    for (int64_t p = 0; p < n; ++p)
        if (keys[p] < 0 || keys[p] >= key_bound) return 1;
    std::vector<int64_t> current(keys, keys + n), current_next(n), positions(n), positions_next(n);
    for (int64_t p = 0; p < n; ++p) positions[p] = p;
    std::vector<int64_t> starts(4097);
    for (int64_t shift = 0; shift == 0 || (shift < 64 && ((key_bound - 1) >> shift) > 0); shift += 12) {
        std::fill(starts.begin(), starts.end(), 0);
        for (int64_t p = 0; p < n; ++p) ++starts[((current[p] >> shift) & 4095) + 1];
        for (int64_t v = 0; v < 4096; ++v) starts[v + 1] += starts[v];
        for (int64_t p = 0; p < n; ++p) {
            const int64_t q = starts[(current[p] >> shift) & 4095]++;
            current_next[q] = current[p];
            positions_next[q] = positions[p];
        }
        current.swap(current_next);
        positions.swap(positions_next);
    }
    std::memcpy(sorted, current.data(), sizeof(int64_t) * n);
    std::memcpy(order, positions.data(), sizeof(int64_t) * n);
    return 0;
}

// rank [v] of each of the ascending sorted_keys [v] among the distinct ones, written to unique [>= count];
// returns their count.
int64_t irc_rank_sorted(const int64_t* sorted_keys, int64_t v, int64_t* rank, int64_t* unique) {
    int64_t count = 0;
    for (int64_t q = 0; q < v; ++q) {
        if (q > 0 && sorted_keys[q] != sorted_keys[q - 1]) ++count;
        rank[q] = count;
        unique[count] = sorted_keys[q];
    }
    return v > 0 ? count + 1 : 0;
}

// outputs [v]: outputs[order[q]] = rank[q]. Returns 0 if outputs ascend strictly within every run of counts
// [num_k] candidates, 1 if not, 2 if an order entry is outside [0, v) or the counts do not add up to v.
int64_t irc_candidate_outputs(const int64_t* rank, const int64_t* order, int64_t v, const int64_t* counts,
                              int64_t num_k, int64_t* outputs, int64_t threads) {
    std::vector<int64_t> starts(num_k + 1, 0);
    for (int64_t k = 0; k < num_k; ++k) {
        if (counts[k] < 0 || counts[k] > v - starts[k]) return 2;
        starts[k + 1] = starts[k] + counts[k];
    }
    if (starts[num_k] != v) return 2;
    for (int64_t q = 0; q < v; ++q)
        if (order[q] < 0 || order[q] >= v) return 2;
    parallel_ranges(v, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t q = lo; q < hi; ++q) outputs[order[q]] = rank[q];
    });
    std::vector<char> ascending(num_k, 1);
    parallel_ranges(num_k, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t k = lo; k < hi; ++k)
            for (int64_t p = starts[k] + 1; p < starts[k + 1]; ++p)
                if (outputs[p] <= outputs[p - 1]) {
                    ascending[k] = 0;
                    break;
                }
    });
    return all_set(ascending) ? 0 : 1;
}

// neighbors [num_k, num_out] (int32 when index32): -1, then for candidate c = order[q] (q < v) the entry
// (pair_offset[c], rank[q]) = pair_input[c]. Returns 0, or 1 if an index is outside its range (nothing written).
int64_t irc_fill_new_neighbors(const int64_t* rank, const int64_t* order, int64_t v, const int64_t* pair_offset,
                               const int64_t* pair_input, void* neighbors, int64_t index32, int64_t num_k,
                               int64_t num_out, int64_t threads) {
    for (int64_t q = 0; q < v; ++q) {
        const int64_t c = order[q];
        if (c < 0 || c >= v || pair_offset[c] < 0 || pair_offset[c] >= num_k || rank[q] < 0 || rank[q] >= num_out)
            return 1;
    }
    auto fill = [&](auto* map) {
        parallel_ranges(num_k, threads, [&](int64_t lo, int64_t hi) {
            for (int64_t e = lo * num_out; e < hi * num_out; ++e) map[e] = -1;
        });
        parallel_ranges(v, threads, [&](int64_t lo, int64_t hi) {
            for (int64_t q = lo; q < hi; ++q) {
                const int64_t c = order[q];
                map[pair_offset[c] * num_out + rank[q]] = pair_input[c];
            }
        });
    };
    if (index32) fill(static_cast<int32_t*>(neighbors));
    else fill(static_cast<int64_t*>(neighbors));
    return 0;
}

// order [p]: the permutation sorting pairs by (offset, out_idx, in_idx), ties in input order; three stable
// counting passes. Returns 0, or 1 if an index lies outside [0, num_in), [0, num_out) or [0, num_k).
int64_t irc_sort_pairs(const int64_t* offset, const int64_t* out_idx, const int64_t* in_idx, int64_t p,
                       int64_t num_k, int64_t num_out, int64_t num_in, int64_t* order) {
    std::vector<int64_t> identity(p), scratch(p);
    for (int64_t q = 0; q < p; ++q) identity[q] = q;
    if (!counting_pass(in_idx, num_in, identity.data(), scratch.data(), p)) return 1;
    if (num_k > 1) {
        if (!counting_pass(out_idx, num_out, scratch.data(), identity.data(), p)) return 1;
        return counting_pass(offset, num_k, identity.data(), order, p) ? 0 : 1;
    }
    return counting_pass(out_idx, num_out, scratch.data(), order, p) ? 0 : 1;
}

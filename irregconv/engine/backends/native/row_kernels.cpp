// Row kernels of irregconv/engine/backends/rows.py for float32 and float64 (C interface: kernels.h), ported from
// the numba kernels of irregconv/engine/backends/_numba_kernels.py with the same results bit for bit (plain
// additions and products in the same order; the extension is compiled without contraction into FMAs).
//
// Each parallel part owns its output rows, so results never depend on the thread count.
#include <cstdint>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace {

template <typename T>
int64_t scatter_add_owned(T* out, int64_t num_rows, int64_t channels, const int64_t* idx, int64_t num_pairs,
                          const T* src, int64_t threads) {
    const int64_t parts = irc::parts_for(num_rows, threads);
    std::vector<int64_t> outside(parts, 0);
    irc::parallel_parts(parts, [&](int64_t b) {
        const int64_t lo = num_rows * b / parts, hi = num_rows * (b + 1) / parts;
        for (int64_t p = 0; p < num_pairs; ++p) {
            const int64_t o = idx[p];
            if (lo <= o && o < hi) {
                for (int64_t c = 0; c < channels; ++c) out[o * channels + c] += src[p * channels + c];
            } else if (o < 0 || o >= num_rows) {
                ++outside[b];
            }
        }
    });
    return outside[0];
}

template <typename T>
int64_t csr_rows_add(T* out, int64_t n, int64_t channels, const int64_t* crow, const int64_t* col, int64_t num_entries,
                     const T* values, int64_t num_values, const T* src, int64_t num_src, int64_t threads) {
    std::vector<char> valid(n, 1);
    irc::parallel_ranges(n, threads, [&](int64_t lo, int64_t hi) {
        for (int64_t o = lo; o < hi; ++o) {
            const int64_t begin = crow[o], end = crow[o + 1];
            if (begin < 0 || end > num_entries || end > num_values) {
                valid[o] = 0;
                continue;
            }
            for (int64_t q = begin; q < end; ++q) {
                const int64_t i = col[q];
                if (i < 0 || i >= num_src) {
                    valid[o] = 0;
                    break;
                }
                const T v = values[q];
                for (int64_t c = 0; c < channels; ++c) out[o * channels + c] += v * src[i * channels + c];
            }
        }
    });
    for (char v : valid)
        if (!v) return 1;
    return 0;
}

}  // namespace

// out [num_rows, channels] += src [num_pairs, channels] at rows idx [num_pairs], each row summed in pair order by
// the part owning it (float64 when double_precision, else float32). Returns the number of pairs whose row lies
// outside out (left out).
int64_t irc_scatter_add_owned(void* out, int64_t num_rows, int64_t channels, const int64_t* idx, int64_t num_pairs,
                              const void* src, int64_t double_precision, int64_t threads) {
    return double_precision
        ? scatter_add_owned(static_cast<double*>(out), num_rows, channels, idx, num_pairs,
                            static_cast<const double*>(src), threads)
        : scatter_add_owned(static_cast<float*>(out), num_rows, channels, idx, num_pairs,
                            static_cast<const float*>(src), threads);
}

// out [n, channels] += sum_q values[q] * src[col[q]] over q in crow[o]:crow[o + 1], one row per iteration (float64
// when double_precision, else float32). Returns 0, or 1 if a row's entries leave [0, num_entries) or the values,
// or a column leaves src (such rows are partly summed).
int64_t irc_csr_rows_add_plain(void* out, int64_t n, int64_t channels, const int64_t* crow, const int64_t* col,
                               int64_t num_entries, const void* values, int64_t num_values, const void* src,
                               int64_t num_src, int64_t double_precision, int64_t threads) {
    return double_precision
        ? csr_rows_add(static_cast<double*>(out), n, channels, crow, col, num_entries,
                       static_cast<const double*>(values), num_values, static_cast<const double*>(src), num_src,
                       threads)
        : csr_rows_add(static_cast<float*>(out), n, channels, crow, col, num_entries,
                       static_cast<const float*>(values), num_values, static_cast<const float*>(src), num_src,
                       threads);
}

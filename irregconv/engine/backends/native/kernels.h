// The C interface of the native kernels (gather_gemm_scatter.cpp: convolution, graph rows, batch-norm statistics;
// rulebook_kernels.cpp: rulebook building; hash_kernels.cpp: the hash table and key unpacking; row_kernels.cpp:
// row scatters and CSR sums of float32 or float64), called by the CPython bindings (python_module.cpp). Pointers
// are row-major CPU buffers; every function's contract is documented at its definition.
#pragma once

#include <cstdint>

extern "C" {
int64_t irc_native_version();
void irc_use_openmp(void* parallel, void* thread_num, void* num_threads);
int64_t irc_conv_accumulate(const float* x, int64_t c_in, int64_t num_in, const float* w, int64_t c_out,
                            const int64_t* in_idx, const int64_t* out_idx, const int64_t* offset_ptr, int64_t num_k,
                            int64_t skip, float* out, int64_t num_out, int64_t threads);
int64_t irc_conv_weight_grad(const float* x, int64_t c_in, int64_t num_in, const float* g, int64_t c_out,
                             int64_t num_out, const int64_t* in_idx, const int64_t* out_idx, const int64_t* offset_ptr,
                             int64_t num_k, int64_t skip, float* grad_w, int64_t threads);
int64_t irc_nonzero_rows_matmul(const float* x, int64_t n, int64_t c_in, const float* w, int64_t c_out, float* out,
                                int32_t* cols, float* vals, int64_t* row_nnz, int64_t threads);
int64_t irc_csr_weight_grad(const int64_t* row_ptr, const int32_t* cols, const float* vals, int64_t num_entries,
                            int64_t n, int64_t c_in, const float* g, int64_t c_out, float* grad_w, int64_t threads);
void irc_rows_outer(const float* x, int64_t a, const float* g, int64_t b, int64_t n, float* out, float* sums,
                    int64_t threads);
void irc_column_moments(const float* x, int64_t n, int64_t c, double* sums, double* mean, double* squares,
                        int64_t threads);
void irc_column_grad_sums(const float* g, const float* x, int64_t n, int64_t c, const double* mean,
                          const double* inv_std, double* sum_g, double* sum_g_xhat, int64_t threads);
int64_t irc_csr_rows_add(float* out, int64_t n, int64_t c, const int64_t* crow, const void* col,
                         int64_t num_entries, const float* values, const void* order, int64_t num_values,
                         const float* src, int64_t num_src, int64_t accumulate, const float* bias, const float* w,
                         int64_t c_out, float* side, int64_t index32, int64_t layout, int64_t threads);
void irc_transpose(const float* src, int64_t rows, int64_t cols, float* dst);

int64_t irc_count_neighbors(const void* neighbors, int64_t index32, int64_t num_k, int64_t num_out, int64_t num_in,
                            int64_t* counts, int64_t threads);
int64_t irc_compact_neighbors(const void* neighbors, int64_t index32, int64_t num_k, int64_t num_out,
                              const int64_t* counts, int64_t* in_idx, int64_t* out_idx, int64_t num_pairs,
                              int64_t threads);
int64_t irc_merge_neighbors(const int64_t* sorted_keys, const int64_t* order, const void* coords, int64_t coords32,
                            int64_t n, int64_t dims, const int64_t* displacements, int64_t num_k,
                            const int64_t* radices, const int64_t* half, const int64_t* mirrored, int64_t num_half,
                            void* neighbors, int64_t index32, int64_t threads);
int64_t irc_candidate_counts(const void* coords, int64_t coords32, int64_t n, int64_t dims, const int64_t* tap_of,
                             int64_t num_combinations, const int64_t* axis_taps, int64_t width,
                             const int64_t* axis_counts, const int64_t* stride, const int64_t* padding,
                             const int64_t* dilation, const int64_t* out_shape, int64_t transposed, int64_t num_k,
                             int64_t blocks, int64_t* block_counts, int64_t threads);
int64_t irc_candidate_fill(const void* coords, int64_t coords32, int64_t n, int64_t dims, const int64_t* tap_of,
                           int64_t num_combinations, const int64_t* axis_taps, int64_t width,
                           const int64_t* axis_counts, const int64_t* stride, const int64_t* padding,
                           const int64_t* dilation, const int64_t* out_shape, int64_t transposed, int64_t num_k,
                           int64_t blocks, const int64_t* block_counts, int64_t* keys, int64_t* inputs, int64_t total,
                           int64_t threads);
int64_t irc_argsort_keys(const int64_t* keys, int64_t n, int64_t key_bound, int64_t* sorted, int64_t* order);
int64_t irc_rank_sorted(const int64_t* sorted_keys, int64_t v, int64_t* rank, int64_t* unique);
int64_t irc_candidate_outputs(const int64_t* rank, const int64_t* order, int64_t v, const int64_t* counts,
                              int64_t num_k, int64_t* outputs, int64_t threads);
int64_t irc_fill_new_neighbors(const int64_t* rank, const int64_t* order, int64_t v, const int64_t* pair_offset,
                               const int64_t* pair_input, void* neighbors, int64_t index32, int64_t num_k,
                               int64_t num_out, int64_t threads);
int64_t irc_sort_pairs(const int64_t* offset, const int64_t* out_idx, const int64_t* in_idx, int64_t p,
                       int64_t num_k, int64_t num_out, int64_t num_in, int64_t* order);

int64_t irc_hash_build(const int64_t* keys, int64_t n, int64_t capacity, int64_t* slots_key, int64_t* slots_val);
int64_t irc_hash_lookup(const int64_t* slots_key, const int64_t* slots_val, int64_t capacity, const int64_t* query,
                        int64_t n, int64_t* out, int64_t threads);
int64_t irc_hash_lookup_neighbors(const int64_t* slots_key, const int64_t* slots_val, int64_t capacity,
                                  const void* coords, int64_t coords32, int64_t n, int64_t dims,
                                  const int64_t* displacements, int64_t num_disp, const int64_t* radices, int64_t* out,
                                  int64_t threads);
int64_t irc_unpack_keys(const int64_t* keys, int64_t n, const int64_t* spatial_shape, int64_t dims, int32_t* coords,
                        int64_t threads);

int64_t irc_scatter_add_owned(void* out, int64_t num_rows, int64_t channels, const int64_t* idx, int64_t num_pairs,
                              const void* src, int64_t double_precision, int64_t threads);
int64_t irc_csr_rows_add_plain(void* out, int64_t n, int64_t channels, const int64_t* crow, const int64_t* col,
                               int64_t num_entries, const void* values, int64_t num_values, const void* src,
                               int64_t num_src, int64_t double_precision, int64_t threads);
}

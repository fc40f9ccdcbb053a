// The C interface of the native kernels (gather_gemm_scatter.cpp), called by the CPython bindings
// (python_module.cpp). Pointers are row-major float32 (double for batch-norm statistics) CPU buffers; every
// function's contract is documented at its definition.
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
}

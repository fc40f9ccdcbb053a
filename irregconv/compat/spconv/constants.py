"""``spconv.constants``: the module-level switches that spconv's own modules read, as fixed values.

spconv reads several of them from environment variables (``SPCONV_SAVED_WEIGHT_LAYOUT``, ``SPCONV_FX_TRACE_MODE``,
...); here none depends on the environment: weights are always spconv 2.x's ``[C_out, *kernel_size, C_in]``
(KRSC) and there is no torch.fx trace mode.
"""

__all__ = ["ALL_WEIGHT_IS_KRSC", "FILTER_HWIO", "NDIM_DONT_CARE", "SAVED_WEIGHT_LAYOUT", "SPCONV_ALLOW_TF32",
           "SPCONV_FX_TRACE_MODE"]

#: every convolution weight is ``[C_out, *kernel_size, C_in]``
ALL_WEIGHT_IS_KRSC = True
#: spconv 1.x's ``[*kernel_size, C_in, C_out]`` layout is not used
FILTER_HWIO = False
#: "" is spconv's default: weights are saved in the layout they have (KRSC)
SAVED_WEIGHT_LAYOUT = ""
#: spconv's placeholder dimension for kernels that do not depend on it
NDIM_DONT_CARE = 3
#: no torch.fx tracing mode: SparseConvTensor checks its arguments
SPCONV_FX_TRACE_MODE = False
#: spconv's CUDA GEMMs do not use TF32; irregconv's CPU engine never does
SPCONV_ALLOW_TF32 = False

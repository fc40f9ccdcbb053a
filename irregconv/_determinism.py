"""Bitwise reproducibility across thread counts for the BLAS that torch's CPU build uses.

MKL splits the reduction dimension of a matrix product across threads when the output is small and the
reduction long, exactly the shape of a convolution's weight gradient (``X^T G`` over all pairs), so the
same inputs gave different bits with 1 and 2 threads (14 of 16 shapes differed in a test here). MKL's
strict conditional numerical reproducibility mode (``MKL_CBWR=<branch>,STRICT``) makes ``?gemm``
bitwise reproducible regardless of the number of threads; on AVX-512 CPUs it costs nothing measurable
(2048^3 sgemm: 186 vs 179 GFLOP/s here). MKL reads the variable at its first call, so it is set when
irregconv is imported, before any matrix product, unless the user already chose a value. On CPUs without
AVX-512 it is left alone (the AVX2 strict branch was 30x slower here); there weight gradients are
reproducible for a fixed thread count only.
"""
import os


def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def request_reproducible_blas() -> None:
    """Ask MKL for thread-count-independent results, unless ``MKL_CBWR`` is already set."""
    if "MKL_CBWR" not in os.environ and _cpu_has_avx512():
        os.environ["MKL_CBWR"] = "AVX512,STRICT"

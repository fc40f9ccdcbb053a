"""Builds the optional native kernels (irregconv/engine/backends/native): plain C++ kernels (convolution, graph rows,
batch norm, rulebook building, hashing) and their CPython bindings, one extension module, no torch headers, so any g++ builds it (a minute or two on 2 cores). ``optional=True``:
without a compiler the install still succeeds and the engine uses its numba/torch paths (same results, slower)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "irregconv.engine.backends.native._gather_gemm_scatter",
    sources=["irregconv/engine/backends/native/gather_gemm_scatter.cpp",
             "irregconv/engine/backends/native/rulebook_kernels.cpp",
             "irregconv/engine/backends/native/hash_kernels.cpp",
             "irregconv/engine/backends/native/row_kernels.cpp",
             "irregconv/engine/backends/native/python_module.cpp"],
    depends=["irregconv/engine/backends/native/kernels.h", "irregconv/engine/backends/native/parallel.h"],
    language="c++",
    extra_compile_args=["-O3", "-std=c++17", "-pthread", "-fno-math-errno", "-Wno-psabi"],
    extra_link_args=["-pthread"],
    optional=True,
)])

"""Optional accelerated kernels behind the engine's device-agnostic torch paths."""
from .rows import csr_rows_add, scatter_add_rows

__all__ = ["csr_rows_add", "scatter_add_rows"]

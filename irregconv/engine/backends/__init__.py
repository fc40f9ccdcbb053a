"""Optional accelerated kernels behind the engine's device-agnostic torch paths."""
from .rows import scatter_add_rows

__all__ = ["scatter_add_rows"]

"""Compatibility layers: the spconv 2.3.8 API on irregconv (the package ``spconv``, laid out as spconv's) and PyG
graph conversions (``pyg``)."""
from . import spconv

__all__ = ["spconv"]

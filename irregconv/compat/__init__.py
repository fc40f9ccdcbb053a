"""Compatibility layers: the spconv 2.x API on irregconv (``spconv``) and PyG graph conversions (``pyg``)."""
from . import spconv

__all__ = ["spconv"]

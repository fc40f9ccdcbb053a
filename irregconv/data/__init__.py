"""Data: point-cloud readers, voxelization, Planetoid graphs and synthetic generators."""
from .planetoid import NodeClassificationGraph, Planetoid
from .synthetic_graph import make_cora_like

__all__ = ["NodeClassificationGraph", "Planetoid", "make_cora_like"]

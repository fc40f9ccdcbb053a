"""Data: point-cloud readers, voxelization, Planetoid graphs and synthetic generators."""
from .planetoid import NodeClassificationGraph, Planetoid
from .points import read_points
from .synthetic_graph import make_cora_like
from .voxelize import Voxels, voxelize

__all__ = ["NodeClassificationGraph", "Planetoid", "Voxels", "make_cora_like", "read_points", "voxelize"]

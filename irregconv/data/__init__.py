"""Data: point-cloud readers, voxelization, Planetoid graphs and synthetic generators."""
__all__ = []

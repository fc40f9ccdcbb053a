"""Sparse voxel convolutions and pooling on :class:`irregconv.SparseTensor`."""
__all__ = []

"""Sparse voxel convolutions and pooling on :class:`irregconv.SparseTensor`."""
from .base import SparseConvBase, SparseModule
from .pooling import (SparseAvgPool1d, SparseAvgPool2d, SparseAvgPool3d, SparseGlobalPool, SparseMaxPool1d,
                      SparseMaxPool2d, SparseMaxPool3d)
from .sequential import SparseSequential, ToDense
from .sparse_cond_conv import SparseCondConv3d
from .sparse_conv import SparseConv1d, SparseConv2d, SparseConv3d, SparseConv4d
from .sparse_conv_transpose import (SparseConvTranspose1d, SparseConvTranspose2d, SparseConvTranspose3d,
                                    SparseConvTranspose4d)
from .sparse_depthwise_separable_conv import SparseDepthwiseSeparableConv3d
from .sparse_dynamic_conv import SparseDynamicConv3d
from .sparse_inverse_conv import SparseInverseConv1d, SparseInverseConv2d, SparseInverseConv3d, SparseInverseConv4d
from .subm_conv import SubMConv1d, SubMConv2d, SubMConv3d, SubMConv4d

__all__ = [
    "SparseModule", "SparseConvBase", "SparseSequential", "ToDense",
    "SubMConv1d", "SubMConv2d", "SubMConv3d", "SubMConv4d",
    "SparseConv1d", "SparseConv2d", "SparseConv3d", "SparseConv4d",
    "SparseConvTranspose1d", "SparseConvTranspose2d", "SparseConvTranspose3d", "SparseConvTranspose4d",
    "SparseInverseConv1d", "SparseInverseConv2d", "SparseInverseConv3d", "SparseInverseConv4d",
    "SparseMaxPool1d", "SparseMaxPool2d", "SparseMaxPool3d", "SparseAvgPool1d", "SparseAvgPool2d",
    "SparseAvgPool3d", "SparseGlobalPool",
    "SparseDepthwiseSeparableConv3d", "SparseCondConv3d", "SparseDynamicConv3d",
]

"""``spconv.pytorch`` on irregconv: the names ``import spconv.pytorch as spconv`` gives, with spconv 2.3.8's
submodules ``core``, ``conv``, ``modules``, ``pool``, ``functional``, ``hash``, ``utils``, ``tables``,
``identity`` and ``constants``."""
from . import constants, functional, hash, identity, tables, utils
from ..core import ConvAlgo
from .conv import (SparseConv1d, SparseConv2d, SparseConv3d, SparseConv4d, SparseConvolution, SparseConvTranspose1d,
                   SparseConvTranspose2d, SparseConvTranspose3d, SparseConvTranspose4d, SparseInverseConv1d,
                   SparseInverseConv2d, SparseInverseConv3d, SparseInverseConv4d, SubMConv1d, SubMConv2d, SubMConv3d,
                   SubMConv4d)
from .core import IndiceData, SparseConvTensor
from .identity import Identity
from .modules import (RemoveGrid, SparseBatchNorm, SparseIdentity, SparseModule, SparseReLU, SparseSequential,
                      SparseSyncBatchNorm, ToDense, assign_name_for_sparse_modules, is_sparse_conv, is_spconv_module)
from .pool import (SparseAvgPool, SparseAvgPool1d, SparseAvgPool2d, SparseAvgPool3d, SparseGlobalAvgPool,
                   SparseGlobalMaxOrAvgPool, SparseGlobalMaxPool, SparseMaxPool, SparseMaxPool1d, SparseMaxPool2d,
                   SparseMaxPool3d, SparseMaxPool4d)
from .tables import AddTable, AddTableMisaligned, ConcatTable, JoinTable

__all__ = [
    "AddTable", "AddTableMisaligned", "ConcatTable", "ConvAlgo", "Identity", "IndiceData", "JoinTable", "RemoveGrid",
    "SparseAvgPool", "SparseAvgPool1d", "SparseAvgPool2d", "SparseAvgPool3d", "SparseBatchNorm",
    "SparseConv1d", "SparseConv2d", "SparseConv3d", "SparseConv4d", "SparseConvTensor", "SparseConvolution",
    "SparseConvTranspose1d", "SparseConvTranspose2d", "SparseConvTranspose3d", "SparseConvTranspose4d",
    "SparseGlobalAvgPool", "SparseGlobalMaxOrAvgPool", "SparseGlobalMaxPool", "SparseIdentity",
    "SparseInverseConv1d", "SparseInverseConv2d", "SparseInverseConv3d", "SparseInverseConv4d",
    "SparseMaxPool", "SparseMaxPool1d", "SparseMaxPool2d", "SparseMaxPool3d", "SparseMaxPool4d", "SparseModule",
    "SparseReLU", "SparseSequential", "SparseSyncBatchNorm", "SubMConv1d", "SubMConv2d", "SubMConv3d", "SubMConv4d",
    "ToDense", "assign_name_for_sparse_modules", "is_sparse_conv", "is_spconv_module",
]

"""spconv 2.3.8 drop-in, laid out as spconv is: ``from irregconv.compat import spconv`` where code has
``import spconv.pytorch as spconv``, or :func:`install` to make the ``import spconv...`` lines of unmodified files
resolve here.

The package mirrors spconv's modules, each on irregconv's own sparse functions and engine:

* ``spconv.pytorch`` (:mod:`.pytorch`): ``core`` (:class:`SparseConvTensor`, :class:`IndiceData`), ``conv``
  (``SubMConv{1,2,3,4}d``, ``SparseConv{1,2,3,4}d``, ``SparseInverseConv{1,2,3,4}d``, ``SparseConvTranspose{1,2,3,4}d``,
  subclasses of ``SparseConvolution``), ``modules`` (:class:`SparseModule`, :class:`SparseSequential`,
  :class:`SparseBatchNorm`, :class:`SparseSyncBatchNorm`, :class:`SparseReLU`, :class:`SparseIdentity`,
  :class:`ToDense`, :class:`RemoveGrid`, ``is_spconv_module``, ``is_sparse_conv``, ``assign_name_for_sparse_modules``),
  ``pool`` (``SparseMaxPool{1,2,3,4}d``, ``SparseAvgPool{1,2,3}d``, global pools), ``tables`` (``AddTable``,
  ``ConcatTable``, ``JoinTable``, ``AddTableMisaligned``), ``functional`` (``sparse_add``), ``hash``
  (``HashTable``), ``utils`` (``PointToVoxel``, ``gather_features_by_pc_voxel_id``), ``identity`` (``Identity``),
  ``constants``;
* ``spconv.utils`` (:mod:`.utils`): the CPU voxel generators ``Point2VoxelCPU{1,2,3,4}d``;
* ``spconv.core`` (:mod:`.core`): ``ConvAlgo``; ``spconv.constants`` (:mod:`.constants`);
* this package: ``__version__`` (the spconv version whose behaviour it reproduces), :func:`install`, every name of
  ``spconv.pytorch`` (and its submodules ``conv``, ``modules``, ``pool``, ``functional``, ``hash``, ``tables``)
  for ``from irregconv.compat import spconv`` users, and irregconv's own helpers for spconv checkpoints
  (:mod:`.weights`: ``weight_to_native``, ``weight_from_native``, ``load_spconv_state_dict``).

Parameters keep spconv 2.x's names and layout: ``weight [C_out, *kernel_size, C_in]`` (KRSC) and
``bias [C_out]``, so a spconv ``state_dict`` loads unchanged. ``forward`` converts the weight to the engine's
``[K, C_in, C_out]`` (a differentiable permutation) and runs gather -> GEMM -> scatter over the rulebook of
the input's sites. Unlike spconv on the CPU, the result is bit-identical for any thread count and has a
backward pass.

**indice_key is a hint, checked.** Rulebooks are cached on the coordinate set by their geometry, so they
are reused with or without keys. A key records the geometry and the sites of the layer that first used it;
a later layer that names the key must have the same geometry and run on the same sites, else a
``ValueError`` says what differs (spconv would silently reuse a wrong rulebook). Inverse convolutions find
the strided convolution (or pool) they invert by its key, as in spconv.

**Where it deliberately differs from spconv 2.3.8:**

* kernel volume 1 with unit stride (spconv's "conv1x1" path) reads the ``[C_out, 1, .., 1, C_in]`` weight's
  memory as ``[C_in, C_out]``, exactly as spconv computes it, so checkpoints give the same outputs; an
  inverse convolution with kernel volume 1 reads its weight that way too, but (unlike spconv's 1x1 path)
  returns to the sites of the convolution it inverts;
* max pooling is the maximum over the active inputs, also for negative features (spconv starts at 0);
* average pooling divides by the number of active inputs in the window, as spconv's forward does; its
  gradient is ``grad / count`` (spconv's CUDA backward multiplies by the count instead, and fails in eval
  mode), and there is no kernel-volume limit (spconv asserts ``prod(kernel_size) <= 32``);
* :class:`SparseGlobalAvgPool` returns the ``[B, C]`` mean (spconv 2.3.8's returns ``[B]``, the mean of
  channel 0 only, from a stray ``[0]``), and a batch item without sites gives zeros for both global pools
  (spconv raises for max and gives NaN for mean);
* a strided convolution may reuse its own key with the same geometry on the same sites (spconv asserts);
* ``groups`` must be 1 (spconv 2.x has no grouped weights; use :class:`irregconv.nn.SubMConv3d` with
  ``groups``); ``algo`` (a ``ConvAlgo``, checked) is kept as ``self.algo`` and the one algorithm runs whatever
  it says; ``fp32_accum`` and ``large_kernel_fast_algo`` select CUDA kernels in spconv and are accepted and
  ignored here; fused activations are not offered (add ``nn.ReLU()``);
* ``torch.nn.BatchNorm1d`` inside :class:`SparseSequential`, and :class:`SparseBatchNorm`, use thread-count-independent
  statistics (:func:`irregconv.functional.batch_norm.batch_norm_module_rows`, same formula and buffers);
* ``IndiceData.indice_pair_num`` counts every pair (see :class:`~.pytorch.core.IndiceData`), ``sparse_add`` keeps
  the largest operand's row order when the sum has its sites, ``HashTable`` lists its items in insertion order,
  ``SparseConvTensor.select_by_index`` works (spconv 2.3.8's raises), and ``point_to_voxel_empty_mean`` gives each
  voxel its own mean (spconv's carries each mean into the next voxel); the voxel generators do not allocate
  spconv's dense per-cell ``densehashdata`` grid; each is documented where it is defined.

Example:
    >>> import torch
    >>> from irregconv.compat import spconv
    >>> x = spconv.SparseConvTensor(torch.randn(3, 4), torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 5, 5, 5]]),
    ...                             spatial_shape=[8, 8, 8], batch_size=1)
    >>> net = spconv.SparseSequential(spconv.SubMConv3d(4, 8, 3, indice_key="subm1"), torch.nn.ReLU(),
    ...                               spconv.SparseConv3d(8, 16, 3, stride=2, padding=1, indice_key="down1"))
    >>> y = net(x)
    >>> y.spatial_shape, y.features.shape
    ([4, 4, 4], torch.Size([10, 16]))
"""
import sys

from . import constants, core, pytorch, utils
from .pytorch import *  # noqa: F401,F403  spconv.pytorch's names, for `from irregconv.compat import spconv`
from .pytorch import __all__ as _pytorch_names
from .pytorch import conv, functional, hash, identity, modules, pool, tables  # noqa: F401
from .pytorch.pool import ALL_POOL_LAYERS
from .weights import MAX_NUM_VOXELS, load_spconv_state_dict, weight_from_native, weight_to_native

#: the spconv release whose behaviour this package reproduces (mmdetection3d compares it with "2.0.0")
__version__ = "2.3.8"

#: ``import`` name -> this package's module, for every spconv module path that real code imports
SPCONV_MODULES = {
    "spconv": __name__,
    "spconv.core": f"{__name__}.core",
    "spconv.constants": f"{__name__}.constants",
    "spconv.utils": f"{__name__}.utils",
    "spconv.pytorch": f"{__name__}.pytorch",
    **{f"spconv.pytorch.{name}": f"{__name__}.pytorch.{name}"
       for name in ("core", "conv", "modules", "pool", "functional", "hash", "utils", "tables", "identity",
                    "constants")},
}
#: the module names :func:`install` registers
SPCONV_MODULE_NAMES = tuple(SPCONV_MODULES)

__all__ = sorted(set(_pytorch_names) | {"ALL_POOL_LAYERS", "MAX_NUM_VOXELS", "SPCONV_MODULE_NAMES", "__version__", "install",
                                        "load_spconv_state_dict", "weight_from_native", "weight_to_native"})


def install() -> None:
    """Make every ``import spconv...`` resolve to this package: ``spconv`` itself, ``spconv.pytorch`` and its
    submodules (``core``, ``conv``, ``modules``, ``pool``, ``functional``, ``hash``, ``utils``, ``tables``,
    ``identity``, ``constants``), ``spconv.utils``, ``spconv.core`` and ``spconv.constants``, so that files written
    for spconv (``import spconv.pytorch as spconv``, ``from spconv.utils import Point2VoxelCPU3d``,
    ``from spconv.pytorch.modules import SparseModule``, ...) run unmodified on irregconv.

    It sets entries of ``sys.modules``: call it before that code is imported, and only in a process that does
    not also need the real spconv. Calling it again changes nothing.
    """
    for name, module in SPCONV_MODULES.items():
        sys.modules[name] = sys.modules[module]

"""spconv 2.x drop-in: ``from irregconv.compat import spconv`` where a detector has ``import spconv.pytorch as spconv``.

The spconv 2.x PyTorch API that detection code uses (OpenPCDet's ``spconv_backbone.py`` and ``spconv_utils.py``,
mmdetection3d's ``SparseEncoder`` and ``make_sparse_convmodule``), running on irregconv's engine:

* :class:`SparseConvTensor` ``(features, indices, spatial_shape, batch_size)`` with ``.features``,
  ``.indices`` (both assignable; int32 or int64), ``.spatial_shape``, ``.batch_size``, ``.indice_dict``,
  :meth:`~SparseConvTensor.replace_feature`, :meth:`~SparseConvTensor.dense`,
  :meth:`~SparseConvTensor.find_indice_pair`;
* ``SubMConv{1,2,3,4}d``, ``SparseConv{1,2,3,4}d``, ``SparseInverseConv{1,2,3,4}d``,
  ``SparseConvTranspose{1,2,3,4}d`` (all subclasses of ``conv.SparseConvolution``), ``SparseMaxPool{1,2,3,4}d``,
  ``SparseAvgPool{1,2,3}d``, :class:`SparseGlobalMaxPool`, :class:`SparseGlobalAvgPool`,
  :class:`SparseSequential`, :class:`ToDense`, :class:`SparseModule`, :class:`ConvAlgo`;
* the submodule paths ``spconv.conv``, ``spconv.core``, ``spconv.modules``, ``spconv.pool`` and
  ``spconv.pytorch`` all name this module, and :func:`install` makes ``import spconv.pytorch`` itself
  return it, so unmodified detector files run against irregconv.

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
  ``groups``); ``algo``, ``fp32_accum`` and ``large_kernel_fast_algo`` select CUDA kernels in spconv
  and are accepted and ignored here; fused activations are not offered (add ``nn.ReLU()``);
* ``torch.nn.BatchNorm1d`` inside :class:`SparseSequential` uses thread-count-independent statistics
  (:func:`irregconv.functional.batch_norm.batch_norm_module_rows`, same formula and buffers).

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
from __future__ import annotations

import enum
import math
import operator
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..functional.sparse_conv import sparse_conv
from ..functional.sparse_pool import global_pool, sparse_pool
from ..nn.sparse.base import SparseConvBase
from ..nn.sparse.sequential import SparseSequential as _RowSequential
from ..nn.sparse.sequential import apply_feature_step, feature_steps
from ..rulebook import KernelRegion
from ..rulebook.region import as_tuple
from ..tensor import Sites, SparseTensor

__all__ = [
    "ConvAlgo", "IndiceData", "SparseConvTensor", "SparseModule", "SparseSequential", "ToDense",
    "SparseConvolution", "SubMConv1d", "SubMConv2d", "SubMConv3d", "SubMConv4d",
    "SparseConv1d", "SparseConv2d", "SparseConv3d", "SparseConv4d",
    "SparseInverseConv1d", "SparseInverseConv2d", "SparseInverseConv3d", "SparseInverseConv4d",
    "SparseConvTranspose1d", "SparseConvTranspose2d", "SparseConvTranspose3d", "SparseConvTranspose4d",
    "SparseMaxPool", "SparseMaxPool1d", "SparseMaxPool2d", "SparseMaxPool3d", "SparseMaxPool4d",
    "SparseAvgPool", "SparseAvgPool1d", "SparseAvgPool2d", "SparseAvgPool3d",
    "SparseGlobalMaxOrAvgPool", "SparseGlobalMaxPool", "SparseGlobalAvgPool",
    "install", "load_spconv_state_dict", "weight_from_native", "weight_to_native",
]

#: the buffer spconv registers on strided convolutions and pools built with ``record_voxel_count=True``
MAX_NUM_VOXELS = "max_num_voxels_during_training"


class ConvAlgo(enum.Enum):
    """spconv's kernel choice; accepted for compatibility and ignored (irregconv has one engine)."""
    Native = 0
    MaskImplicitGemm = 1
    MaskSplitImplicitGemm = 2


# ------------------------------------------------------------------------------------------ weights


def weight_to_native(weight: Tensor, conv1x1: bool = False) -> Tensor:
    """spconv's ``[C_out, *k, C_in]`` -> the engine's ``[K, C_in, C_out]`` (differentiable, contiguous).

    Args:
        weight (Tensor): ``[C_out, *kernel_size, C_in]``.
        conv1x1 (bool): the layer takes spconv's kernel-volume-1 path (``K == 1`` and a submanifold or
            unit-stride convolution), which computes ``features @ weight.view(C_in, C_out)``: the memory
            is read as ``[C_in, C_out]``, not as ``[C_out, C_in]`` (default: False).
    """
    c_out, c_in = weight.size(0), weight.size(-1)
    if conv1x1:
        return weight.reshape(c_in, c_out).unsqueeze(0)
    return weight.reshape(c_out, -1, c_in).permute(1, 2, 0).contiguous()


def weight_from_native(weight: Tensor, kernel_size: Sequence[int], conv1x1: bool = False) -> Tensor:
    """The engine's ``[K, C_in, C_out]`` -> spconv's ``[C_out, *kernel_size, C_in]`` (inverse of
    :func:`weight_to_native`)."""
    _, c_in, c_out = weight.shape
    if conv1x1:
        return weight.reshape(c_out, *kernel_size, c_in).contiguous()
    return weight.permute(2, 0, 1).reshape(c_out, *kernel_size, c_in).contiguous()


def _is_conv1x1(volume: int, stride: Sequence[int], subm: bool) -> bool:
    """spconv's test for its plain-matmul path (and its ``[C_in, C_out]`` reading of the weight)."""
    return volume == 1 and (subm or all(s == 1 for s in stride))


def load_spconv_state_dict(module: nn.Module, state_dict: Mapping, strict: bool = True):
    """Load a spconv-format ``state_dict`` (KRSC weights) into a model built from native irregconv modules.

    Every ``weight`` of an :class:`irregconv.nn.SparseConvBase` submodule is converted with
    :func:`weight_to_native` (honouring spconv's kernel-volume-1 reading); everything else (batch norms,
    biases, ...) loads as it is. Names must match (build the native model with the same structure).

    Returns:
        The ``load_state_dict`` result (missing and unexpected keys).
    """
    converted = dict(state_dict)
    for name, sub in module.named_modules():
        if not isinstance(sub, SparseConvBase):
            continue
        prefix = f"{name}." if name else ""
        if sub.groups != 1:
            raise ValueError(f"load_spconv_state_dict: {name or 'the module'} has groups={sub.groups}; spconv weights "
                             f"are ungrouped and cannot load into it")
        if prefix + "weight" in converted:
            conv1x1 = _is_conv1x1(sub.region.volume, sub.stride, sub.kind in ("subm", "inverse"))
            converted[prefix + "weight"] = weight_to_native(converted[prefix + "weight"], conv1x1)
        # spconv's voxel counter (record_voxel_count=True) is bookkeeping that native modules do not keep
        converted.pop(prefix + MAX_NUM_VOXELS, None)
    return module.load_state_dict(converted, strict=strict)


# -------------------------------------------------------------------------------------- the tensor


@dataclass(frozen=True, eq=False)
class IndiceData:
    """What a layer with an ``indice_key`` recorded: its geometry and the sites it read and wrote.

    ``kind`` is ``"subm"``, ``"strided"`` (convolutions and pools) or ``"transposed"``; ``geometry``
    holds kernel size, stride, padding, dilation (and output padding), as tuples.
    """
    kind: str
    geometry: Tuple[Tuple[int, ...], ...]
    in_sites: Sites
    out_sites: Sites

    @property
    def is_subm(self) -> bool:
        return self.kind == "subm"

    @property
    def ksize(self) -> List[int]:
        return list(self.geometry[0])

    @property
    def indices(self) -> Tensor:
        return self.in_sites.coords

    @property
    def out_indices(self) -> Tensor:
        return self.out_sites.coords

    @property
    def spatial_shape(self) -> List[int]:
        return list(self.in_sites.spatial_shape)

    @property
    def out_spatial_shape(self) -> List[int]:
        return list(self.out_sites.spatial_shape)

    def describe(self) -> str:
        names = ("kernel_size", "dilation") if self.kind == "subm" else \
            ("kernel_size", "stride", "padding", "dilation", "output_padding")
        return f"{self.kind} layer with " + ", ".join(f"{n}={v}" for n, v in zip(names, self.geometry))


def _same_sites(a: Sites, b: Sites) -> bool:
    return a is b or (a.spatial_shape == b.spatial_shape and a.batch_size == b.batch_size and len(a) == len(b)
                      and torch.equal(a.coords, b.coords))


def _describe_sites(sites: Sites) -> str:
    return f"{len(sites)} sites on spatial_shape {list(sites.spatial_shape)} (batch_size {sites.batch_size})"


class SparseConvTensor:
    """spconv's sparse tensor: ``features [N, C]`` on ``indices [N, 1 + D]`` (batch index in column 0).

    Args:
        features (Tensor): ``[N, C]`` floating point.
        indices (Tensor): ``[N, 1 + D]`` int32 or int64 (stored as int32), unique, inside the grid.
        spatial_shape (sequence of int): ``D`` grid extents, in the order of ``indices`` columns 1..
        batch_size (int): ``B``.
        grid, voxel_num: kept as attributes (spconv's TensorRT helpers); unused.
        indice_dict (dict, optional): ``indice_key -> IndiceData`` of earlier layers (default: empty).
        benchmark, permanent_thrust_allocator, enable_timer, force_algo: spconv's CUDA/profiling options,
            accepted and ignored.

    ``features`` and ``indices`` may be reassigned (spconv 1.x style, and the concatenations of VoxelNeXt-like
    code); the coordinate set (hash table, cached rulebooks) is rebuilt and validated the next time a
    layer needs it, also after an in-place change of ``indices``. Rows of ``features`` and ``indices`` must
    agree by then.

    Shapes:
        - features ``[N, C]``, indices ``[N, 1 + D]`` -> :meth:`dense` ``[B, C, *spatial_shape]``.
    """

    def __init__(self, features: Tensor, indices: Tensor, spatial_shape: Sequence[int], batch_size: int,
                 grid: Optional[Tensor] = None, voxel_num: Optional[Tensor] = None,
                 indice_dict: Optional[Dict[str, IndiceData]] = None, benchmark: bool = False,
                 permanent_thrust_allocator: bool = False, enable_timer: bool = False, force_algo=None):
        self.features = features
        self.indices = indices
        try:  # operator.index: ints and numpy ints pass, 8.5 or "8" are refused rather than truncated or parsed
            self.spatial_shape = [operator.index(s) for s in spatial_shape]
        except TypeError:
            raise TypeError(f"SparseConvTensor: spatial_shape must be a sequence of {indices.size(1) - 1} ints, "
                            f"got {spatial_shape!r}") from None
        if len(self.spatial_shape) != indices.size(1) - 1:
            raise ValueError(f"SparseConvTensor: spatial_shape {self.spatial_shape} has {len(self.spatial_shape)} "
                             f"axes but indices has {indices.size(1) - 1} spatial columns (indices "
                             f"{list(indices.shape)}); give one extent per column after the batch index")
        try:
            count = operator.index(batch_size)  # ints, numpy ints and 0-d integer tensors
        except TypeError:
            count = None
        if count is None or isinstance(batch_size, bool) or count <= 0:
            raise ValueError(f"SparseConvTensor: batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = count
        self.indice_dict = {} if indice_dict is None else indice_dict
        self.grid = grid
        self.voxel_num = voxel_num
        self._bound: Optional[Tuple[Tensor, int, Tuple[int, ...], int, Sites]] = None

    # features and indices are assignable, checked on assignment
    @property
    def features(self) -> Tensor:
        return self._features

    @features.setter
    def features(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"SparseConvTensor: features must be a torch.Tensor [N, C], got {type(value).__name__}")
        if value.dim() != 2:
            raise ValueError(f"SparseConvTensor: features must have shape [N, C], got {list(value.shape)}")
        self._features = value

    @property
    def indices(self) -> Tensor:
        return self._indices

    @indices.setter
    def indices(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"SparseConvTensor: indices must be an integer torch.Tensor [N, 1 + D], got "
                            f"{type(value).__name__}")
        if value.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"SparseConvTensor: indices must be int32 or int64, got {value.dtype}")
        if value.dim() != 2 or value.size(1) < 2:
            raise ValueError(f"SparseConvTensor: indices must have shape [N, 1 + D] with the batch index in column 0, "
                             f"got {list(value.shape)}")
        self._indices = value.to(torch.int32)

    @property
    def spatial_size(self) -> int:
        return math.prod(self.spatial_shape)

    def sites(self) -> Sites:
        """The irregconv coordinate set of ``indices`` (hash table and rulebook cache), built and validated
        on first use and again whenever ``indices``, ``spatial_shape`` or ``batch_size`` changed."""
        indices, shape = self._indices, tuple(self.spatial_shape)
        bound = self._bound
        if (bound is not None and bound[0] is indices and bound[1] == indices._version and bound[2] == shape
                and bound[3] == self.batch_size):
            return bound[4]
        if self._features.size(0) != indices.size(0):
            raise ValueError(f"SparseConvTensor: features has {self._features.size(0)} rows but indices has "
                             f"{indices.size(0)}; they must describe the same sites")
        try:
            sites = SparseTensor(self._features, indices, shape, self.batch_size).sites
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"SparseConvTensor.indices: {exc}") from None
        self._bind(sites)
        return sites

    def _bind(self, sites: Sites) -> None:
        self._bound = (self._indices, self._indices._version, tuple(self.spatial_shape), self.batch_size, sites)

    @classmethod
    def _on_sites(cls, features: Tensor, sites: Sites, indice_dict: Dict[str, IndiceData],
                  grid: Optional[Tensor] = None, voxel_num: Optional[Tensor] = None) -> "SparseConvTensor":
        """A tensor on already validated sites (a layer's output): no checks, no hashing."""
        out = cls.__new__(cls)
        out._features, out._indices = features, sites.coords
        out.spatial_shape, out.batch_size = list(sites.spatial_shape), sites.batch_size
        out.indice_dict, out.grid, out.voxel_num = indice_dict, grid, voxel_num
        out._bind(sites)
        return out

    def replace_feature(self, feature: Tensor) -> "SparseConvTensor":
        """A new tensor with ``feature [N, C']`` on the same indices, sharing ``indice_dict`` and sites."""
        out = SparseConvTensor.__new__(SparseConvTensor)
        out.features = feature
        out._indices, out.spatial_shape, out.batch_size = self._indices, list(self.spatial_shape), self.batch_size
        out.indice_dict, out.grid, out.voxel_num, out._bound = self.indice_dict, self.grid, self.voxel_num, self._bound
        return out

    def find_indice_pair(self, key) -> Optional[IndiceData]:
        """The :class:`IndiceData` recorded under ``key`` by an earlier layer, or None."""
        return None if key is None else self.indice_dict.get(key)

    def dense(self, channels_first: bool = True) -> Tensor:
        """``[B, C, *spatial_shape]`` (or channels last) with zeros at inactive sites; differentiable.

        Contiguous, as spconv's: detector code reshapes it with ``.view`` (height compression)."""
        return SparseTensor.from_sites(self._features, self.sites()).dense(channels_first).contiguous()

    @classmethod
    def from_dense(cls, x: Tensor) -> "SparseConvTensor":
        """Sites with any nonzero channel of a channels-last ``x [B, *spatial, C]`` (as spconv's)."""
        native = SparseTensor.from_dense(x.movedim(-1, 1))
        return cls._on_sites(native.feats, native.sites, {})

    def __add__(self, other) -> "SparseConvTensor":
        return self.replace_feature(self._features + (other.features if isinstance(other, SparseConvTensor) else other))

    __radd__ = __add__

    def __repr__(self) -> str:
        return (f"SparseConvTensor[shape={list(self._features.shape)}, spatial_shape={self.spatial_shape}, "
                f"batch_size={self.batch_size}]")


# ------------------------------------------------------------------------------------------ modules


class SparseModule(nn.Module):
    """Marker base as spconv's: :class:`SparseSequential` passes the whole :class:`SparseConvTensor` to these
    modules and only its features to any other module."""

    def __init__(self, name: Optional[str] = None):
        super().__init__()
        self.name = name
        self._sparse_unique_name = ""


class SparseSequential(_RowSequential, SparseModule):
    """spconv's ``SparseSequential``: :class:`SparseModule` children get the :class:`SparseConvTensor`; any
    other module (``BatchNorm1d``, ``ReLU``, ...) gets its features, and is skipped for an empty tensor (as
    in spconv, where a batch norm of zero rows would fail). Accepts modules positionally, as an
    ``OrderedDict``, or as keyword arguments; ``BatchNorm1d`` statistics are thread-count independent."""

    def forward(self, input):
        for module, relu_after in feature_steps(self):
            if isinstance(module, SparseModule) or not isinstance(input, SparseConvTensor):
                input = module(input)
                if relu_after:  # a batch norm given a dense tensor: its ReLU runs as usual
                    input = torch.relu(input)
            elif input.features.size(0):
                input = input.replace_feature(apply_feature_step(module, relu_after, input.features))
        return input

    def add(self, module: nn.Module, name: Optional[str] = None) -> None:
        """Append ``module`` (named ``name``, default its position)."""
        name = str(len(self)) if name is None else name
        if name in self._modules:
            raise KeyError(f"SparseSequential.add: a module named {name!r} exists already")
        self.add_module(name, module)


class ToDense(SparseModule):
    """:class:`SparseConvTensor` ``[N, C]`` -> dense ``[B, C, *spatial_shape]``."""

    def forward(self, input: "SparseConvTensor") -> Tensor:
        if not isinstance(input, SparseConvTensor):
            raise TypeError(f"ToDense: input must be a SparseConvTensor, got {type(input).__name__}")
        return input.dense()


def _check_input(module: nn.Module, input, ndim: int, in_channels: Optional[int]) -> None:
    name = type(module).__name__
    if not isinstance(input, SparseConvTensor):
        raise TypeError(f"{name}: input must be a SparseConvTensor (irregconv.compat.spconv), got "
                        f"{type(input).__name__}")
    if len(input.spatial_shape) != ndim:
        raise ValueError(f"{name}: expects {ndim} spatial axes (indices [N, {1 + ndim}]), got a tensor with "
                         f"spatial_shape {input.spatial_shape}; use the {len(input.spatial_shape)}d variant")
    if in_channels is not None and input.features.size(1) != in_channels:
        raise ValueError(f"{name}: in_channels={in_channels} but the input features have {input.features.size(1)} "
                         f"channels (features {list(input.features.shape)})")


def _keyed_sites(module, input: SparseConvTensor, kind: str, geometry: tuple, sites: Sites) -> Sites:
    """Check this layer against the record under its ``indice_key``; the recorded sites when they match."""
    key = module.indice_key
    record = input.find_indice_pair(key)
    if record is None:
        return sites
    owner = type(module).__name__
    mine = IndiceData(kind, geometry, sites, sites)
    if record.kind != kind or record.geometry != geometry:
        raise ValueError(f"{owner}: indice_key={key!r} was recorded by a {record.describe()}, but this is a "
                         f"{mine.describe()}; one key names one rulebook, so give this layer its own indice_key")
    if not _same_sites(record.in_sites, sites):
        raise ValueError(f"{owner}: indice_key={key!r} was recorded on {_describe_sites(record.in_sites)}, but this "
                         f"input has {_describe_sites(sites)}; a key may only be reused on the same sites (after a "
                         f"strided conv, use a new indice_key)")
    return record.in_sites


def _output(module, input: SparseConvTensor, out: SparseTensor, record: Optional[IndiceData]) -> SparseConvTensor:
    indice_dict = input.indice_dict
    if record is not None and module.indice_key not in indice_dict:
        indice_dict = {**indice_dict, module.indice_key: record}
    result = SparseConvTensor._on_sites(out.feats, out.sites, indice_dict, input.grid, input.voxel_num)
    if module.training and hasattr(module, MAX_NUM_VOXELS):
        counter = getattr(module, MAX_NUM_VOXELS)
        counter.fill_(max(int(counter), out.num_sites))
    return result


class SparseConvolution(SparseModule):
    """Base of the spconv convolution modules (``spconv.conv.SparseConvolution``), with spconv 2.x's signature.

    Args:
        ndim (int): ``D``.
        in_channels, out_channels (int): ``C_in``, ``C_out``.
        kernel_size, stride, padding, dilation (int or sequence): as ``torch.nn.Conv3d``. A submanifold
            convolution's output sites are its input sites: its ``padding`` has no effect (as in spconv,
            where detector code passes ``padding=1``) and its ``stride`` must be 1.
        groups (int): must be 1 (spconv 2.x has no groups).
        bias (bool): (default: True).
        subm, transposed, inverse (bool): which convolution (default: a regular strided one).
        output_padding (int or sequence): transposed convolutions only (default: 0).
        indice_key (str, optional): names the rulebook for reuse checks and inverse convolutions.
        algo, fp32_accum, large_kernel_fast_algo: ignored (spconv's CUDA kernel choice).
        record_voxel_count (bool): keep spconv's ``max_num_voxels_during_training`` buffer (strided and
            transposed convs): the largest output size seen in training (default: False).
        name (str, optional): kept as ``self.name``.

    Attributes:
        weight: ``[C_out, *kernel_size, C_in]`` (spconv's KRSC).
        bias: ``[C_out]`` or None.
    """

    def __init__(self, ndim: int, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, subm: bool = False, output_padding=0,
                 transposed: bool = False, inverse: bool = False, indice_key: Optional[str] = None, algo=None,
                 fp32_accum: Optional[bool] = None, record_voxel_count: bool = False,
                 large_kernel_fast_algo: bool = False, name: Optional[str] = None, device=None, dtype=None):
        super().__init__(name=name)
        owner = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{owner}: {arg} must be a positive int, got {value!r}")
        if groups != 1:
            raise ValueError(f"{owner}: groups={groups!r}, but spconv 2.x convolutions are ungrouped (groups=1); for "
                             f"grouped or depthwise sparse convolution use irregconv.nn.SubMConv3d / SparseConv3d(groups=...)")
        if sum((subm, transposed, inverse)) > 1:
            raise ValueError(f"{owner}: at most one of subm, transposed, inverse may be True, got subm={subm}, "
                             f"transposed={transposed}, inverse={inverse}")
        if inverse and indice_key is None:
            raise ValueError(f"{owner}: an inverse convolution needs indice_key, the key of the strided convolution "
                             f"(or max pool) it inverts")
        self.ndim, self.in_channels, self.out_channels, self.groups = ndim, in_channels, out_channels, groups
        self.kernel_size = list(as_tuple(kernel_size, ndim, "kernel_size", owner))
        self.stride = list(as_tuple(stride, ndim, "stride", owner))
        self.padding = list(as_tuple(padding, ndim, "padding", owner, minimum=0))
        self.dilation = list(as_tuple(dilation, ndim, "dilation", owner))
        self.output_padding = list(as_tuple(output_padding, ndim, "output_padding", owner, minimum=0))
        if subm and any(s != 1 for s in self.stride):
            raise ValueError(f"{owner}: stride={stride!r}, but a submanifold convolution keeps its input sites; "
                             f"use stride=1, or SparseConv{ndim}d to downsample")
        self.subm, self.transposed, self.inverse, self.indice_key = subm, transposed, inverse, indice_key
        self.algo, self.fp32_accum = algo, fp32_accum
        self.region = KernelRegion.cube(self.kernel_size, ndim)
        self.conv1x1 = _is_conv1x1(self.region.volume, self.stride, subm or inverse)
        if self.conv1x1 and not (subm or inverse) and any(self.padding):
            raise ValueError(f"{owner}: padding={padding!r} with kernel volume 1 and stride 1; spconv computes "
                             f"this layer as a plain matmul on the input sites, so padding must be 0")
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, *self.kernel_size, in_channels, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        if record_voxel_count and not (subm or inverse):
            self.register_buffer(MAX_NUM_VOXELS, torch.zeros(1, dtype=torch.int32, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As spconv and ``torch.nn.Conv3d``: uniform in ``+-1/sqrt(fan_in)``, ``fan_in = K * C_in``."""
        bound = 1.0 / math.sqrt(self.region.volume * self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def native_weight(self) -> Tensor:
        """The weight in the engine's ``[K, C_in, C_out]`` layout (differentiable; see :func:`weight_to_native`)."""
        return weight_to_native(self.weight, self.conv1x1)

    @property
    def kind(self) -> str:
        return "subm" if self.subm else "inverse" if self.inverse else "transposed" if self.transposed else "strided"

    def _geometry(self) -> tuple:
        if self.subm:
            return tuple(self.kernel_size), tuple(self.dilation)
        geometry = (tuple(self.kernel_size), tuple(self.stride), tuple(self.padding), tuple(self.dilation))
        return geometry + (tuple(self.output_padding),) if self.transposed else geometry

    def forward(self, input: SparseConvTensor, add_input: Optional[SparseConvTensor] = None) -> SparseConvTensor:
        _check_input(self, input, self.ndim, self.in_channels)
        if input.features.dtype != self.weight.dtype:
            raise TypeError(f"{type(self).__name__}: input features are {input.features.dtype} but the weight is "
                            f"{self.weight.dtype}; cast one of them (e.g. module.to({input.features.dtype}))")
        sites, record = input.sites(), None
        if self.conv1x1 and not self.inverse:
            feats = input.features @ self.native_weight()[0]
            out = SparseTensor.from_sites(feats if self.bias is None else feats + self.bias, sites)
        elif self.inverse:
            out = self._inverse(input, sites)
        else:
            kind, geometry = self.kind, self._geometry()
            if self.indice_key is not None:
                sites = _keyed_sites(self, input, kind, geometry, sites)
            out = sparse_conv(SparseTensor.from_sites(input.features, sites), self.native_weight(), self.bias,
                              self.region, kind, self.stride, self.padding, self.dilation, self.output_padding,
                              owner=type(self).__name__)
            if self.indice_key is not None:
                record = IndiceData(kind, geometry, sites, out.sites)
        if add_input is not None:
            out = out.replace(out.feats + add_input.features)
        return _output(self, input, out, record)

    def _inverse(self, input: SparseConvTensor, sites: Sites) -> SparseTensor:
        """Back onto the input sites of the strided convolution (or max pool) recorded under ``indice_key``."""
        owner, key = type(self).__name__, self.indice_key
        record = input.find_indice_pair(key)
        if record is None:
            raise ValueError(f"{owner}: indice_key={key!r} is not in the input's indice_dict (keys: "
                             f"{sorted(input.indice_dict)}); an inverse convolution must run on features derived "
                             f"from the output of the strided convolution or max pool with that key")
        if record.kind != "strided":
            raise ValueError(f"{owner}: indice_key={key!r} names a {record.describe()}; an inverse convolution "
                             f"inverts a strided convolution or max pool")
        if record.ksize != self.kernel_size:
            raise ValueError(f"{owner}: kernel_size={self.kernel_size}, but the layer recorded under indice_key={key!r} "
                             f"has kernel_size={record.ksize}; an inverse convolution needs the same kernel size")
        if not _same_sites(record.out_sites, sites):
            raise ValueError(f"{owner}: the input has {_describe_sites(sites)}, but the layer recorded under "
                             f"indice_key={key!r} produced {_describe_sites(record.out_sites)}; an inverse "
                             f"convolution must run on the sites that layer produced")
        _, stride, padding, dilation = record.geometry
        return sparse_conv(SparseTensor.from_sites(input.features, record.out_sites), self.native_weight(), self.bias,
                           self.region, "inverse", stride, padding, dilation, owner=owner,
                           inverse_of={"stride": stride, "padding": padding, "dilation": dilation})

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"]
        if not (self.subm or self.inverse):
            parts.append(f"stride={self.stride}")
            if any(self.padding):
                parts.append(f"padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            parts.append(f"dilation={self.dilation}")
        if self.transposed and any(self.output_padding):
            parts.append(f"output_padding={self.output_padding}")
        if self.bias is None:
            parts.append("bias=False")
        if self.indice_key is not None:
            parts.append(f"indice_key={self.indice_key!r}")
        return ", ".join(parts)


class SubMConvNd(SparseConvolution):
    """Submanifold convolution (outputs on the input sites, same row order), spconv's signature."""
    ndim = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 indice_key=None, algo=None, fp32_accum=None, large_kernel_fast_algo=False, name=None):
        super().__init__(type(self).ndim, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, subm=True, indice_key=indice_key, algo=algo, fp32_accum=fp32_accum,
                         large_kernel_fast_algo=large_kernel_fast_algo, name=name)


class SparseConvNd(SparseConvolution):
    """Strided sparse convolution (outputs on every site a kernel tap reaches), spconv's signature."""
    ndim = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 indice_key=None, algo=None, fp32_accum=None, record_voxel_count=False, large_kernel_fast_algo=False,
                 name=None):
        super().__init__(type(self).ndim, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, indice_key=indice_key, algo=algo, fp32_accum=fp32_accum,
                         record_voxel_count=record_voxel_count, large_kernel_fast_algo=large_kernel_fast_algo, name=name)


class SparseConvTransposeNd(SparseConvolution):
    """Generative transposed sparse convolution, spconv's signature."""
    ndim = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 indice_key=None, algo=None, fp32_accum=None, record_voxel_count=False, large_kernel_fast_algo=False,
                 name=None):
        super().__init__(type(self).ndim, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, transposed=True, indice_key=indice_key, algo=algo, fp32_accum=fp32_accum,
                         record_voxel_count=record_voxel_count, large_kernel_fast_algo=large_kernel_fast_algo, name=name)


class SparseInverseConvNd(SparseConvolution):
    """Inverse of the strided convolution (or max pool) recorded under ``indice_key``: back onto its input
    sites and grid, spconv's signature."""
    ndim = 0

    def __init__(self, in_channels, out_channels, kernel_size, indice_key, bias=True, algo=None, fp32_accum=None,
                 large_kernel_fast_algo=False, name=None):
        super().__init__(type(self).ndim, in_channels, out_channels, kernel_size, bias=bias, inverse=True,
                         indice_key=indice_key, algo=algo, fp32_accum=fp32_accum,
                         large_kernel_fast_algo=large_kernel_fast_algo, name=name)


class _SparsePool(SparseModule):
    """Shared body of :class:`SparseMaxPool` and :class:`SparseAvgPool`: the rulebook of a strided convolution
    with this geometry (of a submanifold one with ``subm=True``), reduced with ``reduce`` instead of a weight."""
    reduce: str = ""

    def __init__(self, ndim: int, kernel_size=3, stride=1, padding=0, dilation=1, indice_key: Optional[str] = None,
                 subm: bool = False, algo=None, record_voxel_count: bool = False, name: Optional[str] = None):
        super().__init__(name=name)
        owner = type(self).__name__
        self.ndim, self.subm, self.indice_key, self.algo = ndim, subm, indice_key, algo
        self.kernel_size = list(as_tuple(kernel_size, ndim, "kernel_size", owner))
        self.stride = list(as_tuple(self.kernel_size if stride is None else stride, ndim, "stride", owner))
        self.padding = list(as_tuple(padding, ndim, "padding", owner, minimum=0))
        self.dilation = list(as_tuple(dilation, ndim, "dilation", owner))
        self.region = KernelRegion.cube(self.kernel_size, ndim)
        if record_voxel_count and not subm:
            self.register_buffer(MAX_NUM_VOXELS, torch.zeros(1, dtype=torch.int32))

    def forward(self, input: SparseConvTensor) -> SparseConvTensor:
        _check_input(self, input, self.ndim, None)
        sites, record = input.sites(), None
        kind = "subm" if self.subm else "strided"
        geometry = (tuple(self.kernel_size), tuple(self.dilation)) if self.subm else \
            (tuple(self.kernel_size), tuple(self.stride), tuple(self.padding), tuple(self.dilation))
        if self.indice_key is not None:
            sites = _keyed_sites(self, input, kind, geometry, sites)
        out = sparse_pool(SparseTensor.from_sites(input.features, sites), self.region, self.stride, self.padding,
                          self.dilation, self.reduce, self.subm)
        if self.indice_key is not None:
            record = IndiceData(kind, geometry, sites, out.sites)
        return _output(self, input, out, record)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (f", dilation={self.dilation}" if any(d != 1 for d in self.dilation) else "")
                + (", subm=True" if self.subm else "")
                + (f", indice_key={self.indice_key!r}" if self.indice_key is not None else ""))


class SparseMaxPool(_SparsePool):
    """Max pooling over the active inputs of each window (exact for negative features), on the sites a strided
    convolution with this geometry produces (the input sites with ``subm=True``).

    Args:
        ndim (int): ``D``.
        kernel_size, stride, padding, dilation: as ``torch.nn.MaxPool3d``; ``stride=None`` means
            ``kernel_size``.
        indice_key (str, optional): records the pooling's rulebook, so an inverse convolution can invert it.
        subm (bool): keep the input sites (default: False).
        algo, record_voxel_count, name: as :class:`SparseConvolution`.

    Shapes:
        - input: SparseConvTensor ``features [N_in, C]`` -> output ``features [N_out, C]``.
    """
    reduce = "max"


class SparseAvgPool(_SparsePool):
    """Average pooling, spconv's: the mean of the active inputs of each window (the sum divided by their
    count, not by the kernel volume), on the sites a strided convolution with this geometry produces (the
    input sites with ``subm=True``). The gradient is ``grad_out / count`` to each contributing input.

    Args:
        ndim (int): ``D``.
        kernel_size, stride, padding, dilation: as ``torch.nn.AvgPool3d``; ``stride=None`` means
            ``kernel_size``. Any kernel volume (spconv asserts ``prod(kernel_size) <= 32``).
        indice_key (str, optional): records the pooling's rulebook, so an inverse convolution can invert it.
        subm (bool): keep the input sites (default: False).
        algo: ignored; ``self.algo`` is ``ConvAlgo.MaskImplicitGemm`` as in spconv.
        record_voxel_count, name: as :class:`SparseConvolution`.

    Shapes:
        - input: SparseConvTensor ``features [N_in, C]`` -> output ``features [N_out, C]``.
    """
    reduce = "mean"

    def __init__(self, ndim: int, kernel_size=3, stride=1, padding=0, dilation=1, indice_key: Optional[str] = None,
                 subm: bool = False, algo=None, record_voxel_count: bool = False, name: Optional[str] = None):
        super().__init__(ndim, kernel_size, stride, padding, dilation, indice_key=indice_key, subm=subm,
                         record_voxel_count=record_voxel_count, name=name)
        self.algo = ConvAlgo.MaskImplicitGemm


class _PerDimensionPool:
    """spconv's per-dimension pooling signature (``stride=None`` means ``kernel_size``) in front of a pooling
    class that takes ``ndim`` first; subclasses set ``ndim``."""
    ndim = 0

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, indice_key=None, algo=None,
                 record_voxel_count=False, name=None):
        super().__init__(type(self).ndim, kernel_size, stride, padding, dilation, indice_key=indice_key, algo=algo,
                         record_voxel_count=record_voxel_count, name=name)


class SparseMaxPoolNd(_PerDimensionPool, SparseMaxPool):
    """Per-dimension max pooling with spconv's signature."""


class SparseAvgPoolNd(_PerDimensionPool, SparseAvgPool):
    """Per-dimension average pooling (over the active inputs) with spconv's signature."""


class SparseGlobalMaxOrAvgPool(SparseModule):
    """Per batch item maximum or mean of all active features: SparseConvTensor -> dense ``[B, C]``.

    Rows come in batch-index order; a batch item without sites gives zeros. Unlike spconv 2.3.8, the mean
    keeps every channel (spconv's returns ``[B]``, channel 0 only).

    Args:
        is_mean (bool): the mean (True) or the maximum (False).
        name (str, optional): kept as ``self.name``.

    Shapes:
        - input: SparseConvTensor ``features [N, C]`` with ``batch_size`` ``B`` -> output Tensor ``[B, C]``.
    """

    def __init__(self, is_mean: bool, name: Optional[str] = None):
        super().__init__(name=name)
        if not isinstance(is_mean, bool):
            raise TypeError(f"{type(self).__name__}: is_mean must be a bool (True for the mean, False for the "
                            f"maximum), got {is_mean!r}")
        self.is_mean = is_mean

    def forward(self, input: SparseConvTensor) -> Tensor:
        if not isinstance(input, SparseConvTensor):
            raise TypeError(f"{type(self).__name__}: input must be a SparseConvTensor (irregconv.compat.spconv), got "
                            f"{type(input).__name__}")
        return global_pool(SparseTensor.from_sites(input.features, input.sites()), "mean" if self.is_mean else "max")


class SparseGlobalAvgPool(SparseGlobalMaxOrAvgPool):
    """Per batch item mean: SparseConvTensor ``features [N, C]`` -> ``[B, C]``."""

    def __init__(self, name: Optional[str] = None):
        super().__init__(is_mean=True, name=name)


class SparseGlobalMaxPool(SparseGlobalMaxOrAvgPool):
    """Per batch item maximum: SparseConvTensor ``features [N, C]`` -> ``[B, C]``."""

    def __init__(self, name: Optional[str] = None):
        super().__init__(is_mean=False, name=name)


class SubMConv1d(SubMConvNd):
    ndim = 1


class SubMConv2d(SubMConvNd):
    ndim = 2


class SubMConv3d(SubMConvNd):
    ndim = 3


class SubMConv4d(SubMConvNd):
    ndim = 4


class SparseConv1d(SparseConvNd):
    ndim = 1


class SparseConv2d(SparseConvNd):
    ndim = 2


class SparseConv3d(SparseConvNd):
    ndim = 3


class SparseConv4d(SparseConvNd):
    ndim = 4


class SparseConvTranspose1d(SparseConvTransposeNd):
    ndim = 1


class SparseConvTranspose2d(SparseConvTransposeNd):
    ndim = 2


class SparseConvTranspose3d(SparseConvTransposeNd):
    ndim = 3


class SparseConvTranspose4d(SparseConvTransposeNd):
    ndim = 4


class SparseInverseConv1d(SparseInverseConvNd):
    ndim = 1


class SparseInverseConv2d(SparseInverseConvNd):
    ndim = 2


class SparseInverseConv3d(SparseInverseConvNd):
    ndim = 3


class SparseInverseConv4d(SparseInverseConvNd):
    ndim = 4


class SparseMaxPool1d(SparseMaxPoolNd):
    ndim = 1


class SparseMaxPool2d(SparseMaxPoolNd):
    ndim = 2


class SparseMaxPool3d(SparseMaxPoolNd):
    ndim = 3


class SparseMaxPool4d(SparseMaxPoolNd):
    ndim = 4


class SparseAvgPool1d(SparseAvgPoolNd):
    ndim = 1


class SparseAvgPool2d(SparseAvgPoolNd):
    ndim = 2


class SparseAvgPool3d(SparseAvgPoolNd):
    ndim = 3


#: spconv's ``pool.ALL_POOL_LAYERS``: the pooling modules that take a SparseConvTensor to a SparseConvTensor
ALL_POOL_LAYERS = {SparseAvgPool3d, SparseAvgPool2d, SparseAvgPool1d, SparseMaxPool1d, SparseMaxPool2d,
                   SparseMaxPool3d, SparseMaxPool4d, SparseAvgPool, SparseMaxPool}


# spconv's submodule paths (spconv.pytorch.conv.SparseConvolution, spconv.pytorch.core.SparseConvTensor,
# spconv.pytorch.modules.SparseModule, spconv.pytorch.pool.SparseMaxPool3d) all name this one module
pytorch = conv = core = modules = pool = sys.modules[__name__]

#: the module names :func:`install` points at this module
SPCONV_MODULE_NAMES = ("spconv", "spconv.core", "spconv.pytorch", "spconv.pytorch.conv", "spconv.pytorch.core",
                       "spconv.pytorch.modules", "spconv.pytorch.pool")


def install() -> None:
    """Make ``import spconv.pytorch as spconv`` (and ``spconv.pytorch.conv``, ``.core``, ``.modules``,
    ``.pool``, ``spconv.core``) return this module, so detector files run unmodified on irregconv.

    It replaces entries of ``sys.modules``: call it before the detector code is imported, and only in a
    process that does not also need the real spconv.
    """
    for name in SPCONV_MODULE_NAMES:
        sys.modules[name] = sys.modules[__name__]

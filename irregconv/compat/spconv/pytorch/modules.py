"""``spconv.pytorch.modules``: the marker base :class:`SparseModule`, the container :class:`SparseSequential`,
the feature-wise modules :class:`SparseBatchNorm`, :class:`SparseSyncBatchNorm`, :class:`SparseReLU`,
:class:`SparseIdentity`, the adapters :class:`ToDense` and :class:`RemoveGrid`, and spconv's module tests
:func:`is_spconv_module`, :func:`is_sparse_conv`, :func:`assign_name_for_sparse_modules`.

Feature-wise modules take a :class:`~.core.SparseConvTensor` (their torch module runs on its features, the
sites are kept) or a plain tensor (the torch module runs on it), as spconv's.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ....functional.batch_norm import batch_norm_module_rows
from ....nn.sparse.sequential import SparseSequential as _RowSequential
from ....nn.sparse.sequential import apply_feature_step, feature_steps
from .core import SparseConvTensor

__all__ = ["RemoveGrid", "SparseBatchNorm", "SparseIdentity", "SparseModule", "SparseReLU", "SparseSequential",
           "SparseSyncBatchNorm", "ToDense", "assign_name_for_sparse_modules", "is_sparse_conv",
           "is_spconv_module"]


class SparseModule(nn.Module):
    """Marker base as spconv's: :class:`SparseSequential` passes the whole :class:`SparseConvTensor` to these
    modules and only its features to any other module."""

    def __init__(self, name: Optional[str] = None):
        super().__init__()
        self.name = name
        self._sparse_unique_name = ""


class SparseSequential(_RowSequential, SparseModule):
    """spconv's ``SparseSequential``: :class:`SparseModule` children get the :class:`SparseConvTensor`; any
    other module (``BatchNorm1d``, ``ReLU``, :class:`SparseBatchNorm`, :class:`SparseReLU`, ...) gets its
    features, and is skipped for an empty tensor (as in spconv, where a batch norm of zero rows would fail;
    spconv calls its ``SparseBatchNorm`` and ``SparseReLU`` on the whole tensor, which computes the same).
    Accepts modules positionally, as an ``OrderedDict``, or as keyword arguments; ``BatchNorm1d``
    statistics are thread-count independent."""

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


class RemoveGrid(SparseModule):
    """Drops the tensor's pre-allocated ``grid`` (spconv's CUDA buffer; here an unused attribute): returns the
    same tensor with ``grid = None``."""

    def forward(self, input: SparseConvTensor) -> SparseConvTensor:
        if not isinstance(input, SparseConvTensor):
            raise TypeError(f"RemoveGrid: input must be a SparseConvTensor, got {type(input).__name__}")
        input.grid = None
        return input


class _FeatureModule:
    """Runs the torch module it is mixed into on a SparseConvTensor's features (keeping the sites) or on a
    plain tensor; subclasses may compute the features another way in :meth:`forward_features`."""

    def forward(self, input):
        if isinstance(input, SparseConvTensor):
            return input.replace_feature(self.forward_features(input.features))
        if isinstance(input, Tensor):
            return super().forward(input)
        raise TypeError(f"{type(self).__name__}: input must be a SparseConvTensor or a torch.Tensor, got "
                        f"{type(input).__name__}")

    def forward_features(self, features: Tensor) -> Tensor:
        return super().forward(features)


class SparseBatchNorm(_FeatureModule, nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` (same arguments, parameters and buffers) over the features ``[N, C]`` of a
    SparseConvTensor, with statistics that are bit-identical for any thread count
    (:func:`~irregconv.functional.batch_norm.batch_norm_module_rows`); a plain tensor goes through
    ``BatchNorm1d`` itself.

    Shapes:
        - input: SparseConvTensor ``features [N, C]`` -> output on the same sites ``[N, C]``.
    """

    def forward_features(self, features: Tensor) -> Tensor:
        return batch_norm_module_rows(self, features)


class SparseSyncBatchNorm(_FeatureModule, nn.SyncBatchNorm):
    """``torch.nn.SyncBatchNorm`` over the features ``[N, C]`` of a SparseConvTensor (statistics synchronised
    across the process group in distributed training, a plain batch norm otherwise).

    Shapes:
        - input: SparseConvTensor ``features [N, C]`` -> output on the same sites ``[N, C]``.
    """


class SparseReLU(_FeatureModule, nn.ReLU):
    """``torch.nn.ReLU`` over the features of a SparseConvTensor (sites kept) or a plain tensor."""


class SparseIdentity(_FeatureModule, nn.Identity):
    """``torch.nn.Identity`` over the features of a SparseConvTensor: a new tensor object on the same sites with
    the same features (as spconv's); a plain tensor is returned as it is."""


def is_spconv_module(module: nn.Module) -> bool:
    """True for the modules that take a whole SparseConvTensor in spconv's containers: :class:`SparseModule`
    subclasses (convolutions, pools, containers, tables), :class:`SparseBatchNorm` and :class:`SparseReLU`
    (spconv's list; :class:`SparseIdentity` is left out there too)."""
    return isinstance(module, (SparseModule, SparseBatchNorm, SparseReLU))


def is_sparse_conv(module: nn.Module) -> bool:
    """True for the sparse convolutions (subclasses of :class:`~.conv.SparseConvolution`)."""
    from .conv import SparseConvolution  # conv builds on this module
    return isinstance(module, SparseConvolution)


def assign_name_for_sparse_modules(module: nn.Module) -> None:
    """Set ``_sparse_unique_name`` of every :class:`SparseModule` inside ``module`` to its qualified name in
    ``module.named_modules()`` (spconv's debugging and quantisation tools read it)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"assign_name_for_sparse_modules: module must be a torch.nn.Module, got "
                        f"{type(module).__name__}")
    for name, sub in module.named_modules():
        if isinstance(sub, SparseModule):
            sub._sparse_unique_name = name

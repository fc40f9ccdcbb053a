"""spconv's parameter layout and irregconv's: weight conversions and loading spconv checkpoints into native models.

spconv 2.x stores a convolution's ``weight`` as ``[C_out, *kernel_size, C_in]`` (KRSC); the engine multiplies by
``[K, C_in, C_out]``, one GEMM per kernel offset. The drop-in's modules keep spconv's layout as parameters (a
spconv ``state_dict`` loads unchanged) and convert with :func:`weight_to_native` in ``forward``;
:func:`load_spconv_state_dict` converts once, for models built from :mod:`irregconv.nn` modules.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

from torch import Tensor, nn

from ...nn.sparse.base import SparseConvBase

__all__ = ["MAX_NUM_VOXELS", "load_spconv_state_dict", "weight_from_native", "weight_to_native"]

#: the buffer spconv registers on strided convolutions and pools built with ``record_voxel_count=True``
MAX_NUM_VOXELS = "max_num_voxels_during_training"


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


def is_conv1x1(volume: int, stride: Sequence[int], subm: bool) -> bool:
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
            conv1x1 = is_conv1x1(sub.region.volume, sub.stride, sub.kind in ("subm", "inverse"))
            converted[prefix + "weight"] = weight_to_native(converted[prefix + "weight"], conv1x1)
        # spconv's voxel counter (record_voxel_count=True) is bookkeeping that native modules do not keep
        converted.pop(prefix + MAX_NUM_VOXELS, None)
    return module.load_state_dict(converted, strict=strict)


"""SECOND-style 8x sparse 3D backbone (Yan, Mao & Li, "SECOND: Sparsely Embedded Convolutional Detection",
Sensors 18(10):3337, 2018), in the layout detectors use as ``VoxelBackBone8x``.

Gather -> compute -> scatter throughout: submanifold convolutions reuse one rulebook per resolution (their
sites never change), and each strided convolution builds the rulebook to a coarser set of sites; after every
convolution a ``BatchNorm1d`` and a ``ReLU`` act on the feature rows.

Layers (``SECOND_8X_LAYERS``): SubM ``C_in -> 16``, SubM ``16 -> 16``; SparseConv ``16 -> 32`` stride 2
padding 1, 2 x SubM 32; SparseConv ``32 -> 64`` stride 2 padding 1, 2 x SubM 64; SparseConv ``64 -> 64``
stride 2 padding ``(0, 1, 1)``, 2 x SubM 64; SparseConv ``64 -> 128`` kernel ``(3, 1, 1)`` stride
``(2, 1, 1)``. On a ``(Z, Y, X) = (41, 1600, 1408)`` grid the output grid is ``(2, 200, 176)``.

The same network is built twice from one layer table: :class:`SECONDBackbone8x` with native irregconv
modules, and :func:`spconv_second_backbone_8x` against the spconv 2.x API (real ``spconv.pytorch`` or
:mod:`irregconv.compat.spconv`, with OpenPCDet's ``indice_key`` names). Both have the same parameter names;
:func:`irregconv.compat.spconv.load_spconv_state_dict` loads the spconv model's weights into the native one.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List

from torch import nn

from ..nn.sparse import SparseConv3d, SparseSequential, SubMConv3d

#: ``(stage, kind, C_out, kernel_size, stride, padding, indice_key)``; ``C_in`` is the previous layer's ``C_out``
SECOND_8X_LAYERS = (
    ("conv_input", "subm", 16, 3, 1, 1, "subm1"),
    ("conv1", "subm", 16, 3, 1, 1, "subm1"),
    ("conv2", "strided", 32, 3, 2, 1, "spconv2"),
    ("conv2", "subm", 32, 3, 1, 1, "subm2"),
    ("conv2", "subm", 32, 3, 1, 1, "subm2"),
    ("conv3", "strided", 64, 3, 2, 1, "spconv3"),
    ("conv3", "subm", 64, 3, 1, 1, "subm3"),
    ("conv3", "subm", 64, 3, 1, 1, "subm3"),
    ("conv4", "strided", 64, 3, 2, (0, 1, 1), "spconv4"),
    ("conv4", "subm", 64, 3, 1, 1, "subm4"),
    ("conv4", "subm", 64, 3, 1, 1, "subm4"),
    ("conv_out", "strided", 128, (3, 1, 1), (2, 1, 1), 0, "spconv_down2"),
)
OUT_CHANNELS = 128
#: batch-norm settings of OpenPCDet's backbones
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


def _stages(make_conv: Callable, make_sequential: Callable, in_channels: int) -> Dict[str, nn.Module]:
    """The stages of :data:`SECOND_8X_LAYERS`, each a sequence of (conv, BatchNorm1d, ReLU) blocks."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels <= 0:
        raise ValueError(f"SECOND backbone: in_channels must be a positive int, got {in_channels!r}")
    blocks: Dict[str, List[nn.Module]] = OrderedDict()
    c_in = in_channels
    for stage, kind, c_out, kernel, stride, padding, key in SECOND_8X_LAYERS:
        conv = make_conv(kind, c_in, c_out, kernel, stride, padding, key)
        blocks.setdefault(stage, []).append(
            make_sequential(conv, nn.BatchNorm1d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM), nn.ReLU()))
        c_in = c_out
    return OrderedDict((stage, make_sequential(*layers)) for stage, layers in blocks.items())


def _native_conv(kind, c_in, c_out, kernel, stride, padding, key):
    if kind == "subm":
        return SubMConv3d(c_in, c_out, kernel, bias=False)
    return SparseConv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)


class SECONDBackbone8x(SparseSequential):
    """SECOND-style sparse encoder with native modules: ``[N, C_in]`` voxels on ``(Z, Y, X)`` -> ``[N', 128]``
    on a grid 8x coarser in ``Y`` and ``X`` (see the module docstring for the layers).

    Submodules ``conv_input``, ``conv1`` .. ``conv4``, ``conv_out`` are :class:`~irregconv.nn.SparseSequential`
    stages of (conv, ``BatchNorm1d(eps=1e-3, momentum=0.01)``, ``ReLU``) blocks; convolutions have no bias.

    Args:
        in_channels (int): ``C_in``, point features per voxel (default: 4, x y z intensity).

    Shapes:
        - input: SparseTensor ``feats [N, C_in]``, ``coords [N, 4]`` ``(b, z, y, x)`` on ``(Z, Y, X)``
        - output: SparseTensor ``feats [N', 128]`` on ``(Z', ceil(Y / 8), ceil(X / 8))`` (per axis, the
          convolution output-size formula of each strided layer).

    Example:
        >>> import torch, irregconv
        >>> x = irregconv.SparseTensor(torch.rand(2, 4), torch.tensor([[0, 20, 30, 30], [0, 21, 31, 30]]),
        ...                            spatial_shape=(41, 64, 64))
        >>> SECONDBackbone8x()(x).spatial_shape
        (2, 8, 8)
    """

    def __init__(self, in_channels: int = 4):
        super().__init__(_stages(_native_conv, SparseSequential, in_channels))
        self.in_channels, self.out_channels = in_channels, OUT_CHANNELS


def spconv_second_backbone_8x(spconv, in_channels: int = 4) -> nn.Module:
    """The same backbone written against the spconv 2.x API, with OpenPCDet's ``indice_key`` names.

    Args:
        spconv (module): ``spconv.pytorch`` or :mod:`irregconv.compat.spconv`.
        in_channels (int): ``C_in`` (default: 4).

    Returns:
        ``spconv.SparseSequential`` taking and returning a ``spconv.SparseConvTensor``; its parameter
        names equal :class:`SECONDBackbone8x`'s (weights in spconv's ``[C_out, *k, C_in]`` layout).
    """
    def make_conv(kind, c_in, c_out, kernel, stride, padding, key):
        if kind == "subm":
            return spconv.SubMConv3d(c_in, c_out, kernel, padding=padding, bias=False, indice_key=key)
        return spconv.SparseConv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False, indice_key=key)
    return spconv.SparseSequential(_stages(make_conv, spconv.SparseSequential, in_channels))

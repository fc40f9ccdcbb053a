"""Sparse depthwise separable convolution: a submanifold depthwise conv, then a pointwise (1x1x1) conv.

Papers: "Xception: Deep Learning with Depthwise Separable Convolutions", Chollet, CVPR 2017,
arXiv:1610.02357; "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
Howard et al., 2017, arXiv:1704.04861.

Gather -> compute -> scatter, twice over the same sites: the depthwise step runs the submanifold rulebook
(cached on the sites) with a grouped weight ``[K, C_in, 1, M]`` (each channel filtered on its own, ``G = C_in``);
the pointwise step is the one-offset identity rulebook (a plain matmul, no gather or scatter) mixing the
``C_in * M`` channels into ``C_out``. ``K * C_in * M + C_in * M * C_out`` weights instead of
``K * C_in * C_out``.
"""
from __future__ import annotations

from typing import Union

from ...rulebook import KernelRegion
from ...tensor import SparseTensor
from ..dense._args import check_int
from .base import SparseModule, check_sparse_input
from .subm_conv import SubMConv3d


class SparseDepthwiseSeparableConv3d(SparseModule):
    r"""Submanifold depthwise 3-D convolution followed by a pointwise convolution, on the input sites.

    .. math::
        z_{o,c,m} = \sum_k w^{dw}_{k,c,m}\, x_{o + \delta_k, c}, \qquad
        y_o = (W^{pw})^{\top} z_o + b

    where ``k`` runs over the active neighbours of ``o`` (submanifold semantics, as
    :class:`~irregconv.nn.SubMConv3d`). As in Xception's separable convolution there is no normalisation
    or activation between the two steps (add them around the module); the depthwise step has no bias.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): depthwise kernel (default: 3).
        dilation (int or tuple): depthwise dilation (default: 1).
        depth_multiplier (int): ``M`` depthwise filters per input channel (default: 1).
        bias (bool): bias of the pointwise step (default: True).
        region (str or KernelRegion): depthwise taps: ``"cube"``, ``"cross"`` or custom (default: ``"cube"``).

    Shapes:
        - input: SparseTensor ``feats [N, C_in]``, ``coords [N, 1 + 3]``
        - output: SparseTensor ``feats [N, C_out]`` on the same sites (same row order).

    Attributes:
        depthwise (SubMConv3d): weight ``[K, C_in, 1, M]``, no bias.
        pointwise (SubMConv3d): kernel 1, weight ``[1, C_in * M, C_out]``, bias ``[C_out]``.

    Example:
        >>> import torch, irregconv
        >>> x = irregconv.SparseTensor(torch.randn(3, 4), torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [1, 2, 2, 2]]))
        >>> SparseDepthwiseSeparableConv3d(4, 8)(x).feats.shape
        torch.Size([3, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, dilation=1, depth_multiplier: int = 1,
                 bias: bool = True, region: Union[str, KernelRegion] = "cube"):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        self.depth_multiplier = check_int(owner, "depth_multiplier", depth_multiplier)
        hidden = in_channels * depth_multiplier
        self.depthwise = SubMConv3d(in_channels, hidden, kernel_size, dilation, groups=in_channels, bias=False,
                                    region=region)
        self.pointwise = SubMConv3d(hidden, out_channels, 1, bias=bias)

    def reset_parameters(self) -> None:
        self.depthwise.reset_parameters()
        self.pointwise.reset_parameters()

    def forward(self, input: SparseTensor) -> SparseTensor:
        check_sparse_input(self, input, 3, self.in_channels)
        return self.pointwise(self.depthwise(input))

    def extra_repr(self) -> str:
        dw = self.depthwise
        parts = [f"{self.in_channels}, {self.out_channels}, kernel_size={dw.kernel_size}"]
        if any(d != 1 for d in dw.dilation):
            parts.append(f"dilation={dw.dilation}")
        if self.depth_multiplier != 1:
            parts.append(f"depth_multiplier={self.depth_multiplier}")
        if dw.region.kind != "cube":
            parts.append(f"region={dw.region.kind}")
        if self.pointwise.bias is None:
            parts.append("bias=False")
        return ", ".join(parts)

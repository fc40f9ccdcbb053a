"""ODConv: omni-dimensional dynamic convolution, four attentions over the kernel space.

Paper: "Omni-Dimensional Dynamic Convolution", Li, Zhou, Yao, ICLR 2022, arXiv:2209.07947.

Gather -> compute -> scatter: the dense-grid rulebook is shared by all samples. The spatial
attention scales each kernel offset (one rulebook offset each) and the kernel-wise attention mixes
the bank, so the compute step of sample ``b`` uses its own kernel; the input-channel attention
scales the gathered rows and the output-channel attention the scattered sums.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._kernel_attention import KernelBank
from ._args import IntOrPair, check_float, check_input, check_int
from ._dynamic import ExpertConv2d, per_sample_conv2d


class ODConv2d(KernelBank, ExpertConv2d):
    r"""Omni-dimensional dynamic 2-D convolution (ODConv).

    .. math::
        y = \Big(\sum_{k=1}^{K} \alpha_{wk} \odot \alpha_f \odot \alpha_c \odot \alpha_s \odot W_k\Big) * x

    with four attentions computed from ``GAP(x)`` by a shared ``Linear -> BatchNorm -> ReLU`` trunk
    and four heads: spatial ``alpha_s`` (``kh * kw``, sigmoid), input-channel ``alpha_c``
    (``C_in``, sigmoid), output-channel ``alpha_f`` (``C_out``, sigmoid) and kernel-wise
    ``alpha_w`` (``K``, softmax), every logit divided by ``temperature``. ``alpha_c`` is applied to
    the input and ``alpha_f`` to the output, which equals applying them to the kernel. No bias, as
    in the paper. In training mode the trunk's batch norm normalises over the batch, so it needs
    ``B > 1`` (as in the authors' code).

    Args:
        in_channels, out_channels (int): ``C_in``, ``C_out``.
        kernel_size, stride, dilation (int or tuple): as in :class:`torch.nn.Conv2d` (default: 3, 1, 1).
        padding (int, tuple or None): zero padding; None (default) keeps ``H x W`` at stride 1 for odd kernels.
        groups (int): channel groups ``G`` (default: 1).
        num_kernels (int): kernels ``K`` in the bank (default: 4, the paper's ODConv (4x)).
        reduction (float): hidden width of the attention trunk, ``max(int(C_in * reduction),
            min_channels)`` (default: 0.0625, as in the paper).
        min_channels (int): lower bound of that width (default: 16).
        temperature (float): softmax / sigmoid temperature (default: 1.0).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` with
        ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``H_out = H`` with the defaults).

    Attributes:
        weight (Tensor): ``[K, C_out, C_in / G, kh, kw]``.
        trunk (nn.Sequential): ``Linear(C_in, A, bias=False) -> BatchNorm1d(A) -> ReLU``.
        channel_head, filter_head, spatial_head, kernel_head (nn.Linear): ``A -> C_in``,
            ``A -> C_out``, ``A -> kh * kw``, ``A -> K``.

    Example:
        >>> conv = ODConv2d(8, 16)
        >>> conv(torch.randn(2, 8, 10, 10)).shape
        torch.Size([2, 16, 10, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3,
                 stride: IntOrPair = 1, padding: Optional[IntOrPair] = None, dilation: IntOrPair = 1,
                 groups: int = 1, num_kernels: int = 4, reduction: float = 0.0625, min_channels: int = 16,
                 temperature: float = 1.0):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         False, num_kernels, experts_name="num_kernels")
        self.reduction = check_float("ODConv2d", "reduction", reduction, 0.0, float("inf"))
        check_int("ODConv2d", "min_channels", min_channels)
        self.temperature = check_float("ODConv2d", "temperature", temperature, 1e-6, float("inf"))
        hidden = max(int(in_channels * reduction), min_channels)
        self.trunk = nn.Sequential(nn.Linear(in_channels, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU())
        self.channel_head = nn.Linear(hidden, in_channels)
        self.filter_head = nn.Linear(hidden, out_channels)
        self.spatial_head = nn.Linear(hidden, self.kernel_size[0] * self.kernel_size[1])
        self.kernel_head = nn.Linear(hidden, num_kernels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for module in (*self.trunk, self.channel_head, self.filter_head, self.spatial_head, self.kernel_head):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def attentions(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four attentions of ``x [B, C_in, H, W]``: spatial ``[B, kh * kw]``, input-channel
        ``[B, C_in]``, output-channel ``[B, C_out]`` and kernel-wise ``[B, K]`` (rows sum to 1)."""
        z = self.trunk(x.mean(dim=(2, 3)))
        t = self.temperature
        return (torch.sigmoid(self.spatial_head(z) / t), torch.sigmoid(self.channel_head(z) / t),
                torch.sigmoid(self.filter_head(z) / t), F.softmax(self.kernel_head(z) / t, dim=1))

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        spatial, channel, filters, kernel = self.attentions(x)
        bank = self.weight.flatten(3)  # [K, C_out, C_in / G, kh * kw]
        weight = torch.einsum("bk,kocs,bs->bocs", kernel, bank, spatial).reshape(-1, *self.weight.shape[1:])
        out = per_sample_conv2d(x * channel[:, :, None, None], weight, None, self.stride, self.padding,
                                self.dilation, self.groups)
        return out * filters[:, :, None, None]

    def _sample_macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one sample: attentions, kernel assembly
        (kernel-wise then spatial), the conv, and the input / output channel scalings."""
        h_out, w_out = self.output_size((height, width))
        heads = sum(h.weight.numel() for h in (self.channel_head, self.filter_head, self.spatial_head,
                                               self.kernel_head))
        assembly = self.weight.numel() + self.weight[0].numel()
        scaling = self.in_channels * height * width + self.out_channels * h_out * w_out
        return self.trunk[0].weight.numel() + heads + assembly + self.conv_macs((height, width)) + scaling

    def extra_repr(self) -> str:
        s = super().extra_repr().replace(", bias=False", "")
        return s if self.temperature == 1.0 else s + f", temperature={self.temperature:g}"

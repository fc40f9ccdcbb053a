"""Diverse Branch Block (DBB): four Inception-like branches that fold into one ``k x k`` conv.

Paper: "Diverse Branch Block: Building a Convolution as an Inception-like Unit", Ding, Zhang, Han,
Ding, CVPR 2021, arXiv:2103.13425.

Gather -> compute -> scatter: every branch is linear in the input and lives on (a subset of) the
``k x k`` dense rulebook: the 1x1 branch uses only the centre offset, average pooling is a
constant weight over all ``k x k`` offsets, and a 1x1 conv followed by a ``k x k`` one is a
product of weights per offset. In eval mode the four weights add up to one: :meth:`fuse`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_input, check_int, check_odd, conv_extra_repr, to_pair
from ._counting import CountingMixin
from ._dynamic import conv_output_size
from ._reparam import conv_from, fold_batch_norm


def _conv(c_in: int, c_out: int, size: int, stride: IntOrPair = 1, padding: int = 0) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, size, stride, padding, bias=False)


class DiverseBranchBlock2d(CountingMixin, nn.Module):
    r"""Diverse Branch Block: ``k x k``, ``1 x 1``, ``1 x 1 -> avg-pool`` and ``1 x 1 -> k x k``
    branches, each ending in batch norm, summed.

    .. math::
        y = \mathrm{BN}(W_{k} * x) + \mathrm{BN}(W_1 * x)
          + \mathrm{BN}(\mathrm{Avg}_k(\mathrm{BN}(W_1' * \tilde x)))
          + \mathrm{BN}(W_{k}' * \mathrm{BN}(W_1'' * \tilde x))

    where ``x~`` is ``x`` zero-padded by ``k // 2``. The two composite branches see the padded input
    (so their inner batch norm also fills the border, as the paper's "BN-and-pad" layer arranges)
    and then run their ``k x k`` stage without padding; this keeps every branch an exact ``k x k``
    conv of ``x`` with padding ``k // 2``, so in eval mode :meth:`fuse` returns one ``nn.Conv2d``
    equal to the block. In training mode the inner batch norms' statistics include the border.
    The ``1 x 1`` conv of the last branch starts as the identity when ``internal_channels ==
    C_in`` (the paper's identity-based 1x1). Counts are those of the training-time block.

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out``.
        kernel_size (int): odd kernel size ``k`` (default: 3).
        stride (int or tuple): stride (default: 1).
        internal_channels (int or None): width ``M`` of the ``1 x 1 -> k x k`` branch; None means
            ``C_in``, as in the paper (default: None).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H - 1) / s) + 1``
        (``H_out = H`` at stride 1).

    Attributes:
        kxk, one, avg_1x1, seq_1x1, seq_kxk (nn.Conv2d): weights ``[C_out, C_in, k, k]``,
            ``[C_out, C_in, 1, 1]``, ``[C_out, C_in, 1, 1]``, ``[M, C_in, 1, 1]``, ``[C_out, M, k, k]``.
        kxk_bn, one_bn, avg_1x1_bn, avg_bn, seq_1x1_bn, seq_kxk_bn (nn.BatchNorm2d).

    Example:
        >>> block = DiverseBranchBlock2d(8, 16).eval()
        >>> x = torch.randn(2, 8, 10, 10)
        >>> torch.allclose(block.fuse()(x), block(x), atol=1e-5)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: IntOrPair = 1,
                 internal_channels: Optional[int] = None):
        super().__init__()
        owner = "DiverseBranchBlock2d"
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        k = check_odd(owner, "kernel_size", kernel_size, "every branch is centred")
        self.kernel_size = (k, k)
        self.stride = to_pair(owner, "stride", stride)
        self.padding = (k // 2, k // 2)
        m = in_channels if internal_channels is None else check_int(owner, "internal_channels", internal_channels)
        self.internal_channels = m
        self.kxk, self.kxk_bn = _conv(in_channels, out_channels, k, self.stride, k // 2), nn.BatchNorm2d(out_channels)
        self.one, self.one_bn = _conv(in_channels, out_channels, 1, self.stride), nn.BatchNorm2d(out_channels)
        self.avg_1x1, self.avg_1x1_bn = _conv(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels)
        self.avg_bn = nn.BatchNorm2d(out_channels)
        self.seq_1x1, self.seq_1x1_bn = _conv(in_channels, m, 1), nn.BatchNorm2d(m)
        self.seq_kxk, self.seq_kxk_bn = _conv(m, out_channels, k, self.stride), nn.BatchNorm2d(out_channels)
        if m == in_channels:
            with torch.no_grad():
                self.seq_1x1.weight.copy_(torch.eye(m).reshape(m, m, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        p = self.padding[0]
        padded = F.pad(x, (p, p, p, p))
        out = self.kxk_bn(self.kxk(x)) + self.one_bn(self.one(x))
        avg = F.avg_pool2d(self.avg_1x1_bn(self.avg_1x1(padded)), self.kernel_size, self.stride)
        out = out + self.avg_bn(avg)
        return out + self.seq_kxk_bn(self.seq_kxk(self.seq_1x1_bn(self.seq_1x1(padded))))

    def fuse(self) -> nn.Conv2d:
        """The single ``k x k`` conv (with bias) equal to this block in eval mode (running statistics
        of every batch norm). The block itself is left unchanged."""
        k, p = self.kernel_size[0], self.padding[0]
        with torch.no_grad():
            weight, bias = fold_batch_norm(self.kxk.weight, None, self.kxk_bn)
            w, b = fold_batch_norm(self.one.weight, None, self.one_bn)
            weight, bias = weight + F.pad(w, (p, p, p, p)), bias + b
            # Average pooling is the kernel 1 / k^2 at every tap; the 1x1 stage's bias stays constant.
            w, b = fold_batch_norm(self.avg_1x1.weight, None, self.avg_1x1_bn)
            w, b = fold_batch_norm(w.expand(-1, -1, k, k) / (k * k), b, self.avg_bn)
            weight, bias = weight + w, bias + b
            # 1x1 then k x k: weights compose per tap; the 1x1 stage's bias passes through every tap.
            w1, b1 = fold_batch_norm(self.seq_1x1.weight, None, self.seq_1x1_bn)
            w2 = self.seq_kxk.weight
            w = torch.einsum("omhw,mi->oihw", w2, w1[:, :, 0, 0])
            w, b = fold_batch_norm(w, torch.einsum("omhw,m->o", w2, b1), self.seq_kxk_bn)
            weight, bias = weight + w, bias + b
        return conv_from(weight, bias, self.stride, self.padding)

    def _sample_macs(self, height: int, width: int) -> int:
        h_out, w_out = conv_output_size((height, width), self.kernel_size, self.stride, self.padding, (1, 1))
        padded = (height + 2 * self.padding[0]) * (width + 2 * self.padding[1])
        per_output = self.kxk.weight.numel() + self.one.weight.numel() + self.seq_kxk.weight.numel()
        per_padded_input = self.avg_1x1.weight.numel() + self.seq_1x1.weight.numel()
        return h_out * w_out * per_output + padded * per_padded_input

    def extra_repr(self) -> str:
        s = conv_extra_repr(self)
        return s if self.internal_channels == self.in_channels else s + f", internal_channels={self.internal_channels}"

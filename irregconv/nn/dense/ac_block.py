"""ACNet's asymmetric convolution block: square, horizontal and vertical kernels, summed.

Paper: "ACNet: Strengthening the Kernel Skeletons for Powerful CNN via Asymmetric Convolution
Blocks", Ding, Guo, Ding, Han, ICCV 2019, arXiv:1908.03930.

Gather -> compute -> scatter: the ``1 x k`` and ``k x 1`` kernels use a subset of the ``k x k``
rulebook's offsets (the centre row and column), so the three branches are three weights on one
rulebook. With batch norm in eval mode they add up to one ``k x k`` weight: :meth:`ACBlock2d.fuse`.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_divisible, check_input, check_int, check_odd, conv_extra_repr, to_pair
from ._counting import CountingMixin
from ._dynamic import conv_output_size
from ._reparam import conv_from, fold_batch_norm


class ACBlock2d(CountingMixin, nn.Module):
    r"""Asymmetric convolution block (ACNet): ``k x k``, ``1 x k`` and ``k x 1`` convs, each with
    batch norm, summed.

    .. math::
        y = \mathrm{BN}_s(W_s * x) + \mathrm{BN}_h(W_h * x) + \mathrm{BN}_v(W_v * x)

    The horizontal and vertical kernels are centred on the square one (padding ``(0, k // 2)`` and
    ``(k // 2, 0)``), so in eval mode the block equals one ``k x k`` conv with bias; :meth:`fuse`
    returns it. The counts (:meth:`num_parameters`, :meth:`macs`) are those of the training-time
    block; the fused conv has the counts of a plain ``k x k`` conv.

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out``.
        kernel_size (int): odd kernel size ``k`` (default: 3).
        stride (int or tuple): stride (default: 1).
        groups (int): channel groups ``G`` (default: 1).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H - 1) / s) + 1``
        (padding ``k // 2``; ``H_out = H`` at stride 1).

    Attributes:
        square, horizontal, vertical (nn.Conv2d): weights ``[C_out, C_in / G, k, k]``,
            ``[C_out, C_in / G, 1, k]``, ``[C_out, C_in / G, k, 1]``, no bias.
        square_bn, horizontal_bn, vertical_bn (nn.BatchNorm2d): over ``C_out``.

    Example:
        >>> block = ACBlock2d(8, 16).eval()
        >>> x = torch.randn(2, 8, 10, 10)
        >>> torch.allclose(block.fuse()(x), block(x), atol=1e-5)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: IntOrPair = 1,
                 groups: int = 1):
        super().__init__()
        owner = "ACBlock2d"
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        k = check_odd(owner, "kernel_size", kernel_size, "the 1 x k and k x 1 kernels are centred")
        self.kernel_size = (k, k)
        self.stride = to_pair(owner, "stride", stride)
        self.padding = (k // 2, k // 2)
        self.groups = check_int(owner, "groups", groups)
        check_divisible(owner, "in_channels", in_channels, groups, "groups")
        check_divisible(owner, "out_channels", out_channels, groups, "groups")
        p = k // 2
        self.square = nn.Conv2d(in_channels, out_channels, (k, k), self.stride, (p, p), groups=groups, bias=False)
        self.horizontal = nn.Conv2d(in_channels, out_channels, (1, k), self.stride, (0, p), groups=groups, bias=False)
        self.vertical = nn.Conv2d(in_channels, out_channels, (k, 1), self.stride, (p, 0), groups=groups, bias=False)
        self.square_bn = nn.BatchNorm2d(out_channels)
        self.horizontal_bn = nn.BatchNorm2d(out_channels)
        self.vertical_bn = nn.BatchNorm2d(out_channels)

    def _branches(self):
        return ((self.square, self.square_bn), (self.horizontal, self.horizontal_bn),
                (self.vertical, self.vertical_bn))

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return sum(bn(conv(x)) for conv, bn in self._branches())

    def fuse(self) -> nn.Conv2d:
        """The single ``k x k`` conv (with bias) equal to this block in eval mode (running statistics
        of the batch norms). The block itself is left unchanged."""
        p = self.padding[0]
        weight = bias = 0
        for conv, bn in self._branches():
            w, b = fold_batch_norm(conv.weight.detach(), None, bn)
            kh, kw = w.shape[-2:]
            # A 1 x k (k x 1) kernel is the centre row (column) of a k x k one.
            weight = weight + F.pad(w, ((self.kernel_size[1] - kw) // 2,) * 2 + ((self.kernel_size[0] - kh) // 2,) * 2)
            bias = bias + b.detach()
        return conv_from(weight, bias, self.stride, (p, p), groups=self.groups)

    def _sample_macs(self, height: int, width: int) -> int:
        h_out, w_out = conv_output_size((height, width), self.kernel_size, self.stride, self.padding, (1, 1))
        return h_out * w_out * sum(conv.weight.numel() for conv, _ in self._branches())

    def extra_repr(self) -> str:
        return conv_extra_repr(self)

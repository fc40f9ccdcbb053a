"""DRConv: region-specific kernels, assigned per pixel by a learned guided mask.

Paper: "Dynamic Region-Aware Convolution", Chen et al., CVPR 2021, arXiv:2003.12243.

Gather -> compute -> scatter: the dense-grid rulebook is shared; the compute step of an output
pixel uses the kernel of the region its guide assigns it to (one kernel per region and sample,
generated from the input), and scatter is the ordinary sum. Here every region's kernel is run on
the whole grid (one grouped conv over the batch) and each pixel keeps its region's result.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_input, check_int, conv_extra_repr, init_conv_geometry
from ._counting import CountingMixin
from ._dynamic import conv_output_size, per_sample_conv2d


def select_regions(outputs: Tensor, guide: Tensor) -> Tensor:
    """Each pixel keeps the output of its arg-max region, with the paper's gradient.

    The forward pass is a hard selection. The backward pass sends the gradient to the selected
    region's output unchanged and, to the guide, the gradient the soft selection
    ``sum_r softmax(guide)_r * outputs_r`` would receive (the arg-max itself has no gradient).

    Args:
        outputs (Tensor): ``[B, M, C, H, W]``, the output of every region's kernel.
        guide (Tensor): ``[B, M, H, W]``, region scores per pixel.

    Returns:
        Tensor: ``[B, C, H, W]``.
    """
    hard = F.one_hot(guide.argmax(dim=1), guide.size(1)).permute(0, 3, 1, 2).to(outputs.dtype)
    soft = F.softmax(guide, dim=1)
    selected = (hard.unsqueeze(2) * outputs).sum(dim=1)
    # Exactly zero in value (x - x), but carries the soft selection's gradient to the guide.
    surrogate = ((soft - soft.detach()).unsqueeze(2) * outputs.detach()).sum(dim=1)
    return selected + surrogate


class DRConv2d(CountingMixin, nn.Module):
    r"""Dynamic region-aware 2-D convolution (DRConv).

    .. math::
        y_{b}(p) = W_{b,\, r(p)} * x_b\,(p), \qquad r(p) = \arg\max_m G_b(p)_m

    ``G = conv_guide(x)`` (``M`` channels, same geometry as the main conv) assigns each output
    pixel to one of ``M`` regions. The ``M`` kernels of sample ``b`` come from the filter
    generator: adaptive average pooling to ``kh x kw``, a 1x1 conv to ``M * M`` channels, sigmoid,
    and a 1x1 conv with ``M`` groups to ``M * C_out * C_in`` channels. Backward through the
    arg-max uses the softmax surrogate of :func:`select_regions`, as in the paper.

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out``.
        kernel_size (int or tuple): kernel size (default: 3).
        stride (int or tuple): stride (default: 1).
        padding (int, tuple or None): zero padding; None keeps ``H x W`` at stride 1 for odd kernels
            (default: None).
        dilation (int or tuple): dilation (default: 1).
        num_regions (int): regions ``M`` (default: 4).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` with
        ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``H_out = H`` with the defaults).

    Attributes:
        guide (nn.Conv2d): ``C_in -> M`` guided-mask conv, ``[M, C_in, kh, kw]``.
        generator (nn.Sequential): the filter generator; its last conv has weight
            ``[M * C_out * C_in, M, 1, 1]``.

    Example:
        >>> conv = DRConv2d(8, 16)
        >>> conv(torch.randn(2, 8, 10, 10)).shape
        torch.Size([2, 16, 10, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3,
                 stride: IntOrPair = 1, padding: Optional[IntOrPair] = None, dilation: IntOrPair = 1,
                 num_regions: int = 4):
        super().__init__()
        owner = "DRConv2d"
        init_conv_geometry(self, owner, in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.num_regions = m = check_int(owner, "num_regions", num_regions)
        self.guide = nn.Conv2d(in_channels, m, self.kernel_size, self.stride, self.padding, self.dilation)
        self.generator = nn.Sequential(
            nn.AdaptiveAvgPool2d(self.kernel_size),
            nn.Conv2d(in_channels, m * m, 1),
            nn.Sigmoid(),
            nn.Conv2d(m * m, m * out_channels * in_channels, 1, groups=m),
        )

    def region_kernels(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> ``[B, M, C_out, C_in, kh, kw]``, one kernel per region and sample."""
        kernels = self.generator(x)
        return kernels.reshape(x.size(0), self.num_regions, self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        kernels = self.region_kernels(x).flatten(1, 2)  # [B, M * C_out, C_in, kh, kw]
        outputs = per_sample_conv2d(x, kernels, None, self.stride, self.padding, self.dilation)
        outputs = outputs.reshape(x.size(0), self.num_regions, self.out_channels, *outputs.shape[-2:])
        return select_regions(outputs, self.guide(x))

    def _sample_macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one sample: filter generator, guide conv, and
        the main conv run once per region (each pixel then keeps one region's result)."""
        h_out, w_out = conv_output_size((height, width), self.kernel_size, self.stride, self.padding, self.dilation)
        taps = self.kernel_size[0] * self.kernel_size[1]
        generator = taps * (self.generator[1].weight.numel() + self.generator[3].weight.numel())
        per_pixel = (self.num_regions * self.out_channels + self.num_regions) * self.in_channels * taps
        return generator + per_pixel * h_out * w_out

    def extra_repr(self) -> str:
        return conv_extra_repr(self) + f", num_regions={self.num_regions}"

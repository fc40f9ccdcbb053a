"""Central difference convolution (CDC): a vanilla conv blended with a conv of differences to the centre.

Paper: "Searching Central Difference Convolutional Networks for Face Anti-Spoofing", Yu et al., CVPR 2020,
arXiv:2003.04092.

Gather -> compute -> scatter: the ordinary ``k x k`` grid rulebook; each offset's message is
``W_k (x_k - theta x_c)``, i.e. a second gather of the centre row per pair. As the difference is
linear, the two gathers fold into one kernel (the centre tap reduced by ``theta sum_k W_k``), so the
layer runs as one ordinary conv.
"""
from __future__ import annotations

from torch import Tensor

from ._args import check_float
from ._built_kernel import BuiltKernelConv2d, centre_corrected, odd_kernel


class CDConv2d(BuiltKernelConv2d):
    r"""Central difference convolution.

    .. math::
        y(p) = \theta \sum_k W_k \, (x(p + p_k) - x(p)) + (1 - \theta) \sum_k W_k \, x(p + p_k)
             = \sum_k W_k \, x(p + p_k) - \theta \, x(p) \sum_k W_k

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int): odd ``k`` (default: 3).
        stride (int or tuple): (default: 1).
        dilation (int or tuple): (default: 1).
        groups (int): (default: 1).
        bias (bool): (default: False, as in the paper's code).
        theta (float): ``theta`` in ``[0, 1]``; 0 is a vanilla conv (default: 0.7, the paper's choice).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` ("same" padding ``d (k - 1) / 2``).

    Attributes:
        weight (Tensor): ``[C_out, C_in / G, k^2]`` (taps in C order).
        bias (Tensor or None): ``[C_out]``.

    Parameters ``k^2 C_in C_out / G``; MACs those of one ``k x k`` conv.

    Example:
        >>> CDConv2d(3, 8)(torch.randn(2, 3, 6, 5)).shape
        torch.Size([2, 8, 6, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride=1, dilation=1,
                 groups: int = 1, bias: bool = False, theta: float = 0.7):
        k = odd_kernel(type(self).__name__, kernel_size)
        self.theta = check_float(type(self).__name__, "theta", theta, 0.0, 1.0)
        super().__init__(in_channels, out_channels, k, stride, dilation, groups, bias, k * k)

    def reparameterised_weight(self) -> Tensor:
        """``[C_out, C_in / G, k, k]``: the weight with ``theta sum_k W_k`` taken from the centre tap."""
        k = self.kernel_size[0]
        return centre_corrected(self.weight.reshape(*self.weight.shape[:2], k, k), self.theta)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", theta={self.theta}"

"""Channel shuffle: interleave the channels of ``G`` groups so that the next grouped conv mixes them.

Paper: "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices", Zhang, Zhou,
Lin, Sun, arXiv:1707.01083.

Gather -> compute -> scatter: not a convolution; it is a fixed permutation of the feature columns
(every row keeps its site), i.e. a ``1 x 1`` one-offset rulebook with a permutation weight, done here
as a reshape. It is not constructible as ``ChannelShuffle(C_in, C_out, kernel_size)``: its only
argument is ``groups``; it maps ``[B, C, H, W]`` to ``[B, C, H, W]``, has no parameters and no MACs.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ._args import check_divisible, check_int


class ChannelShuffle(nn.Module):
    r"""Transpose the ``(G, C / G)`` channel grid: output channel ``c`` is input channel ``(c mod G) C / G + c // G``.

    Args:
        groups (int): ``G`` (dividing the channel count of the input).

    Shapes:
        input ``[B, C, *S]`` -> ``[B, C, *S]``.

    Example:
        >>> ChannelShuffle(2)(torch.arange(4.).reshape(1, 4, 1, 1)).flatten().tolist()
        [0.0, 2.0, 1.0, 3.0]
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = check_int("ChannelShuffle", "groups", groups)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"ChannelShuffle: input must be a tensor [B, C, *S], got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"ChannelShuffle: input must have shape [B, C, *S], got {list(x.shape)}")
        check_divisible("ChannelShuffle", "input channels", x.size(1), self.groups, "groups")
        batch, channels = x.shape[:2]
        return x.reshape(batch, self.groups, channels // self.groups, *x.shape[2:]).transpose(1, 2).reshape(x.shape)

    def num_parameters(self) -> int:
        """0: a shuffle has no parameters (the same interface as the other dense variants)."""
        return 0

    def macs(self, input_size: Sequence[int]) -> int:
        """0 for an input of ``(C, H, W)`` or ``(B, C, H, W)``: a permutation multiplies nothing.

        Raises:
            ValueError: if ``C`` is not a multiple of ``groups``.
        """
        size = tuple(input_size)
        if len(size) not in (3, 4):
            raise ValueError(f"ChannelShuffle.macs: input_size must be (C, H, W) or (B, C, H, W), got {input_size!r}")
        check_divisible("ChannelShuffle.macs", "input channels", size[-3], self.groups, "groups")
        return 0

    def extra_repr(self) -> str:
        return f"groups={self.groups}"

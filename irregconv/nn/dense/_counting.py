"""Parameter and multiply-accumulate counts for the dense variants.

A multiply-accumulate (MAC) is one ``a * b + c``; a dense conv producing ``C_out x H_out x W_out``
values from ``C_in / G x kh x kw`` inputs each costs ``C_out H_out W_out C_in kh kw / G`` MACs.
Each module counts the MACs of the computation it actually runs (so a strategy that computes more
than the math needs reports more); elementwise activations, pooling and normalisation are not
counted unless they are the layer's core computation.
"""
from __future__ import annotations

from typing import Sequence


class CountingMixin:
    """Adds ``num_parameters()`` and ``macs(input_size)`` to an ``nn.Module``.

    Subclasses implement ``_sample_macs(height, width)``: the MACs for one sample of spatial size
    ``height x width`` with ``in_channels`` channels.
    """

    def num_parameters(self) -> int:
        """Number of scalars in the module's parameters (buffers such as running statistics excluded)."""
        return sum(p.numel() for p in self.parameters())

    def macs(self, input_size: Sequence[int]) -> int:
        """Multiply-accumulates of one forward pass.

        Args:
            input_size: ``(C_in, H, W)`` for one sample or ``(B, C_in, H, W)`` for a batch.
        """
        owner = type(self).__name__
        size = tuple(input_size)
        if len(size) not in (3, 4) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in size):
            raise ValueError(f"{owner}.macs: input_size must be (C_in, H, W) or (B, C_in, H, W) with positive "
                             f"ints, got {input_size!r}")
        batch = size[0] if len(size) == 4 else 1
        channels, height, width = size[-3:]
        if channels != self.in_channels:
            raise ValueError(f"{owner}.macs: input_size has {channels} channels, the module expects "
                             f"in_channels={self.in_channels}")
        return batch * self._sample_macs(height, width)

    def _sample_macs(self, height: int, width: int) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not implement _sample_macs")

"""``spconv.pytorch.identity``: :class:`Identity`, spconv's pass-through module (Pointcept's classifier configs
build ``spconv.Identity()`` where a model needs no head)."""
from torch import nn

__all__ = ["Identity"]


class Identity(nn.Module):
    """Returns its input unchanged, whatever it is (SparseConvTensor, tensor, list)."""

    def forward(self, input):
        return input

    def input_spatial_size(self, out_size):
        """The spatial size that gives ``out_size``: the same (spconv's sparse-network shape helper)."""
        return out_size

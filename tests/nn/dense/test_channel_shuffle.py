"""ChannelShuffle: the index formula and torch.nn.ChannelShuffle, inverse by the transposed grouping,
gradcheck, shapes, repr, errors."""
import pytest
import torch
from torch import nn

from irregconv.nn.dense import ChannelShuffle
from irregconv.testing import DEVICES


@pytest.mark.parametrize("groups,channels", [(1, 4), (2, 6), (3, 6), (4, 8), (6, 6)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_index_formula(groups, channels, device):
    torch.manual_seed(0)
    x = torch.randn(2, channels, 3, 4, device=device, dtype=torch.float64)
    index = [(c % groups) * (channels // groups) + c // groups for c in range(channels)]
    out = ChannelShuffle(groups)(x)
    torch.testing.assert_close(out, x[:, index], rtol=0, atol=0)
    torch.testing.assert_close(out, nn.ChannelShuffle(groups)(x), rtol=0, atol=0)
    # shuffling with C / G groups undoes it
    torch.testing.assert_close(ChannelShuffle(channels // groups)(out), x, rtol=0, atol=0)


def test_gradcheck_and_other_ranks():
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ChannelShuffle(3), (x,))
    assert ChannelShuffle(2)(torch.randn(2, 4, 2, 3, 5)).shape == (2, 4, 2, 3, 5)


def test_shape_repr_and_counts():
    shuffle = ChannelShuffle(3)
    assert shuffle(torch.randn(2, 12, 5, 7)).shape == (2, 12, 5, 7)
    assert repr(shuffle) == "ChannelShuffle(groups=3)"
    assert sum(p.numel() for p in shuffle.parameters()) == shuffle.num_parameters() == 0
    assert shuffle.macs((2, 12, 5, 7)) == 0
    with pytest.raises(ValueError, match="ChannelShuffle.macs.*input channels=10"):
        shuffle.macs((10, 5, 7))


def test_bad_arguments():
    with pytest.raises(ValueError, match="ChannelShuffle.*groups"):
        ChannelShuffle(0)
    with pytest.raises(ValueError, match="ChannelShuffle.*input channels=5.*groups=2"):
        ChannelShuffle(2)(torch.randn(1, 5, 2, 2))

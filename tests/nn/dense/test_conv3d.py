"""Conv3d: engine == native == torch.nn.Conv3d (outputs and gradients) over strides, dilations, groups,
depthwise and padding modes; gradcheck; shapes, repr, counts."""
import pytest
import torch
from torch import nn

from irregconv.nn.dense import Conv3d
from irregconv.testing import DEVICES


@pytest.mark.parametrize("backend", ["native", "engine"])
@pytest.mark.parametrize("kwargs", [
    dict(), dict(kernel_size=1), dict(kernel_size=(3, 1, 2), stride=(2, 1, 1), padding=(1, 0, 1)),
    dict(dilation=(1, 2, 1)), dict(groups=2, bias=False), dict(groups=4, out_channels=4),
    dict(padding_mode="reflect"), dict(padding_mode="replicate", stride=2), dict(padding_mode="circular"),
])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_torch(backend, kwargs, device, assert_same_forward_backward):
    torch.manual_seed(0)
    kwargs = dict(kwargs)
    out_channels = kwargs.pop("out_channels", 6)
    ours = Conv3d(4, out_channels, backend=backend, **kwargs).to(device, torch.float64)
    ref = nn.Conv3d(4, out_channels, **{"kernel_size": 3, "padding": ours.padding, **kwargs}).to(device, torch.float64)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 4, 5, 3, device=device, dtype=torch.float64, requires_grad=True)
    assert_same_forward_backward(ours, ref, x)


@pytest.mark.parametrize("kwargs", [dict(), dict(stride=2, groups=2, padding_mode="reflect")])
def test_gradcheck_engine(kwargs):
    torch.manual_seed(1)
    conv = Conv3d(2, 2, backend="engine", **kwargs).double()
    x = torch.randn(1, 2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    x = torch.randn(2, 4, 5, 6, 3)
    assert Conv3d(4, 8)(x).shape == (2, 8, 5, 6, 3)
    assert Conv3d(4, 8, backend="engine")(x).shape == (2, 8, 5, 6, 3)
    assert Conv3d(4, 8, stride=2)(x).shape == (2, 8, 3, 3, 2)
    assert repr(Conv3d(4, 8, dilation=2, backend="engine")) == (
        "Conv3d(4, 8, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(2, 2, 2), dilation=(2, 2, 2), "
        "backend='engine')")
    k, c_in, c_out = 3, 4, 8
    assert Conv3d(c_in, c_out, bias=False).num_parameters() == k ** 3 * c_in * c_out
    assert Conv3d(c_in, c_out, groups=2, bias=False).num_parameters() == k ** 3 * c_in * c_out // 2
    assert Conv3d(c_in, c_out, 1, bias=False).num_parameters() == c_in * c_out
    assert Conv3d(c_in, c_in, groups=c_in, bias=False).num_parameters() == k ** 3 * c_in
    assert Conv3d(c_in, c_out).macs((c_in, 5, 6, 3)) == 5 * 6 * 3 * k ** 3 * c_in * c_out
    assert Conv3d(c_in, c_out, stride=2).macs((2, c_in, 5, 6, 3)) == 2 * 3 * 3 * 2 * k ** 3 * c_in * c_out
    with pytest.raises(ValueError, match="Conv3d.macs"):
        Conv3d(c_in, c_out).macs((c_in, 5, 6))


@pytest.mark.parametrize("kwargs,error", [(dict(groups=3), ValueError), (dict(backend="space_to_batch"), ValueError),
                                          (dict(kernel_size=(3, 3)), TypeError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="Conv3d"):
        Conv3d(4, 6, **kwargs)
    with pytest.raises(ValueError, match="Conv3d.*\\[B, 4, D, H, W\\]"):
        Conv3d(4, 6)(torch.randn(1, 4, 5, 5))

"""ConvTranspose2d: engine == native == torch.nn.ConvTranspose2d and pixel shuffle == native (outputs and
gradients) over strides, padding, output padding, dilation and groups; gradcheck; shapes, repr, counts."""
import pytest
import torch
from torch import nn

from irregconv.nn.dense import ConvTranspose2d
from irregconv.testing import DEVICES

GEOMETRIES = [
    dict(), dict(kernel_size=1), dict(kernel_size=4, stride=2, padding=1), dict(kernel_size=3, stride=2, padding=1,
                                                                              output_padding=1),
    dict(kernel_size=(3, 5), stride=(3, 2), padding=(0, 2), output_padding=(2, 1)), dict(kernel_size=2, stride=3,
                                                                                       padding=0),
    dict(groups=2, stride=2, padding=0), dict(groups=4, out_channels=4, bias=False),
]


@pytest.mark.parametrize("backend", ["native", "engine"])
@pytest.mark.parametrize("kwargs", GEOMETRIES + [dict(dilation=2, stride=2, padding=1)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_torch(backend, kwargs, device, assert_same_forward_backward):
    torch.manual_seed(0)
    kwargs = dict(kwargs)
    out_channels = kwargs.pop("out_channels", 6)
    ours = ConvTranspose2d(4, out_channels, backend=backend, **kwargs).to(device, torch.float64)
    ref = nn.ConvTranspose2d(4, out_channels, **{"kernel_size": 3, "padding": ours.padding, **kwargs})
    ref = ref.to(device, torch.float64)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 4, 5, device=device, dtype=torch.float64, requires_grad=True)
    assert_same_forward_backward(ours, ref, x)


@pytest.mark.parametrize("kwargs", GEOMETRIES)
def test_pixel_shuffle_equals_native(kwargs, assert_same_forward_backward):
    torch.manual_seed(1)
    kwargs = dict(kwargs)
    out_channels = kwargs.pop("out_channels", 6)
    ours = ConvTranspose2d(4, out_channels, backend="pixel_shuffle", **kwargs).double()
    native = ConvTranspose2d(4, out_channels, **kwargs).double()
    native.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    assert_same_forward_backward(ours, native, x)


@pytest.mark.parametrize("backend", ["engine", "pixel_shuffle"])
def test_gradcheck(backend):
    torch.manual_seed(2)
    conv = ConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1, backend=backend).double()
    x = torch.randn(1, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    x = torch.randn(2, 8, 5, 6)
    assert ConvTranspose2d(8, 4)(x).shape == (2, 4, 5, 6)
    assert ConvTranspose2d(8, 4, backend="engine")(x).shape == (2, 4, 5, 6)
    assert ConvTranspose2d(8, 4, 4, stride=2, padding=1, backend="pixel_shuffle")(x).shape == (2, 4, 10, 12)
    assert repr(ConvTranspose2d(8, 4, 4, stride=2, padding=1, output_padding=1, backend="pixel_shuffle")) == (
        "ConvTranspose2d(8, 4, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), output_padding=(1, 1), "
        "backend='pixel_shuffle')")
    k, c_in, c_out = 3, 8, 4
    assert ConvTranspose2d(c_in, c_out, bias=False).num_parameters() == k * k * c_in * c_out
    assert ConvTranspose2d(c_in, c_out, groups=2, bias=False).num_parameters() == k * k * c_in * c_out // 2
    # every input site scatters K C_out / G values per input channel
    assert ConvTranspose2d(c_in, c_out, stride=2).macs((c_in, 5, 6)) == 5 * 6 * k * k * c_in * c_out
    assert ConvTranspose2d(c_in, c_out, groups=4).macs((3, c_in, 5, 6)) == 3 * 5 * 6 * k * k * c_in * c_out // 4


@pytest.mark.parametrize("kwargs", [dict(output_padding=1), dict(stride=2, output_padding=2),
                                    dict(padding_mode="reflect"), dict(backend="pixel_shuffle", dilation=2),
                                    dict(groups=4)])
def test_bad_arguments(kwargs):
    with pytest.raises((ValueError, TypeError), match="ConvTranspose2d"):
        ConvTranspose2d(6, 6, **kwargs)

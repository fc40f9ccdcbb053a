"""Conv2d: engine == native == torch.nn.Conv2d (outputs and gradients) over strides, dilations, groups,
depthwise and padding modes; space-to-batch == native; gradcheck; rulebook cache; shapes, repr, counts."""
import pytest
import torch
from torch import nn

from irregconv.nn.dense import Conv2d
from irregconv.testing import DEVICES


def _pair(in_channels, out_channels, backend, device, **kwargs):
    """Our Conv2d and torch's with the same (float64) parameters."""
    ours = Conv2d(in_channels, out_channels, backend=backend, **kwargs).to(device, torch.float64)
    kwargs.setdefault("padding", ours.padding)
    ref = nn.Conv2d(in_channels, out_channels, **{"kernel_size": 3, **kwargs}).to(device, torch.float64)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("backend", ["native", "engine"])
@pytest.mark.parametrize("kwargs", [
    dict(), dict(kernel_size=1), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    dict(dilation=2), dict(kernel_size=3, stride=2, dilation=(1, 2), padding=2),
    dict(groups=2), dict(groups=4, bias=False), dict(padding_mode="reflect"), dict(padding_mode="replicate"),
    dict(padding_mode="circular", stride=2), dict(padding=0),
])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_torch(backend, kwargs, device, assert_same_forward_backward):
    torch.manual_seed(0)
    ours, ref = _pair(4, 4 if kwargs.get("groups") == 4 else 6, backend, device, **kwargs)
    x = torch.randn(2, 4, 6, 7, device=device, dtype=torch.float64, requires_grad=True)
    assert_same_forward_backward(ours, ref, x)


@pytest.mark.parametrize("kwargs", [dict(dilation=2), dict(dilation=(2, 3), groups=2), dict(dilation=3, padding=1),
                                    dict(dilation=2, padding_mode="reflect"), dict(kernel_size=1, dilation=2)])
def test_space_to_batch_equals_native(kwargs, assert_same_forward_backward):
    torch.manual_seed(1)
    ours = Conv2d(4, 6, backend="space_to_batch", **kwargs).double()
    native = Conv2d(4, 6, **kwargs).double()
    native.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64, requires_grad=True)
    assert_same_forward_backward(ours, native, x)


@pytest.mark.parametrize("backend,kwargs", [
    ("engine", dict()), ("engine", dict(out_channels=4, stride=2, groups=2, padding_mode="circular")),
    ("space_to_batch", dict(dilation=2)),
])
def test_gradcheck(backend, kwargs):
    torch.manual_seed(2)
    kwargs = dict(kwargs)
    conv = Conv2d(2, kwargs.pop("out_channels", 3), backend=backend, **kwargs).double()
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_rulebook_cache_is_structural_and_bounded():
    conv = Conv2d(2, 3, backend="engine")
    x = torch.randn(1, 2, 4, 4)
    conv(x)
    first = conv.rulebook(x, conv.padding)
    conv(x.clone())
    assert conv.rulebook(x, conv.padding) is first and len(conv._rulebooks) == 1
    for size in range(5, 12):
        conv(torch.randn(1, 2, size, 4))
    assert len(conv._rulebooks) == 4


def test_shape_repr_and_counts():
    x = torch.randn(2, 16, 9, 7)
    assert Conv2d(16, 32)(x).shape == (2, 32, 9, 7)
    assert Conv2d(16, 32, backend="engine")(x).shape == (2, 32, 9, 7)
    assert Conv2d(16, 32, 5, dilation=2, backend="space_to_batch")(x).shape == (2, 32, 9, 7)
    assert Conv2d(16, 32, stride=2)(x).shape == (2, 32, 5, 4)
    assert repr(Conv2d(16, 32)) == "Conv2d(16, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    assert repr(Conv2d(16, 32, groups=4, bias=False, padding_mode="reflect", backend="engine")) == (
        "Conv2d(16, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=4, bias=False, "
        "padding_mode='reflect', backend='engine')")
    k, c_in, c_out, h, w = 3, 16, 32, 9, 7
    assert Conv2d(c_in, c_out, bias=False).num_parameters() == k * k * c_in * c_out          # standard
    assert Conv2d(c_in, c_out, groups=4, bias=False).num_parameters() == k * k * c_in * c_out // 4  # grouped
    assert Conv2d(c_in, c_out, 1, bias=False).num_parameters() == c_in * c_out               # pointwise
    assert Conv2d(c_in, c_in, groups=c_in, bias=False).num_parameters() == k * k * c_in      # depthwise
    assert Conv2d(c_in, c_out).num_parameters() == k * k * c_in * c_out + c_out
    assert Conv2d(c_in, c_out).macs((c_in, h, w)) == h * w * k * k * c_in * c_out
    assert Conv2d(c_in, c_out, groups=4).macs((2, c_in, h, w)) == 2 * h * w * k * k * c_in * c_out // 4
    assert Conv2d(c_in, c_out, stride=2).macs((c_in, h, w)) == 5 * 4 * k * k * c_in * c_out


@pytest.mark.parametrize("kwargs,error", [
    (dict(groups=3), ValueError), (dict(padding_mode="mirror"), ValueError), (dict(backend="cudnn"), ValueError),
    (dict(backend="space_to_batch", stride=2), ValueError), (dict(kernel_size=0), ValueError),
    (dict(stride=1.5), TypeError), (dict(dilation=0), ValueError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="Conv2d"):
        Conv2d(4, 6, **kwargs)


def test_bad_input():
    with pytest.raises(ValueError, match="Conv2d.*\\[B, 4, H, W\\]"):
        Conv2d(4, 6)(torch.randn(1, 3, 5, 5))
    with pytest.raises(TypeError, match="Conv2d"):
        Conv2d(4, 6)(torch.ones(1, 4, 5, 5, dtype=torch.long))

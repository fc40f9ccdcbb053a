"""ConvTranspose3d: engine == native == torch.nn.ConvTranspose3d (outputs and gradients) over strides,
padding, output padding, dilation and groups; gradcheck; shapes, repr, counts."""
import pytest
import torch
from torch import nn

from irregconv.nn.dense import ConvTranspose3d
from irregconv.testing import DEVICES


@pytest.mark.parametrize("backend", ["native", "engine"])
@pytest.mark.parametrize("kwargs", [
    dict(), dict(kernel_size=2, stride=2, padding=0), dict(kernel_size=3, stride=(2, 1, 2), padding=1,
                                                           output_padding=(1, 0, 0)),
    dict(dilation=(2, 1, 1), padding=1), dict(groups=2, bias=False, stride=2, padding=0),
])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_torch(backend, kwargs, device, assert_same_forward_backward):
    torch.manual_seed(0)
    ours = ConvTranspose3d(4, 2, backend=backend, **kwargs).to(device, torch.float64)
    ref = nn.ConvTranspose3d(4, 2, **{"kernel_size": 3, "padding": ours.padding, **kwargs}).to(device, torch.float64)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 3, 2, 3, device=device, dtype=torch.float64, requires_grad=True)
    assert_same_forward_backward(ours, ref, x)


def test_gradcheck_engine():
    torch.manual_seed(1)
    conv = ConvTranspose3d(2, 2, 2, stride=2, padding=0, backend="engine").double()
    x = torch.randn(1, 2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    x = torch.randn(1, 4, 3, 2, 3)
    assert ConvTranspose3d(4, 2)(x).shape == (1, 2, 3, 2, 3)
    assert ConvTranspose3d(4, 2, 2, stride=2, padding=0, backend="engine")(x).shape == (1, 2, 6, 4, 6)
    assert repr(ConvTranspose3d(4, 2, backend="engine")) == (
        "ConvTranspose3d(4, 2, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1), backend='engine')")
    assert ConvTranspose3d(4, 2, bias=False).num_parameters() == 27 * 4 * 2
    assert ConvTranspose3d(4, 2, 2, stride=2).macs((4, 3, 2, 3)) == 3 * 2 * 3 * 8 * 4 * 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="ConvTranspose3d.*output_padding"):
        ConvTranspose3d(4, 2, output_padding=1)
    with pytest.raises(ValueError, match="ConvTranspose3d.*backend"):
        ConvTranspose3d(4, 2, backend="pixel_shuffle")

"""CircleConv2d: explicit bilinear resampling at the circle points (deform_conv2d with fixed offsets,
itself tested against a naive loop) equals the reparameterised ordinary kernel (outputs and gradients);
the circle geometry; gradcheck; shapes, repr, counts."""
import math

import pytest
import torch

from irregconv.functional.deform_conv import deform_conv2d
from irregconv.nn.dense import CircleConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def test_circle_geometry():
    layer = CircleConv2d(1, 1, 5)
    square = torch.tensor([[u, v] for u in range(-2, 3) for v in range(-2, 3)], dtype=torch.float64)
    points = square + layer.sampling_offsets()
    ring = square.abs().amax(dim=1)
    torch.testing.assert_close(points.norm(dim=1), ring)                       # on the ring's circle
    torch.testing.assert_close(points[6], torch.tensor([-1, -1.], dtype=torch.float64) / math.sqrt(2), rtol=0, atol=1e-12)
    torch.testing.assert_close(layer.sampling_offsets()[[2, 10, 12, 14, 22]], torch.zeros(5, 2, dtype=torch.float64))
    torch.testing.assert_close(layer.stencils.sum(dim=(1, 2)), torch.ones(25, dtype=layer.stencils.dtype))


@pytest.mark.parametrize("kwargs", [dict(), dict(kernel_size=5, stride=2), dict(groups=2, bias=False)])
@pytest.mark.parametrize("device", DEVICES)
def test_resampling_equals_reparameterised_kernel(kwargs, device):
    torch.manual_seed(0)
    layer = CircleConv2d(4, 6, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    h_out, w_out = out.shape[2:]
    k = layer.kernel_size[0]
    offset = layer.sampling_offsets().to(device).reshape(1, -1, 1, 1).expand(2, -1, h_out, w_out)
    ref = deform_conv2d(x, offset, layer.weight.reshape(6, -1, k, k), layer.bias, layer.stride, layer.padding,
                        layer.dilation, layer.groups)
    assert_close_with_grads(out, ref, [x, *layer.parameters()], rtol=1e-7, atol=1e-9)


def test_gradcheck():
    torch.manual_seed(1)
    layer = CircleConv2d(2, 3).double()
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c_in, c_out, h, w = 3, 8, 16, 9, 7
    layer = CircleConv2d(c_in, c_out)
    assert layer(torch.randn(2, c_in, h, w)).shape == (2, c_out, h, w)
    assert repr(layer) == "CircleConv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    assert layer.num_parameters() == k * k * c_in * c_out + c_out
    assert CircleConv2d(c_in, c_out, groups=2).macs((2, c_in, h, w)) == 2 * h * w * k * k * c_in * c_out // 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="CircleConv2d.*odd"):
        CircleConv2d(4, 6, 4)

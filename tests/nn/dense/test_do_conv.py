"""DOConv2d: parity with the paper's feature-composition form (im2col patches -> depthwise D ->
conventional W), outputs and gradients; fold() equals the layer; gradcheck; shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import DOConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _feature_composition(conv, x):
    """``O = W o (D o P)``: unfold the patches ``P``, map each channel's patch by ``D``, then ``W``.
    The kernel is never composed: this is the other association of the same product."""
    b, c = x.shape[:2]
    patches = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # [B, C_in * K, L]
    patches = patches.reshape(b, c, conv.kernel_size[0] * conv.kernel_size[1], -1)
    depthwise = conv.identity + conv.depthwise
    features = torch.einsum("ctd,bctl->bcdl", depthwise, patches)  # [B, C_in, D_mul, L]
    out = torch.einsum("ocd,bcdl->bol", conv.weight, features)
    if conv.bias is not None:
        out = out + conv.bias[:, None]
    h_out = (x.size(2) + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
    return out.reshape(b, conv.out_channels, h_out, -1)


def _perturb(conv):
    with torch.no_grad():  # D_delta starts at zero; move it so that D is not the identity
        conv.depthwise.normal_(0.0, 0.3)
    return conv


@pytest.mark.parametrize("kernel_size,d_mul,stride,dilation,bias", [
    (3, None, 1, 1, False), ((3, 2), 8, 2, 1, True), (3, 12, 1, 2, True),
])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_feature_composition(kernel_size, d_mul, stride, dilation, bias, device):
    conv = _perturb(DOConv2d(4, 6, kernel_size, d_mul, stride, dilation=dilation, bias=bias)).to(device, torch.float64)
    x = torch.randn(2, 4, 8, 7, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = conv(x), _feature_composition(conv, x)
    assert_close_with_grads(out, ref, [x, *conv.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("bias,dilation", [(False, 1), (True, 2)])
def test_folded_equals_unfolded(bias, dilation):
    conv = _perturb(DOConv2d(4, 6, 3, 12, dilation=dilation, bias=bias)).double()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    folded = conv.fold()
    assert isinstance(folded, torch.nn.Conv2d) and (folded.bias is None) == (not bias)
    torch.testing.assert_close(folded(x), conv(x), rtol=1e-7, atol=1e-9)


def test_starts_as_plain_conv_with_w():
    conv = DOConv2d(4, 6)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight.reshape(6, 4, 3, 3), None, 1, 1))


def test_gradcheck():
    conv = _perturb(DOConv2d(2, 3, 3, 10, bias=True)).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    conv = DOConv2d(8, 16)
    assert conv(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    assert DOConv2d(8, 16, stride=2)(torch.randn(2, 8, 9, 7)).shape == (2, 16, 5, 4)
    assert repr(conv) == "DOConv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"
    assert conv.num_parameters() == 16 * 8 * 9 + 8 * 9 * 9
    assert conv.macs((8, 9, 7)) == 16 * 8 * 9 * 9 + 9 * 7 * 16 * 8 * 9


@pytest.mark.parametrize("kwargs,error", [(dict(depth_multiplier=8), ValueError), (dict(dilation=0), ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="DOConv2d"):
        DOConv2d(4, 6, **kwargs)

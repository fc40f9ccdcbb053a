"""DRConv2d: a naive per-pixel loop (outputs and kernel-generator gradients), the paper's
straight-through guide gradient, gradcheck, shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import DRConv2d
from irregconv.nn.dense.dr_conv import select_regions
from irregconv.testing import DEVICES, assert_close_with_grads


def _per_pixel_reference(conv, x):
    """Every output pixel: its arg-max region, then the dot product of that region's kernel with the
    input window, written as a loop over pixels."""
    kernels, guide = conv.region_kernels(x), conv.guide(x)
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    xp = F.pad(x, (conv.padding[1], conv.padding[1], conv.padding[0], conv.padding[0]))
    out = torch.zeros(x.size(0), conv.out_channels, *guide.shape[-2:], dtype=x.dtype, device=x.device)
    for b in range(x.size(0)):
        for i in range(guide.size(2)):
            for j in range(guide.size(3)):
                region = int(guide[b, :, i, j].argmax())
                window = xp[b, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[b, :, i, j] = (kernels[b, region] * window).sum(dim=(1, 2, 3))
    return out


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 2)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_per_pixel_loop(stride, dilation, device):
    conv = DRConv2d(3, 4, 3, stride=stride, dilation=dilation, num_regions=3).to(device, torch.float64)
    x = torch.randn(2, 3, 6, 5, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = conv(x), _per_pixel_reference(conv, x)
    # The generator's gradients go through the selected outputs only: the surrogate does not touch them.
    assert_close_with_grads(out, ref, list(conv.generator.parameters()), rtol=1e-7, atol=1e-9)


def test_select_regions_straight_through():
    outputs = torch.randn(2, 3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    out = select_regions(outputs, guide)
    hard = F.one_hot(guide.argmax(1), 3).permute(0, 3, 1, 2).to(outputs.dtype)
    torch.testing.assert_close(out, torch.einsum("bmhw,bmchw->bchw", hard, outputs), rtol=0, atol=0)
    grad_out = torch.randn_like(out)
    g_outputs, g_guide = torch.autograd.grad(out, (outputs, guide), grad_out)
    torch.testing.assert_close(g_outputs, hard[:, :, None] * grad_out[:, None])
    # The paper's guide gradient: softmax backward of sum_c grad * outputs_m.
    g = (grad_out[:, None] * outputs).sum(dim=2)
    s = torch.softmax(guide, dim=1)
    torch.testing.assert_close(g_guide, s * (g - (s * g).sum(dim=1, keepdim=True)))


def test_gradcheck_with_fixed_regions():
    """Through the arg-max the gradient is a surrogate by design; with the guide's output detached
    the module is smooth in ``x`` and its gradient must be exact."""
    conv = DRConv2d(2, 3, 3, num_regions=2).double()
    conv.guide.register_forward_hook(lambda module, inputs, output: output.detach())
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_gradcheck_select_regions():
    outputs = torch.randn(1, 3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(1, 3, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda o: select_regions(o, guide), (outputs,))


def test_shape_repr_and_counts():
    conv = DRConv2d(8, 16)
    assert conv(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    assert conv.region_kernels(torch.randn(2, 8, 9, 7)).shape == (2, 4, 16, 8, 3, 3)
    assert repr(conv).startswith(
        "DRConv2d(\n  8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), num_regions=4\n")
    generator = (8 * 16 + 16) + (4 * 16 * 8 * 4 + 4 * 16 * 8)
    assert conv.num_parameters() == 4 * 8 * 9 + 4 + generator
    assert conv.macs((8, 9, 7)) == 9 * (8 * 16 + 4 * 16 * 8 * 4) + (4 * 16 + 4) * 8 * 9 * 9 * 7


@pytest.mark.parametrize("kwargs,error", [(dict(num_regions=0), ValueError), (dict(kernel_size=(3,)), TypeError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="DRConv2d"):
        DRConv2d(4, 6, **kwargs)

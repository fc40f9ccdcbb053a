"""ODConv2d: the four-attention kernel built per sample in a loop (outputs and gradients),
gradcheck, shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import ODConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _per_sample_reference(conv, x):
    """Attentions from the paper's formulas (trunk batch norm in eval mode), then one ``F.conv2d``
    per sample with ``sum_k a_wk * a_f * a_c * a_s * W_k`` assembled on the full kernel."""
    fc, bn = conv.trunk[0], conv.trunk[1]
    t, (kh, kw) = conv.temperature, conv.kernel_size
    c_in_per_group = conv.in_channels // conv.groups
    c_out_per_group = conv.out_channels // conv.groups
    outs = []
    for xb in x:
        z = fc.weight @ xb.mean(dim=(1, 2))
        z = torch.relu((z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
        head = lambda lin: (lin.weight @ z + lin.bias) / t  # noqa: E731
        a_s = torch.sigmoid(head(conv.spatial_head)).reshape(1, 1, kh, kw)
        a_f = torch.sigmoid(head(conv.filter_head)).reshape(-1, 1, 1, 1)
        a_c_full = torch.sigmoid(head(conv.channel_head))
        # Output channel o of group g sees input channels g * C_in/G + j.
        a_c = torch.stack([a_c_full[(o // c_out_per_group) * c_in_per_group:][:c_in_per_group]
                           for o in range(conv.out_channels)]).reshape(conv.out_channels, c_in_per_group, 1, 1)
        a_w = torch.softmax(head(conv.kernel_head), dim=0)
        weight = sum(a_w[k] * a_f * a_c * a_s * conv.weight[k] for k in range(conv.num_experts))
        outs.append(F.conv2d(xb[None], weight, None, conv.stride, conv.padding, conv.dilation, conv.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("groups,stride,temperature", [(1, 1, 1.0), (2, 2, 3.0)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_per_sample_loop(groups, stride, temperature, device, randomise_batch_norms):
    conv = ODConv2d(4, 6, 3, stride=stride, groups=groups, num_kernels=3, temperature=temperature, min_channels=4)
    conv = randomise_batch_norms(conv).to(device, torch.float64).eval()
    x = torch.randn(3, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = conv(x), _per_sample_reference(conv, x)
    assert_close_with_grads(out, ref, [x, *conv.parameters()], rtol=1e-7, atol=1e-9)


def test_kernel_attention_sums_to_one():
    conv = ODConv2d(8, 16)
    spatial, channel, filters, kernel = conv.attentions(torch.randn(4, 8, 6, 6))
    assert (spatial.shape, channel.shape, filters.shape, kernel.shape) == ((4, 9), (4, 8), (4, 16), (4, 4))
    torch.testing.assert_close(kernel.sum(dim=1), torch.ones(4))


@pytest.mark.parametrize("train", [True, False])
def test_gradcheck(train):
    conv = ODConv2d(2, 3, 3, num_kernels=2, min_channels=3).double().train(train)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    conv = ODConv2d(8, 16)
    assert conv(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7) and conv.num_kernels == 4
    assert repr(conv).startswith(
        "ODConv2d(\n  8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), num_kernels=4\n")
    hidden = 16  # max(int(8 * 0.0625), 16)
    heads = hidden * (8 + 16 + 9 + 4)
    assert conv.num_parameters() == 4 * 16 * 8 * 9 + 8 * hidden + 2 * hidden + heads + (8 + 16 + 9 + 4)
    assert conv.macs((8, 9, 7)) == (8 * hidden + heads + 5 * 16 * 8 * 9 + 16 * 8 * 9 * 9 * 7
                                    + 8 * 9 * 7 + 16 * 9 * 7)


@pytest.mark.parametrize("kwargs,error", [(dict(num_kernels=0), ValueError), (dict(temperature=-1.0), ValueError),
                                          (dict(min_channels=0), ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="ODConv2d"):
        ODConv2d(4, 6, **kwargs)

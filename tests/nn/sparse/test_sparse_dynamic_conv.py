"""SparseDynamicConv3d against its dense counterpart per batch item: attention softmax(FC(ReLU(FC(mean over the
item's ACTIVE sites))) / T), the kernels aggregated into one for the item, F.conv3d with submanifold padding
read at the item's sites (output and gradients of features, kernels, biases and attention layers);
attention properties and temperature annealing; gradcheck; shapes, repr and errors."""
import pytest
import torch

from irregconv import SparseTensor
from irregconv.nn import SparseDynamicConv3d
from irregconv.nn.dense.dynamic_conv import linear_temperature
from irregconv.testing import DEVICES


def _attention(temperature):
    def run(params, gap):
        hidden = torch.relu(gap @ params["attention.0.weight"].t() + params["attention.0.bias"])
        logits = hidden @ params["attention.2.weight"].t() + params["attention.2.bias"]
        return torch.softmax(logits / temperature, dim=1)
    return run


@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), ((3, 1, 1), 2), (1, 1)])
@pytest.mark.parametrize("groups", [1, 2, "depthwise"])
@pytest.mark.parametrize("temperature", [1.0, 30.0])
def test_dynamic_conv_matches_per_item_dense_conv(kernel_size, dilation, groups, temperature, sparse_input,
                                                  check_parity, expert_reference):
    c_in, c_out = (4, 4) if groups == "depthwise" else (4, 6)
    groups = c_in if groups == "depthwise" else groups
    x = sparse_input(channels=c_in, batch_size=3)
    conv = SparseDynamicConv3d(c_in, c_out, kernel_size, dilation, groups, num_kernels=3, temperature=temperature,
                               reduction=2).double()
    check_parity(conv, x, expert_reference(conv, x, _attention(temperature)))


def test_dynamic_conv_cross_region_no_bias_and_an_empty_batch_item(sparse_input, check_parity, expert_reference):
    x = sparse_input()
    coords = x.coords.clone()
    coords[:, 0] *= 2                                      # items 0 and 2 hold sites, item 1 none
    x = SparseTensor(x.feats, coords, x.spatial_shape, batch_size=3)
    conv = SparseDynamicConv3d(3, 5, 3, bias=False, region="cross", num_kernels=2, temperature=0.5).double()
    check_parity(conv, x, expert_reference(conv, x, _attention(0.5)))


@pytest.mark.parametrize("device", DEVICES)
def test_dynamic_conv_float32_on_device(device, sparse_input, check_parity, expert_reference):
    x = sparse_input(channels=8, num_sites=40, dtype=torch.float32, device=device)
    conv = SparseDynamicConv3d(8, 8, 3, groups=2, temperature=1.0).to(device)
    check_parity(conv, x, expert_reference(conv, x, _attention(1.0)), rtol=1e-4, atol=1e-5)


def test_dynamic_conv_gradcheck(sparse_input, gradcheck_module):
    x = sparse_input(channels=2, num_sites=5)
    gradcheck_module(SparseDynamicConv3d(2, 3, (3, 3, 1), num_kernels=2, temperature=1.0).double(), x)


def test_attention_rows_sum_to_one_and_temperature_anneals(sparse_input):
    x = sparse_input(channels=4)
    conv = SparseDynamicConv3d(4, 4, num_kernels=5, temperature=30.0).double()
    with torch.no_grad():
        conv.attention[2].weight.mul_(50)                  # sharp logits, so the temperature matters
    hot = conv.coefficients(x).detach()
    assert hot.shape == (2, 5) and bool((hot > 0).all())
    torch.testing.assert_close(hot.sum(dim=1), torch.ones(2, dtype=torch.float64), rtol=1e-7, atol=1e-9)
    assert conv.anneal_temperature(5) == linear_temperature(5, 30.0) == conv.temperature == 15.5
    assert conv.anneal_temperature(20) == 1.0 and conv.initial_temperature == 30.0
    cold = conv.coefficients(x).detach()
    assert float(cold.max(dim=1).values.min()) > float(hot.max(dim=1).values.max())   # colder is sharper


def test_dynamic_conv_shape_and_repr():
    conv = SparseDynamicConv3d(8, 16)
    assert conv.weight.shape == (4, 27, 8, 16) and conv.bias.shape == (4, 16) and conv.num_kernels == 4
    assert conv.attention[0].out_features == 8 // 4 + 1
    assert conv.extra_repr() == "8, 16, kernel_size=(3, 3, 3), num_kernels=4, temperature=30"
    grouped = SparseDynamicConv3d(4, 4, 3, groups=4, num_kernels=2, temperature=2.5)
    assert grouped.weight.shape == (2, 27, 4, 1, 1)
    assert grouped.extra_repr() == "4, 4, kernel_size=(3, 3, 3), groups=4, num_kernels=2, temperature=2.5"


def test_dynamic_conv_errors(sparse_input):
    conv = SparseDynamicConv3d(3, 4).double()
    with pytest.raises(ValueError, match="SparseDynamicConv3d: in_channels=3 but the input has 5 channels"):
        conv(sparse_input(channels=5))
    with pytest.raises(TypeError, match="SparseDynamicConv3d: input must be an irregconv.SparseTensor"):
        conv(torch.zeros(2, 3, 4, 4, 4))
    with pytest.raises(ValueError, match=r"SparseDynamicConv3d: temperature must lie in \[1e-06, inf\], got 0"):
        SparseDynamicConv3d(3, 4, temperature=0)
    with pytest.raises(TypeError, match="SparseDynamicConv3d: temperature must be a float, got '30'"):
        SparseDynamicConv3d(3, 4, temperature="30")
    with pytest.raises(ValueError, match="SparseDynamicConv3d: reduction must be an int >= 1, got 0"):
        SparseDynamicConv3d(3, 4, reduction=0)
    with pytest.raises(ValueError, match="SparseDynamicConv3d: num_kernels must be an int >= 1, got 0"):
        SparseDynamicConv3d(3, 4, num_kernels=0)

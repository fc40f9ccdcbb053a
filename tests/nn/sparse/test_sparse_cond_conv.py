"""SparseCondConv3d against its dense counterpart per batch item: routing sigmoid(linear(mean over the item's
ACTIVE sites)), the experts mixed into one kernel for the item, F.conv3d with submanifold padding read at
the item's sites (output and gradients of features, experts, biases and routing); gradcheck; per-item
independence; rulebook sharing; shapes, repr and errors."""
import pytest
import torch

from irregconv import SparseTensor
from irregconv.nn import SparseCondConv3d, SubMConv3d
from irregconv.rulebook import KernelRegion
from irregconv.testing import DEVICES


def _routing(params, gap):
    return torch.sigmoid(gap @ params["routing.weight"].t() + params["routing.bias"])


def _with_empty_item(x):
    """Items 0 and 2 keep the sites of items 0 and 1; item 1 has none."""
    coords = x.coords.clone()
    coords[:, 0] *= 2
    return SparseTensor(x.feats, coords, x.spatial_shape, batch_size=3)


@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), ((3, 1, 1), 1), (3, 2), (1, 1)])
@pytest.mark.parametrize("groups", [1, 2, "depthwise"])
@pytest.mark.parametrize("bias", [True, False])
def test_cond_conv_matches_per_item_dense_conv(kernel_size, dilation, groups, bias, sparse_input, check_parity,
                                               expert_reference):
    c_in, c_out = (4, 4) if groups == "depthwise" else (4, 6)
    groups = c_in if groups == "depthwise" else groups
    x = sparse_input(channels=c_in, batch_size=3)
    conv = SparseCondConv3d(c_in, c_out, kernel_size, dilation, groups, bias, num_experts=3).double()
    check_parity(conv, x, expert_reference(conv, x, _routing))


@pytest.mark.parametrize("region", ["cross", KernelRegion.custom([[0, 0, 0], [1, 0, 0], [0, -1, 1]])])
def test_cond_conv_regions_and_an_empty_batch_item(region, sparse_input, check_parity, expert_reference):
    x = _with_empty_item(sparse_input())
    conv = SparseCondConv3d(3, 5, 3, region=region, num_experts=2).double()
    check_parity(conv, x, expert_reference(conv, x, _routing))


@pytest.mark.parametrize("device", DEVICES)
def test_cond_conv_float32_on_device(device, sparse_input, check_parity, expert_reference):
    x = sparse_input(channels=8, num_sites=40, dtype=torch.float32, device=device)
    conv = SparseCondConv3d(8, 8, 3, groups=2, num_experts=4).to(device)
    check_parity(conv, x, expert_reference(conv, x, _routing), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 2])
def test_cond_conv_gradcheck(groups, sparse_input, gradcheck_module):
    x = sparse_input(channels=2, num_sites=5)
    gradcheck_module(SparseCondConv3d(2, 4, 3, groups=groups, num_experts=2).double(), x)


def test_each_item_gets_its_own_kernel(sparse_input):
    x = sparse_input(channels=3)
    conv = SparseCondConv3d(3, 4, 3, num_experts=3).double()
    out = conv(x)
    first = x.coords[:, 0] == 0
    changed = x.replace(torch.where(first[:, None], x.feats, 5 * x.feats))   # new features for item 1 only
    out2 = conv(changed)
    torch.testing.assert_close(out2.feats[first], out.feats[first], rtol=0, atol=0)
    assert not torch.allclose(out2.feats[~first], 5 * out.feats[~first])     # not linear: item 1's kernel changed
    # with the routing known, item b's output is a SubMConv3d with the mixed kernel, run on item b alone
    coeff = conv.coefficients(x)
    assert coeff.shape == (2, 3) and bool(((coeff > 0) & (coeff < 1)).all())
    for b in range(2):
        rows = x.coords[:, 0] == b
        alone = SparseTensor(x.feats[rows], x.coords[rows], x.spatial_shape, 2)
        plain = SubMConv3d(3, 4, 3).double()
        with torch.no_grad():
            plain.weight.copy_(torch.einsum("e,ekio->kio", coeff[b], conv.weight))
            plain.bias.copy_(coeff[b] @ conv.bias)
        torch.testing.assert_close(plain(alone).feats, out.feats[rows], rtol=1e-7, atol=1e-9)


def test_cond_conv_shares_the_submanifold_rulebook(sparse_input):
    x = sparse_input()
    y = SubMConv3d(3, 4, 3).double()(x)
    SparseCondConv3d(4, 4, 3).double()(y)
    SparseCondConv3d(4, 2, 3, num_experts=8).double()(y)
    assert x.sites.cache.builds == 2                      # the subm rulebook, and the per-item pooling one


def test_cond_conv_shape_and_repr():
    conv = SparseCondConv3d(4, 8)
    assert conv.weight.shape == (4, 27, 4, 8) and conv.bias.shape == (4, 8) and conv.routing.out_features == 4
    assert repr(conv).startswith("SparseCondConv3d(\n  4, 8, kernel_size=(3, 3, 3), num_experts=4\n  (routing): ")
    grouped = SparseCondConv3d(4, 6, (3, 1, 1), dilation=2, groups=2, bias=False, region="cross", num_experts=5)
    assert grouped.weight.shape == (5, 3, 2, 2, 3) and grouped.bias is None
    assert grouped.extra_repr() == ("4, 6, kernel_size=(3, 1, 1), dilation=(2, 2, 2), groups=2, region=cross, "
                                    "bias=False, num_experts=5")


def test_cond_conv_errors(sparse_input):
    conv = SparseCondConv3d(3, 4).double()
    with pytest.raises(ValueError, match="SparseCondConv3d: in_channels=3 but the input has 2 channels"):
        conv(sparse_input(channels=2))
    with pytest.raises(ValueError, match="SparseCondConv3d: expects 3 spatial axes"):
        conv(sparse_input((5, 5)))
    with pytest.raises(TypeError, match="SparseCondConv3d: input features are torch.float32 but the weight"):
        conv(sparse_input(dtype=torch.float32))
    with pytest.raises(TypeError, match=r"SparseCondConv3d: num_experts must be an int, got 2.0"):
        SparseCondConv3d(3, 4, num_experts=2.0)
    with pytest.raises(ValueError, match=r"SparseCondConv3d: num_experts must be an int >= 1, got 0"):
        SparseCondConv3d(3, 4, num_experts=0)
    with pytest.raises(ValueError, match="SparseCondConv3d: groups=2 must divide in_channels=3"):
        SparseCondConv3d(3, 4, groups=2)

"""SparseSequential and ToDense: ordinary modules (BatchNorm1d, ReLU, Dropout, Linear) act on the features
exactly as when applied by hand (outputs, gradients, running statistics, dropout masks); naming by
position, OrderedDict and keyword; nesting and slicing; ToDense against the densify oracle; gradcheck."""
import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from irregconv import SparseTensor
from irregconv.nn import SparseConv3d, SparseGlobalPool, SparseMaxPool3d, SparseSequential, SubMConv3d, ToDense
from irregconv.testing import DEVICES, densify

F64 = dict(rtol=1e-7, atol=1e-9)


def _layers():
    return [SubMConv3d(3, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.3), nn.Linear(4, 5),
            SparseConv3d(5, 2, 3, stride=2, padding=1)]


def _by_hand(layers, x):
    """The same computation, with each ordinary module applied to the features explicitly."""
    for layer in layers:
        x = layer(x) if isinstance(layer, (SubMConv3d, SparseConv3d)) else x.replace(layer(x.feats))
    return x


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_sequential_equals_the_modules_applied_to_the_features(training, device, sparse_input):
    x = sparse_input(device=device)
    layers = [layer.to(device, torch.float64) for layer in _layers()]
    seq = SparseSequential(*layers).train(training)
    twins = copy.deepcopy(layers)
    for twin in twins:
        twin.train(training)
    feats = x.feats.clone().requires_grad_()
    twin_feats = x.feats.clone().requires_grad_()
    torch.manual_seed(7)                             # the same dropout mask on both sides
    out = seq(x.replace(feats))
    torch.manual_seed(7)
    ref = _by_hand(twins, x.replace(twin_feats))
    assert out.sites is ref.sites
    torch.testing.assert_close(out.feats, ref.feats, **F64)
    bn, twin_bn = layers[1], twins[1]
    torch.testing.assert_close(bn.running_mean, twin_bn.running_mean, **F64)
    torch.testing.assert_close(bn.running_var, twin_bn.running_var, **F64)
    cotangent = torch.randn_like(out.feats)
    params, twin_params = [feats, *seq.parameters()], [twin_feats, *[p for t in twins for p in t.parameters()]]
    for got, want in zip(torch.autograd.grad(out.feats, params, cotangent),
                         torch.autograd.grad(ref.feats, twin_params, cotangent)):
        torch.testing.assert_close(got, want, **F64)


def test_sequential_dropout_is_applied_per_feature_in_training_only(sparse_input):
    x = sparse_input(channels=8, num_sites=40)
    seq = SparseSequential(nn.Dropout(0.5))
    dropped = seq(x)
    zeros = dropped.feats == 0
    assert 0 < int(zeros.sum()) < zeros.numel()
    torch.testing.assert_close(dropped.feats[~zeros], 2 * x.feats[~zeros], rtol=0, atol=0)
    assert seq.eval()(x).feats is x.feats


def test_sequential_naming_by_position_ordered_dict_and_keywords(sparse_input):
    conv, bn, relu = SubMConv3d(3, 4), nn.BatchNorm1d(4), nn.ReLU()
    assert [n for n, _ in SparseSequential(conv, bn, relu).named_children()] == ["0", "1", "2"]
    named = SparseSequential(OrderedDict([("conv", conv), ("bn", bn), ("act", relu)]))
    assert [n for n, _ in named.named_children()] == ["conv", "bn", "act"] and named.conv is conv
    by_keyword = SparseSequential(conv=conv, bn=bn, act=relu)
    assert [n for n, _ in by_keyword.named_children()] == ["conv", "bn", "act"]
    mixed = SparseSequential(conv, act=relu)
    assert [n for n, _ in mixed.named_children()] == ["0", "act"]
    assert set(by_keyword.state_dict()) == {"conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                            "bn.running_var", "bn.num_batches_tracked"}
    x = sparse_input(dtype=torch.float32)
    torch.testing.assert_close(named(x).feats, by_keyword(x).feats, rtol=0, atol=0)
    with pytest.raises(ValueError, match="SparseSequential: module name 'conv' given twice"):
        SparseSequential(OrderedDict([("conv", conv)]), conv=bn)


def test_sequential_nesting_and_slicing(sparse_input):
    x = sparse_input()
    inner = SparseSequential(SubMConv3d(3, 4), nn.ReLU())
    outer = SparseSequential(inner, SparseMaxPool3d(2), SubMConv3d(4, 2)).double()
    manual = outer[2](outer[1](x.replace(torch.relu(inner[0](x).feats))))
    torch.testing.assert_close(outer(x).feats, manual.feats, **F64)
    head = outer[:2]
    assert isinstance(head, SparseSequential) and head(x).sites is outer[1](inner(x)).sites


def test_sequential_ends_in_dense_outputs(sparse_input):
    x = sparse_input()
    conv = SubMConv3d(3, 4).double()
    dense = SparseSequential(conv, nn.ReLU(), ToDense())(x)
    y = conv(x)
    torch.testing.assert_close(dense, densify(torch.relu(y.feats), x.coords, x.spatial_shape, x.batch_size), **F64)
    assert dense.shape == (x.batch_size, 4, *x.spatial_shape)
    pooled = SparseSequential(conv, SparseGlobalPool("mean"))(x)
    assert pooled.shape == (x.batch_size, 4)


def test_to_dense_matches_densify_with_gradients(sparse_input, check_parity, gradcheck_module):
    x = sparse_input(channels=2)
    to_dense = ToDense()
    assert repr(to_dense) == "ToDense()"
    check_parity(to_dense, x, lambda feats: densify(feats, x.coords, x.spatial_shape, x.batch_size))
    gradcheck_module(to_dense, sparse_input(channels=2, num_sites=4, spatial_shape=(2, 3, 3)))
    with pytest.raises(TypeError, match="ToDense: input must be an irregconv.SparseTensor, got Tensor"):
        to_dense(torch.zeros(2, 2))


def test_sequential_gradcheck(sparse_input, gradcheck_module):
    seq = SparseSequential(SubMConv3d(2, 3), nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 2),
                           SparseConv3d(2, 2, 2, stride=2)).double()
    gradcheck_module(seq, sparse_input(channels=2, num_sites=6))


def test_sequential_repr_and_errors(sparse_input):
    seq = SparseSequential(conv=SubMConv3d(3, 4), bn=nn.BatchNorm1d(5))
    assert repr(seq).startswith("SparseSequential(\n  (conv): SubMConv3d(3, 4, kernel_size=(3, 3, 3))\n  (bn): ")
    with pytest.raises(ValueError, match=r"BatchNorm1d\(5\): expected feature rows \[N, 5\], got \[40, 4\]; the "
                                         r"previous layer's out_channels must equal num_features"):
        seq(sparse_input(dtype=torch.float32))
    with pytest.raises(ValueError, match="SubMConv3d: in_channels=3 but the input has 2 channels"):
        SparseSequential(nn.Linear(3, 2), SubMConv3d(3, 4))(sparse_input(dtype=torch.float32))
    x = SparseTensor(torch.randn(1, 3), torch.zeros(1, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="expected more than 1 row in training mode, got 1"):
        SparseSequential(nn.BatchNorm1d(3))(x)


@pytest.mark.parametrize("hooked", [False, True])
def test_batch_norm_then_relu_runs_in_place_unless_the_relu_has_hooks(sparse_input, hooked):
    """A ReLU right after a BatchNorm1d is applied in place on the normalised rows (no extra buffer); a ReLU
    with a forward hook runs as a module, so the hook still sees its call."""
    x = sparse_input()
    relu, calls = nn.ReLU(), []
    if hooked:
        relu.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    seq = SparseSequential(SubMConv3d(3, 4, 3), nn.BatchNorm1d(4), relu).double().eval()
    with torch.no_grad():
        seq[1].running_mean.normal_()
        out = seq(x)
        expected = torch.relu(seq[1](seq[0](x).feats))
    torch.testing.assert_close(out.feats, expected, **F64)
    assert calls == ([out.feats.shape] if hooked else [])

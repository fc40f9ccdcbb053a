"""spconv.pytorch.modules: SparseSequential, the feature-wise modules (SparseBatchNorm, SparseSyncBatchNorm,
SparseReLU, SparseIdentity), ToDense / RemoveGrid and the module tests, against spconv 2.3.8."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from irregconv.compat import spconv
from irregconv.testing import with_package

needs_spconv = with_package("spconv")


def test_sparse_sequential_containers(make_input):
    feats, coords, shape, batch = make_input()
    conv, relu = spconv.SubMConv3d(4, 4, 3), nn.ReLU()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    expected = relu(conv(x).features)
    for seq in (spconv.SparseSequential(conv, relu), spconv.SparseSequential(OrderedDict(c=conv, r=relu)),
                spconv.SparseSequential(c=conv, r=relu)):
        torch.testing.assert_close(seq(x).features, expected, rtol=0, atol=0)
    seq = spconv.SparseSequential(conv)
    seq.add(nn.BatchNorm1d(4))
    with pytest.raises(KeyError, match="SparseSequential.add: a module named '1' exists already"):
        seq.add(relu, "1")
    empty = spconv.SparseConvTensor(feats[:0], coords[:0], shape, batch)
    assert seq(empty).features.shape == (0, 4)  # the batch norm is skipped for zero rows, as in spconv


FEATURE_MODULES = [("SparseBatchNorm", (4,)), ("SparseSyncBatchNorm", (4,)), ("SparseReLU", ()), ("SparseIdentity", ())]


def feature_twins(real, name, args, seed=0):
    theirs = getattr(real.modules, name)(*args)
    ours = getattr(spconv.modules, name)(*args)
    if args:  # batch norms: affine parameters and running statistics that are not the identity
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for tensor in (theirs.weight, theirs.bias, theirs.running_mean):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            theirs.running_var.copy_(0.5 + torch.rand(theirs.running_var.shape, generator=gen))
        ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@needs_spconv
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name,args", FEATURE_MODULES)
def test_feature_modules_match_spconv(name, args, training, real_spconv, make_input):
    feats, coords, shape, batch = make_input()
    real = real_spconv()
    theirs, ours = feature_twins(real, name, args)
    theirs.train(training), ours.train(training)
    expected = theirs(real.SparseConvTensor(feats, coords, shape, batch))
    x = spconv.SparseConvTensor(feats, coords, shape, batch, indice_dict={"k": None})
    got = ours(x)
    assert isinstance(got, spconv.SparseConvTensor) and got is not x and got.indices is x.indices
    assert got.indice_dict is x.indice_dict
    torch.testing.assert_close(got.features, expected.features, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):  # running statistics updated alike
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours(feats), theirs(feats), rtol=1e-5, atol=1e-6)  # a plain tensor as torch's module


@pytest.mark.parametrize("training", [True, False])
def test_sparse_batch_norm_gradients_match_dense_torch(training, make_input):
    feats, coords, shape, batch = make_input(dtype=torch.float64)
    ours = spconv.SparseBatchNorm(4).double().train(training)
    reference = nn.BatchNorm1d(4).double().train(training)
    with torch.no_grad():
        for module in (ours, reference):
            module.weight.copy_(torch.linspace(0.5, 2.0, 4, dtype=torch.float64))
            module.running_var.fill_(0.7)
    leaf, ref_leaf = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    out = ours(spconv.SparseConvTensor(leaf, coords, shape, batch)).features
    expected = reference(ref_leaf)
    torch.testing.assert_close(out, expected, rtol=1e-7, atol=1e-9)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-7, atol=1e-9)


@needs_spconv
def test_sequential_of_feature_modules_matches_spconv(real_spconv, run_spconv, make_input, shim_twin):
    feats, coords, shape, batch = make_input()
    real = real_spconv()
    conv_theirs, conv_ours = shim_twin("SubMConv3d", 4, 4, 3, indice_key="s")
    bn_theirs, bn_ours = feature_twins(real, "SparseBatchNorm", (4,))
    theirs = real.SparseSequential(conv_theirs, bn_theirs, real.SparseReLU(), real.SparseIdentity(), real.Identity())
    ours = spconv.SparseSequential(conv_ours, bn_ours, spconv.SparseReLU(), spconv.SparseIdentity(), spconv.Identity())
    expected = run_spconv(theirs.eval(), feats, coords, shape, batch)
    got = ours.eval()(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert torch.equal(got.indices, expected.indices)
    torch.testing.assert_close(got.features, expected.features, rtol=1e-4, atol=1e-5)


@needs_spconv
def test_module_tests_and_names_match_spconv(real_spconv):
    real = real_spconv()
    pairs = [(real.SubMConv3d(2, 3, 3), spconv.SubMConv3d(2, 3, 3)),
             (real.SparseInverseConv3d(2, 3, 3, "k"), spconv.SparseInverseConv3d(2, 3, 3, "k")),
             (real.SparseMaxPool3d(2), spconv.SparseMaxPool3d(2)), (real.ToDense(), spconv.ToDense()),
             (real.SparseSequential(), spconv.SparseSequential()), (real.AddTable(), spconv.AddTable()),
             (real.SparseBatchNorm(3), spconv.SparseBatchNorm(3)), (real.SparseReLU(), spconv.SparseReLU()),
             (real.SparseIdentity(), spconv.SparseIdentity()), (real.Identity(), spconv.Identity()),
             (real.modules.SparseSyncBatchNorm(3), spconv.SparseSyncBatchNorm(3)),
             (nn.BatchNorm1d(3), nn.BatchNorm1d(3)), (nn.ReLU(), nn.ReLU())]
    for theirs, ours in pairs:
        assert spconv.modules.is_spconv_module(ours) == real.modules.is_spconv_module(theirs), type(ours).__name__
        assert spconv.modules.is_sparse_conv(ours) == real.modules.is_sparse_conv(theirs), type(ours).__name__

    def model(sp):
        return nn.ModuleDict({"encoder": sp.SparseSequential(sp.SubMConv3d(2, 3, 3), nn.ReLU(),
                                                             sp.SparseSequential(sp.SparseConv3d(3, 3, 2, 2))),
                              "head": sp.ToDense()})
    theirs, ours = model(real), model(spconv)
    real.assign_name_for_sparse_modules(theirs)
    spconv.assign_name_for_sparse_modules(ours)
    names = [(name, m._sparse_unique_name) for name, m in ours.named_modules() if isinstance(m, spconv.SparseModule)]
    assert names == [(name, m._sparse_unique_name) for name, m in theirs.named_modules()
                     if isinstance(m, real.SparseModule)]
    assert ("encoder.2.0", "encoder.2.0") in names
    with pytest.raises(TypeError, match="assign_name_for_sparse_modules: module must be a torch.nn.Module"):
        spconv.assign_name_for_sparse_modules("model")


def test_remove_grid_identity_and_bad_input(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch, grid=torch.zeros(3))
    assert spconv.RemoveGrid()(x) is x and x.grid is None
    assert spconv.Identity()(x) is x and spconv.Identity()([x, 1]) == [x, 1]
    assert spconv.Identity().input_spatial_size([4, 4]) == [4, 4]
    with pytest.raises(TypeError, match="SparseReLU: input must be a SparseConvTensor or a torch.Tensor, got list"):
        spconv.SparseReLU()([x])
    with pytest.raises(TypeError, match="RemoveGrid: input must be a SparseConvTensor, got Tensor"):
        spconv.RemoveGrid()(feats)
    with pytest.raises(ValueError, match=r"SparseBatchNorm\(4\): expected feature rows \[N, 4\], got \[240, 3\]"):
        spconv.SparseBatchNorm(4)(x.replace_feature(feats[:, :3]))

"""The spconv drop-in: API surface, parity with spconv 2.3.8 (outputs) and with dense torch (outputs and
gradients), the checked ``indice_key``, checkpoints, detector-code patterns, and the SECOND-style backbone
on real KITTI scans against spconv."""
import copy
import sys
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import irregconv
from irregconv.compat import spconv
from irregconv.data import read_points, voxelize
from irregconv.models.second import SECONDBackbone8x, spconv_second_backbone_8x
from irregconv.testing import (DEVICES, assert_parity, data_path, densify, krsc_to_torch, random_coords,
                               values_at, with_data, with_package)

needs_spconv = with_package("spconv")
KITTI_SCANS = ["kitti_training_000000.bin", "kitti_training_000001.bin", "kitti_000008_reduced.bin"]
VOXEL_SIZE, POINT_RANGE = (0.05, 0.05, 0.1), (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)


def real_spconv():
    import spconv.pytorch as real
    return real


def run_spconv(module, *tensor_args):
    """A real spconv module on ``SparseConvTensor(*tensor_args)``: one thread (its CPU path races with more,
    see NOTES.md; set right before the call because a first numba launch elsewhere may reset the count),
    its convolutions in train mode (a bias in eval mode fails on its CPU path; other modules keep their
    mode), no grad (its backward needs CUDA)."""
    for sub in module.modules():
        if isinstance(sub, real_spconv().conv.SparseConvolution):
            sub.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return module(real_spconv().SparseConvTensor(*tensor_args))
    finally:
        torch.set_num_threads(threads)


def sorted_rows(features, indices, spatial_shape):
    """Rows ordered by (batch, *spatial): spconv orders strided outputs its own way."""
    key = indices[:, 0].long()
    for axis, extent in enumerate(spatial_shape):
        key = key * extent + indices[:, 1 + axis].long()
    order = torch.argsort(key)
    return features[order], indices[order]


def make_input(num_sites=120, spatial_shape=(9, 10, 11), batch_size=2, channels=4, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    coords = random_coords(num_sites, spatial_shape, batch_size, generator=gen)
    feats = torch.randn(coords.size(0), channels, generator=gen, dtype=dtype)
    return feats, coords, list(spatial_shape), batch_size


def shim_twin(name, *args, **kwargs):
    """The spconv module ``name`` and the shim's, with the same (spconv-initialised) parameters."""
    theirs = getattr(real_spconv(), name)(*args, **kwargs)
    ours = getattr(spconv, name)(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


# ------------------------------------------------------------------------------------- API surface


def test_module_paths_detector_code_imports():
    assert spconv.pytorch is spconv and spconv.conv.SparseConvolution is spconv.SparseConvolution
    assert spconv.core.SparseConvTensor is spconv.SparseConvTensor and spconv.modules.SparseModule is spconv.SparseModule
    assert spconv.pool.SparseMaxPool3d is spconv.SparseMaxPool3d
    for kind in ("SubMConv", "SparseConv", "SparseInverseConv", "SparseConvTranspose"):
        for dims in (1, 2, 3, 4):
            cls = getattr(spconv, f"{kind}{dims}d")
            assert issubclass(cls, spconv.conv.SparseConvolution) and issubclass(cls, spconv.SparseModule)
            assert cls.ndim == dims
    assert issubclass(spconv.SparseSequential, spconv.SparseModule) and issubclass(spconv.ToDense, spconv.SparseModule)


def test_install_resolves_spconv_imports(monkeypatch):
    for name in spconv.SPCONV_MODULE_NAMES:  # restored (or removed) when the test ends
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name))
    spconv.install()
    import spconv.pytorch as imported
    from spconv.pytorch import SparseConvTensor
    from spconv.pytorch.conv import SparseConvolution
    assert imported is spconv and SparseConvTensor is spconv.SparseConvTensor
    assert SparseConvolution is spconv.SparseConvolution


@needs_spconv
@pytest.mark.parametrize("name,args,kwargs", [
    ("SubMConv3d", (4, 16, 3), {}),
    ("SubMConv3d", (4, 16, 1), {"bias": False}),
    ("SubMConv2d", (3, 5, (3, 5)), {}),
    ("SparseConv3d", (16, 32, 3, 2, 1), {"record_voxel_count": True}),
    ("SparseConv3d", (64, 128, (3, 1, 1), (2, 1, 1)), {"bias": False}),
    ("SparseConv1d", (2, 3, 5, 2), {}),
    ("SparseInverseConv3d", (32, 16, 3, "key"), {}),
    ("SparseConvTranspose3d", (8, 4, 3, 2), {}),
    ("SparseConvTranspose2d", (8, 4, 2, 2), {"record_voxel_count": True}),
    ("SparseMaxPool3d", (3, 2, 1), {"record_voxel_count": True}),
    ("SparseAvgPool3d", (3, 2, 1), {"record_voxel_count": True}),
    ("SparseAvgPool2d", (2,), {}),
])
def test_parameter_names_and_shapes_match_spconv(name, args, kwargs):
    theirs = getattr(real_spconv(), name)(*args, **kwargs).state_dict()
    ours = getattr(spconv, name)(*args, **kwargs).state_dict()
    assert list(ours) == list(theirs)
    assert [(v.shape, v.dtype) for v in ours.values()] == [(v.shape, v.dtype) for v in theirs.values()]


def test_weight_layout_conversions_round_trip():
    weight = torch.randn(8, 3, 1, 2, 5)
    native = spconv.weight_to_native(weight)
    assert native.shape == (6, 5, 8) and torch.equal(native[4], weight[:, 2, 0, 0, :].t())
    assert torch.equal(spconv.weight_from_native(native, (3, 1, 2)), weight)
    one = torch.randn(8, 1, 1, 1, 5)
    assert torch.equal(spconv.weight_to_native(one, conv1x1=True)[0], one.reshape(5, 8))
    assert torch.equal(spconv.weight_from_native(spconv.weight_to_native(one, True), (1, 1, 1), True), one)


def test_repr_and_extra_repr():
    conv = spconv.SparseConv3d(4, 8, 3, stride=2, padding=1, bias=False, indice_key="down")
    assert repr(conv) == "SparseConv3d(4, 8, kernel_size=[3, 3, 3], stride=[2, 2, 2], padding=[1, 1, 1], " \
                         "bias=False, indice_key='down')"
    feats, coords, shape, batch = make_input()
    assert repr(spconv.SparseConvTensor(feats, coords, shape, batch)) == \
        "SparseConvTensor[shape=[240, 4], spatial_shape=[9, 10, 11], batch_size=2]"


# ------------------------------------------------------------------------------ parity with spconv


CONV_CASES = [
    ("SubMConv3d", (4, 6, 3), {}),
    ("SubMConv3d", (4, 6, 1), {}),                                 # spconv reads this weight as [C_in, C_out]
    ("SubMConv3d", (4, 6, 3), {"dilation": 2}),
    ("SubMConv3d", (4, 6, (1, 3, 5)), {"bias": False}),
    ("SparseConv3d", (4, 6, 3, 2, 1), {}),
    ("SparseConv3d", (4, 6, (3, 1, 1), (2, 1, 1)), {}),
    ("SparseConv3d", (4, 6, 3, 2, (0, 1, 1)), {}),
    ("SparseConv3d", (4, 6, 1), {}),                               # kernel volume 1, stride 1: same quirk
    ("SparseConv3d", (4, 6, 1, 2), {}),                            # stride 2: spconv's regular path
    ("SparseConv3d", (4, 6, 2, 2), {}),
    ("SparseConv3d", (4, 6, 3, 1, 0, 2), {}),
    ("SparseConvTranspose3d", (4, 6, 3, 2), {}),
    ("SparseConvTranspose3d", (4, 6, 2, 2, 1), {}),
]


@needs_spconv
@pytest.mark.parametrize("name,args,kwargs", CONV_CASES)
def test_conv_matches_spconv(name, args, kwargs):
    feats, coords, shape, batch = make_input()
    theirs, ours = shim_twin(name, *args, **kwargs)
    expected = run_spconv(theirs, feats, coords, shape, batch)
    got = ours(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert got.spatial_shape == expected.spatial_shape and got.batch_size == expected.batch_size
    if name.startswith("SubM"):
        assert torch.equal(got.indices, expected.indices)  # submanifold outputs keep the input order
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert torch.equal(got_idx, exp_idx)
    torch.testing.assert_close(got_feats, exp_feats, rtol=1e-4, atol=1e-5)


@needs_spconv
@pytest.mark.parametrize("name,args", [("SubMConv2d", (3, 5, 3)), ("SparseConv2d", (3, 5, 3, 2, 1)),
                                       ("SparseConv1d", (3, 5, 3, 2))])
def test_conv_matches_spconv_other_dims(name, args):
    dims = int(name[-2])
    feats, coords, shape, batch = make_input(40, (12, 13)[:dims] if dims == 2 else (30,), channels=3)
    theirs, ours = shim_twin(name, *args)
    expected = run_spconv(theirs, feats, coords, shape, batch)
    got = ours(spconv.SparseConvTensor(feats, coords, shape, batch))
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert got.spatial_shape == expected.spatial_shape and torch.equal(got_idx, exp_idx)
    torch.testing.assert_close(got_feats, exp_feats, rtol=1e-4, atol=1e-5)


@needs_spconv
@pytest.mark.parametrize("args", [(3, 2, 1), (2,), ((3, 1, 1), (2, 1, 1))])
def test_max_pool_matches_spconv_for_nonnegative_features(args):
    feats, coords, shape, batch = make_input()
    feats = feats.abs()  # spconv starts its maximum at 0, so only non-negative features agree
    theirs, ours = real_spconv().SparseMaxPool3d(*args), spconv.SparseMaxPool3d(*args)
    expected = run_spconv(theirs, feats, coords, shape, batch)
    got = ours(spconv.SparseConvTensor(feats, coords, shape, batch))
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert got.spatial_shape == expected.spatial_shape and torch.equal(got_idx, exp_idx)
    torch.testing.assert_close(got_feats, exp_feats, rtol=0, atol=0)


def test_max_pool_is_exact_for_negative_features():
    feats, coords, shape, batch = make_input()
    feats = -feats.abs() - 0.5
    out = spconv.SparseMaxPool3d(3, 2, 1)(spconv.SparseConvTensor(feats, coords, shape, batch))
    grid = densify(feats, coords, shape, batch)
    active = densify(torch.ones(coords.size(0), 1), coords, shape, batch) > 0
    grid = grid.masked_fill(~active, float("-inf"))
    expected = values_at(F.max_pool3d(grid, 3, 2, 1), out.indices)
    torch.testing.assert_close(out.features, expected, rtol=0, atol=0)


@needs_spconv
@pytest.mark.parametrize("down", [("SparseConv3d", (4, 6, 3, 2, 1)), ("SparseConv3d", (4, 6, 2, 2)),
                                  ("SparseMaxPool3d", (3, 2, 1))])
def test_inverse_conv_matches_spconv(down):
    feats, coords, shape, batch = make_input()
    name, args = down
    feats = feats.abs()  # spconv's max pool starts at 0: only non-negative features agree
    real = real_spconv()
    kernel = args[2] if name == "SparseConv3d" else args[0]
    channels = args[1] if name == "SparseConv3d" else 4
    if name == "SparseConv3d":
        theirs_down, ours_down = shim_twin(name, *args, indice_key="down")
    else:
        theirs_down, ours_down = real.SparseMaxPool3d(*args, indice_key="down"), spconv.SparseMaxPool3d(*args, indice_key="down")
    theirs_up, ours_up = shim_twin("SparseInverseConv3d", channels, 5, kernel, "down")
    expected = run_spconv(real.SparseSequential(theirs_down, theirs_up), feats, coords, shape, batch)
    got = spconv.SparseSequential(ours_down, ours_up)(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert got.spatial_shape == expected.spatial_shape == shape
    assert torch.equal(got.indices, coords) and torch.equal(expected.indices, coords)
    torch.testing.assert_close(got.features, expected.features, rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------- dense oracle: outputs and gradients


def _torch_weight(module, weight):
    """The shim's KRSC weight in torch's conv (or conv_transpose) layout, read as the shim reads it."""
    if module.conv1x1:
        c_in, c_out = module.in_channels, module.out_channels
        weight = weight.reshape(c_in, c_out).t().reshape(c_out, *module.kernel_size, c_in)
    torch_weight = krsc_to_torch(weight)                                   # [C_out, C_in, *k]
    return torch_weight.transpose(0, 1) if (module.transposed or module.inverse) else torch_weight


def _shift(coords, padding):
    return torch.cat([coords[:, :1], coords[:, 1:] + torch.tensor(padding, dtype=coords.dtype)], dim=1)


def _dense_reference(module, feats, weight, bias, coords, shape, batch, out_coords, inverse_of=None):
    """Dense torch convolution of the densified input with the module's geometry, read at ``out_coords``."""
    x = densify(feats, coords, shape, batch)
    w = _torch_weight(module, weight)
    if module.subm:
        padding = [(k // 2) * d for k, d in zip(module.kernel_size, module.dilation)]
        out = values_at(F.conv3d(x, w, None, 1, padding, module.dilation), out_coords)
    elif module.inverse:  # adjoint of the strided conv, unpadded, then shifted back by its padding
        stride, padding, dilation = inverse_of
        out = values_at(F.conv_transpose3d(x, w, None, stride, 0, 0, 1, dilation), _shift(out_coords, padding))
    elif module.transposed:
        out = values_at(F.conv_transpose3d(x, w, None, module.stride, 0, 0, 1, module.dilation),
                        _shift(out_coords, module.padding))
    else:
        out = values_at(F.conv3d(x, w, None, module.stride, module.padding, module.dilation), out_coords)
    return out if bias is None else out + bias


@pytest.mark.parametrize("name,args,kwargs", [
    ("SubMConv3d", (3, 4, 3), {}),
    ("SubMConv3d", (3, 4, 1), {}),
    ("SubMConv3d", (3, 4, (3, 1, 3)), {"dilation": (1, 1, 2)}),
    ("SparseConv3d", (3, 4, 3, 2, 1), {}),
    ("SparseConv3d", (3, 4, (3, 1, 1), (2, 1, 1)), {"bias": False}),
    ("SparseConvTranspose3d", (3, 4, 3, 2, 1), {}),
])
def test_conv_outputs_and_gradients_match_dense_torch(name, args, kwargs):
    feats, coords, shape, batch = make_input(40, (6, 7, 5), channels=3, dtype=torch.float64)
    module = getattr(spconv, name)(*args, **kwargs).double()
    out_coords = module(spconv.SparseConvTensor(feats, coords, shape, batch)).indices
    bias = module.bias

    def ours(feats, weight, *bias):
        params = {"weight": weight, **({"bias": bias[0]} if bias else {})}
        return torch.func.functional_call(module, params, (spconv.SparseConvTensor(feats, coords, shape, batch),)).features

    def oracle(feats, weight, *bias):
        return _dense_reference(module, feats, weight, bias[0] if bias else None, coords, shape, batch, out_coords)

    inputs = [feats.requires_grad_(), module.weight.detach().clone().requires_grad_()]
    if bias is not None:
        inputs.append(bias.detach().clone().requires_grad_())
    assert_parity(ours, oracle, inputs, rtol=1e-7, atol=1e-9, generator=torch.Generator().manual_seed(1))


def test_inverse_conv_outputs_and_gradients_match_dense_torch():
    feats, coords, shape, batch = make_input(40, (6, 7, 5), channels=3, dtype=torch.float64)
    down = spconv.SparseConv3d(3, 4, 3, 2, 1, indice_key="d").double()
    up = spconv.SparseInverseConv3d(4, 2, 3, "d").double()
    mid = down(spconv.SparseConvTensor(feats, coords, shape, batch))

    def ours(feats_mid, weight, bias):
        return torch.func.functional_call(up, {"weight": weight, "bias": bias}, (mid.replace_feature(feats_mid),)).features

    def oracle(feats_mid, weight, bias):
        return _dense_reference(up, feats_mid, weight, bias, mid.indices, mid.spatial_shape, batch, coords,
                                inverse_of=(down.stride, down.padding, down.dilation))

    inputs = [mid.features.detach().clone().requires_grad_(), up.weight.detach().clone().requires_grad_(),
              up.bias.detach().clone().requires_grad_()]
    assert_parity(ours, oracle, inputs, rtol=1e-7, atol=1e-9, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name,args", [("SubMConv3d", (2, 3, 3)), ("SparseConv3d", (2, 3, 2, 2)),
                                       ("SubMConv3d", (2, 3, 1))])
def test_gradcheck_float64(name, args):
    feats, coords, shape, batch = make_input(6, (3, 3, 3), batch_size=1, channels=2, dtype=torch.float64)
    module = getattr(spconv, name)(*args).double()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)  # one coordinate set: rulebooks built once

    def fn(feats, weight, bias):
        return torch.func.functional_call(module, {"weight": weight, "bias": bias}, (x.replace_feature(feats),)).features

    inputs = (feats.requires_grad_(), module.weight.detach().clone().requires_grad_(),
              module.bias.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs)


# ----------------------------------------------------------------------------------- indice_key


def test_subm_key_reused_with_another_kernel_size_raises():
    feats, coords, shape, batch = make_input()
    x = spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(spconv.SparseConvTensor(feats, coords, shape, batch))
    with pytest.raises(ValueError, match=r"SubMConv3d: indice_key='subm1' was recorded by a subm layer with "
                                         r"kernel_size=\(3, 3, 3\).*kernel_size=\(5, 5, 5\)"):
        spconv.SubMConv3d(4, 4, 5, indice_key="subm1")(x)
    with pytest.raises(ValueError, match="dilation"):
        spconv.SubMConv3d(4, 4, 3, dilation=2, indice_key="subm1")(x)


def test_subm_key_reused_on_other_sites_raises():
    feats, coords, shape, batch = make_input()
    x = spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(spconv.SparseConvTensor(feats, coords, shape, batch))
    y = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="down")(x)
    with pytest.raises(ValueError, match=r"indice_key='subm1' was recorded on 240 sites on spatial_shape \[9, 10, 11\]"):
        spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(y)


def test_subm_key_reused_on_equal_sites_reuses_the_rulebook():
    feats, coords, shape, batch = make_input()
    x = spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(spconv.SparseConvTensor(feats, coords, shape, batch))
    record = x.find_indice_pair("subm1")
    builds = record.in_sites.cache.builds
    same = spconv.SparseConvTensor(x.features, coords.clone().long(), shape, batch, indice_dict=x.indice_dict)
    out = spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(same)
    assert record.in_sites.cache.builds == builds and out.indices is record.in_sites.coords
    assert x.find_indice_pair(None) is None and x.find_indice_pair("nope") is None


def test_strided_key_reused_with_another_geometry_raises():
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    y = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="down")(x)
    rerun = spconv.SparseConvTensor(feats, coords, shape, batch, indice_dict=y.indice_dict)
    again = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="down")(rerun)
    assert again.indices is y.indices  # same geometry on the same sites: allowed, same rulebook and sites
    with pytest.raises(ValueError, match=r"recorded by a strided layer with kernel_size=\(3, 3, 3\), "
                                         r"stride=\(2, 2, 2\), padding=\(1, 1, 1\)"):
        spconv.SparseConv3d(4, 4, 3, 2, 0, indice_key="down")(
            spconv.SparseConvTensor(feats, coords, shape, batch, indice_dict=y.indice_dict))
    with pytest.raises(ValueError, match="this is a subm layer"):
        spconv.SubMConv3d(4, 4, 3, indice_key="down")(
            spconv.SparseConvTensor(feats, coords, shape, batch, indice_dict=y.indice_dict))


def test_inverse_conv_errors():
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    with pytest.raises(ValueError, match="SparseInverseConv3d: an inverse convolution needs indice_key"):
        spconv.SparseInverseConv3d(4, 4, 3, None)
    with pytest.raises(ValueError, match=r"indice_key='down' is not in the input's indice_dict \(keys: \[\]\)"):
        spconv.SparseInverseConv3d(4, 4, 3, "down")(x)
    y = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="down")(spconv.SubMConv3d(4, 4, 3, indice_key="s")(x))
    with pytest.raises(ValueError, match=r"kernel_size=\[2, 2, 2\], but the layer recorded under indice_key='down' "
                                         r"has kernel_size=\[3, 3, 3\]"):
        spconv.SparseInverseConv3d(4, 4, 2, "down")(y)
    with pytest.raises(ValueError, match="inverts a strided convolution or max pool"):
        spconv.SparseInverseConv3d(4, 4, 3, "s")(y)
    z = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="down2")(y)
    with pytest.raises(ValueError, match="must run on the sites that layer produced"):
        spconv.SparseInverseConv3d(4, 4, 3, "down")(z)


def test_key_records_are_copied_per_layer_not_shared():
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    y = spconv.SubMConv3d(4, 4, 3, indice_key="a")(x)
    assert x.indice_dict == {} and set(y.indice_dict) == {"a"}
    assert y.replace_feature(y.features * 2).indice_dict is y.indice_dict
    record = y.find_indice_pair("a")
    assert record.is_subm and record.ksize == [3, 3, 3] and record.spatial_shape == shape
    assert torch.equal(record.indices, coords) and torch.equal(record.out_indices, coords)


# --------------------------------------------------------------------------------- SparseConvTensor


def test_int64_indices_are_accepted_and_stored_as_int32():
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords.long(), shape, batch)
    assert x.indices.dtype == torch.int32 and torch.equal(x.indices, coords)
    conv = spconv.SubMConv3d(4, 3, 3)
    torch.testing.assert_close(conv(x).features, conv(spconv.SparseConvTensor(feats, coords, shape, batch)).features,
                               rtol=0, atol=0)
    assert spconv.SparseConvTensor(feats, coords, shape, torch.tensor(2)).batch_size == 2


def test_features_and_indices_are_assignable():
    feats, coords, shape, batch = make_input()
    conv = spconv.SubMConv3d(4, 3, 3)
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    x.features = feats * 2  # spconv 1.x style, still used by detectors' replace_feature helpers
    torch.testing.assert_close(conv(x).features, conv(spconv.SparseConvTensor(feats * 2, coords, shape, batch)).features)
    other_feats, other_coords, _, _ = make_input(seed=1)
    x.features, x.indices = other_feats, other_coords.long()
    expected = conv(spconv.SparseConvTensor(other_feats, other_coords, shape, batch))
    torch.testing.assert_close(conv(x).features, expected.features, rtol=0, atol=0)


def test_in_place_change_of_indices_rebuilds_the_sites():
    feats, coords, shape, batch = make_input(spatial_shape=(9, 10, 11))
    conv = spconv.SubMConv3d(4, 3, 3)
    x = spconv.SparseConvTensor(feats, coords.clone(), [18, 20, 22], batch)
    before = conv(x)
    x.indices[:, 1:] *= 2  # as multi-scale detector code does before concatenating levels
    after = conv(x)
    torch.testing.assert_close(after.features, conv(spconv.SparseConvTensor(feats, coords * torch.tensor(
        [1, 2, 2, 2], dtype=torch.int32), [18, 20, 22], batch)).features, rtol=0, atol=0)
    assert not torch.equal(before.features, after.features)
    x.indices[1] = x.indices[0]
    with pytest.raises(ValueError, match="SparseConvTensor.indices: .*coords has duplicate site"):
        conv(x)


@needs_spconv
def test_dense_matches_spconv():
    feats, coords, shape, batch = make_input()
    expected = real_spconv().SparseConvTensor(feats, coords, shape, batch)
    ours = spconv.SparseConvTensor(feats, coords, shape, batch)
    torch.testing.assert_close(ours.dense(), expected.dense(), rtol=0, atol=0)
    assert ours.dense().is_contiguous()  # detector code reshapes it with .view
    torch.testing.assert_close(ours.dense(channels_first=False), expected.dense(channels_first=False), rtol=0, atol=0)
    torch.testing.assert_close(spconv.ToDense()(ours), expected.dense(), rtol=0, atol=0)
    back = spconv.SparseConvTensor.from_dense(ours.dense(channels_first=False))
    torch.testing.assert_close(back.dense(), ours.dense(), rtol=0, atol=0)
    assert ours.spatial_size == 9 * 10 * 11


def test_tensor_arithmetic_and_add_input():
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    assert torch.equal((x + x).features, feats * 2) and torch.equal((x + feats).features, feats * 2)
    conv = spconv.SubMConv3d(4, 4, 3)
    torch.testing.assert_close(conv(x, add_input=x).features, conv(x).features + feats, rtol=0, atol=0)


@pytest.mark.parametrize("args,error,match", [
    ((torch.zeros(3, 2), torch.zeros(3, 4), [4, 4, 4], 1), TypeError, "indices must be int32 or int64, got torch.float32"),
    ((torch.zeros(3, 2), torch.zeros(3, 4, dtype=torch.int32), [4, 4], 1), ValueError,
     r"spatial_shape \[4, 4\] has 2 axes but indices has 3 spatial columns"),
    ((torch.zeros(3, 2), torch.zeros(3, 4, dtype=torch.int32), [4, 4.5, 4], 1), TypeError,
     r"spatial_shape must be a sequence of 3 ints, got \[4, 4.5, 4\]"),
    ((torch.zeros(3, 2), torch.zeros(3, 4, dtype=torch.int32), [4, 4, 4], 0), ValueError,
     "batch_size must be a positive int, got 0"),
    ((torch.zeros(3), torch.zeros(3, 4, dtype=torch.int32), [4, 4, 4], 1), ValueError,
     r"features must have shape \[N, C\], got \[3\]"),
    (([[0.0]], torch.zeros(3, 4, dtype=torch.int32), [4, 4, 4], 1), TypeError, "features must be a torch.Tensor"),
])
def test_tensor_bad_input(args, error, match):
    with pytest.raises(error, match=f"SparseConvTensor: {match}"):
        spconv.SparseConvTensor(*args)


def test_rows_and_bounds_are_checked_when_a_layer_runs():
    feats, coords, shape, batch = make_input()
    conv = spconv.SubMConv3d(4, 4, 3)
    with pytest.raises(ValueError, match="features has 239 rows but indices has 240"):
        conv(spconv.SparseConvTensor(feats[1:], coords, shape, batch))
    with pytest.raises(ValueError, match=r"SparseConvTensor.indices: .*coords has spatial axis 2 \(column 3\)"):
        conv(spconv.SparseConvTensor(feats, coords, [9, 10, 5], batch))
    negative = coords.clone()
    negative[5, 2] = -1  # spconv accepts this silently (NOTES.md)
    with pytest.raises(ValueError, match="SparseConvTensor.indices: .*coords column 2 has negative value -1"):
        conv(spconv.SparseConvTensor(feats, negative, shape, batch))


def test_module_bad_input():
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    with pytest.raises(ValueError, match=r"SubMConv3d: in_channels=5 but the input features have 4 channels"):
        spconv.SubMConv3d(5, 4, 3)(x)
    with pytest.raises(ValueError, match="SubMConv2d: expects 2 spatial axes"):
        spconv.SubMConv2d(4, 4, 3)(x)
    with pytest.raises(TypeError, match="SparseConv3d: input must be a SparseConvTensor"):
        spconv.SparseConv3d(4, 4, 3)(irregconv.SparseTensor(feats, coords, shape, batch))
    with pytest.raises(TypeError, match="SubMConv3d: input features are torch.float64 but the weight is torch.float32"):
        spconv.SubMConv3d(4, 4, 3)(spconv.SparseConvTensor(feats.double(), coords, shape, batch))
    with pytest.raises(ValueError, match="SubMConv3d: groups=2, but spconv 2.x convolutions are ungrouped"):
        spconv.SubMConv3d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="SubMConv3d: stride=2, but a submanifold convolution keeps its input sites"):
        spconv.SubMConv3d(4, 4, 3, stride=2)
    with pytest.raises(ValueError, match="SparseConv3d: padding=1 with kernel volume 1 and stride 1"):
        spconv.SparseConv3d(4, 4, 1, padding=1)
    with pytest.raises(ValueError, match="SparseConv3d: in_channels must be a positive int, got 0"):
        spconv.SparseConv3d(0, 4, 3)
    with pytest.raises(ValueError, match="SparseConv3d: kernel_size must have 3 entries"):
        spconv.SparseConv3d(4, 4, (3, 3))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_every_device(device):
    feats, coords, shape, batch = make_input()
    net = spconv.SparseSequential(spconv.SubMConv3d(4, 8, 3, indice_key="s"), nn.BatchNorm1d(8), nn.ReLU(),
                                  spconv.SparseConv3d(8, 8, 3, 2, 1, indice_key="d"),
                                  spconv.SparseInverseConv3d(8, 4, 3, "d"), spconv.SubMConv3d(4, 2, 1))
    expected = net(spconv.SparseConvTensor(feats, coords, shape, batch))
    got = copy.deepcopy(net).to(device)(spconv.SparseConvTensor(feats.to(device), coords.to(device), shape, batch))
    assert got.features.device.type == device and torch.equal(got.indices.cpu(), expected.indices)
    torch.testing.assert_close(got.features.cpu(), expected.features, rtol=1e-4, atol=1e-5)


def test_sparse_sequential_containers():
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


# ------------------------------------------------------------------ checkpoints and state dicts


@needs_spconv
def test_spconv_checkpoint_loads_unchanged_and_gives_spconv_outputs(tmp_path):
    feats, coords, shape, batch = make_input()
    real = real_spconv()
    theirs = real.SparseSequential(real.SubMConv3d(4, 8, 3, indice_key="s1"), nn.BatchNorm1d(8), nn.ReLU(),
                                   real.SubMConv3d(8, 6, 1), real.SparseConv3d(6, 5, 3, 2, 1, indice_key="d1"),
                                   real.SparseConv3d(5, 3, 1, record_voxel_count=True))
    path = tmp_path / "spconv_checkpoint.pth"
    torch.save(theirs.state_dict(), path)
    ours = spconv.SparseSequential(spconv.SubMConv3d(4, 8, 3, indice_key="s1"), nn.BatchNorm1d(8), nn.ReLU(),
                                   spconv.SubMConv3d(8, 6, 1), spconv.SparseConv3d(6, 5, 3, 2, 1, indice_key="d1"),
                                   spconv.SparseConv3d(5, 3, 1, record_voxel_count=True))
    ours.load_state_dict(torch.load(path))
    expected = run_spconv(theirs.eval(), feats, coords, shape, batch)
    got = ours.eval()(spconv.SparseConvTensor(feats, coords, shape, batch))
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert torch.equal(got_idx, exp_idx)
    torch.testing.assert_close(got_feats, exp_feats, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip_is_exact():
    feats, coords, shape, batch = make_input()
    torch.manual_seed(3)
    first = spconv_second_backbone_8x(spconv)
    second = spconv_second_backbone_8x(spconv)
    second.load_state_dict(first.state_dict())
    x = spconv.SparseConvTensor(feats, coords, [41, 10, 11], batch)
    torch.testing.assert_close(second(x).features, first(x).features, rtol=0, atol=0)


def test_voxel_counter_tracks_training_outputs():
    feats, coords, shape, batch = make_input()
    conv = spconv.SparseConv3d(4, 4, 3, 2, 1, record_voxel_count=True)
    out = conv(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert int(getattr(conv, spconv.MAX_NUM_VOXELS)) == out.features.size(0)
    conv.eval()(spconv.SparseConvTensor(feats[:5], coords[:5], shape, batch))
    assert int(getattr(conv, spconv.MAX_NUM_VOXELS)) == out.features.size(0)


# ------------------------------------------------------------- detector code run against the shim


def replace_feature(out, new_features):
    """The helper detection codebases carry to support spconv 1.x (assignment) and 2.x (replace_feature)."""
    if "replace_feature" in out.__dir__():
        return out.replace_feature(new_features)
    out.features = new_features
    return out


def conv_block(sp, c_in, c_out, kernel, indice_key, stride=1, padding=0, kind="subm"):
    """A (conv, BatchNorm1d, ReLU) block in the style of detector backbones (OpenPCDet ``post_act_block``)."""
    if kind == "subm":
        conv = sp.SubMConv3d(c_in, c_out, kernel, bias=False, indice_key=indice_key)
    elif kind == "spconv":
        conv = sp.SparseConv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False, indice_key=indice_key)
    else:
        conv = sp.SparseInverseConv3d(c_in, c_out, kernel, indice_key=indice_key, bias=False)
    return sp.SparseSequential(conv, nn.BatchNorm1d(c_out, eps=1e-3, momentum=0.01), nn.ReLU())


def residual_block_class(sp):
    """A residual submanifold block subclassing ``spconv.SparseModule`` that edits features itself."""
    class ResidualBlock(sp.SparseModule):
        def __init__(self, channels, indice_key):
            super().__init__()
            self.conv1 = sp.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
            self.bn1 = nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)
            self.conv2 = sp.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
            self.bn2 = nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)

        def forward(self, x):
            out = self.conv1(x)
            out = replace_feature(out, torch.relu(self.bn1(out.features)))
            out = self.conv2(out)
            out = replace_feature(out, self.bn2(out.features) + x.features)
            return replace_feature(out, torch.relu(out.features))
    return ResidualBlock


class TinyUNet(nn.Module):
    """Encoder-decoder in the style of detector U-Nets: indice keys shared by SubM layers, an inverse conv
    found by its key, a skip concatenation, a kernel-1 head and a height-compressed dense output."""

    def __init__(self, sp, in_channels=4):
        super().__init__()
        self.stem = conv_block(sp, in_channels, 8, 3, "subm1")
        self.res = residual_block_class(sp)(8, "subm1")
        self.down = conv_block(sp, 8, 16, 3, "spconv2", stride=2, padding=1, kind="spconv")
        self.mid = conv_block(sp, 16, 16, 3, "subm2")
        self.up = conv_block(sp, 16, 8, 3, "spconv2", kind="inverse")
        self.head = sp.SubMConv3d(16, 4, 1, bias=True, indice_key="subm1")
        self.to_dense = sp.ToDense()

    def forward(self, x):
        skip = self.res(self.stem(x))
        up = self.up(self.mid(self.down(skip)))
        out = self.head(replace_feature(up, torch.cat([up.features, skip.features], dim=1)))
        dense = self.to_dense(out)
        n, c, d, h, w = dense.shape
        return out, dense.view(n, c * d, h, w)


def find_conv_weight_keys(model, sp):
    """The isinstance walk detection code does over ``spconv.conv.SparseConvolution`` (e.g. to convert
    checkpoints of other spconv versions)."""
    return {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, sp.conv.SparseConvolution)}


@needs_spconv
def test_detector_style_unet_runs_unchanged_and_matches_spconv():
    feats, coords, shape, batch = make_input(300, (9, 16, 16))
    real = real_spconv()
    torch.manual_seed(0)
    theirs, ours = TinyUNet(real), TinyUNet(spconv)
    ours.load_state_dict(theirs.state_dict())
    assert find_conv_weight_keys(ours, spconv) == find_conv_weight_keys(theirs, real)
    expected_out, expected_bev = run_spconv(theirs, feats, coords, shape, batch)
    out, bev = ours.train()(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert torch.equal(out.indices, expected_out.indices) and out.spatial_shape == expected_out.spatial_shape
    torch.testing.assert_close(out.features, expected_out.features, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bev, expected_bev, rtol=1e-4, atol=1e-5)
    bev.sum().backward()  # and, unlike spconv on a CPU-only torch, it trains
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ours.parameters())


def test_concatenated_levels_pattern():
    """Multi-scale detector code scales coarse indices in place, concatenates features and indices of two
    levels by assignment, and runs on: the sites are rebuilt from what the tensor holds now."""
    feats, coords, shape, batch = make_input()
    fine = spconv.SubMConv3d(4, 4, 3, indice_key="s1")(spconv.SparseConvTensor(feats, coords, shape, batch))
    coarse = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="d1")(fine)
    coarse.indices[:, 1:] *= 2
    flat = torch.tensor([10 ** 6, 10 ** 4, 10 ** 2, 1])
    new = ~torch.isin(coarse.indices.long() @ flat, fine.indices.long() @ flat)
    merged = fine.replace_feature(torch.cat([fine.features, coarse.features[new]]))
    merged.indices = torch.cat([fine.indices, coarse.indices[new]])
    conv = spconv.SubMConv3d(4, 2, 3)
    expected = conv(spconv.SparseConvTensor(merged.features, merged.indices.clone(), shape, batch))
    torch.testing.assert_close(conv(merged).features, expected.features, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"SparseConvTensor.indices: .*coords has spatial axis \d \(column "
                                         r"\d\) = \d+, but spatial_shape"):
        conv(coarse)  # its indices now lie outside its own (coarse) spatial_shape


# ------------------------------------------------------- the SECOND-style backbone on real KITTI scans


def voxelized_scan(name):
    voxels = voxelize(read_points(data_path("lidar", name)), VOXEL_SIZE, POINT_RANGE)
    return voxels.feats, voxels.coords, list(voxels.spatial_shape)


@pytest.mark.slow
@with_data("lidar")
@needs_spconv
@pytest.mark.parametrize("scan", KITTI_SCANS)
def test_second_backbone_matches_spconv_on_kitti(scan):
    """Same output coordinates, and features within 1e-4 of the output's scale (max-norm relative error:
    spconv's own float32 error on these scans is ~1e-5 of the scale, ten times irregconv's, measured against
    a float64 run), as spconv 2.3.8 with one thread."""
    feats, coords, shape = voxelized_scan(scan)
    torch.manual_seed(0)
    theirs, ours, native = spconv_second_backbone_8x(real_spconv()), spconv_second_backbone_8x(spconv), SECONDBackbone8x()
    ours.load_state_dict(theirs.state_dict())
    spconv.load_spconv_state_dict(native, theirs.state_dict())
    expected = run_spconv(theirs, feats, coords, shape, 1)
    with torch.no_grad():
        got = ours.train()(spconv.SparseConvTensor(feats, coords, shape, 1))
        got_native = native.train()(irregconv.SparseTensor(feats, coords, shape, 1))
    assert got.spatial_shape == expected.spatial_shape and got.features.shape == expected.features.shape
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert torch.equal(got_idx, exp_idx)
    scale = exp_feats.abs().max()
    assert (got_feats - exp_feats).abs().max() <= 1e-4 * scale
    torch.testing.assert_close(got_feats, exp_feats, rtol=1e-4, atol=1e-4 * scale)
    assert torch.equal(got.indices, got_native.coords) and torch.equal(got.features, got_native.feats)


# ------------------------------------------- average and global pooling (spconv runs them only on CUDA)


POOL_NAMES = ["SparseMaxPool", "SparseMaxPool1d", "SparseMaxPool2d", "SparseMaxPool3d", "SparseMaxPool4d",
              "SparseAvgPool", "SparseAvgPool1d", "SparseAvgPool2d", "SparseAvgPool3d",
              "SparseGlobalMaxOrAvgPool", "SparseGlobalMaxPool", "SparseGlobalAvgPool"]


@needs_spconv
def test_pooling_api_matches_spconv():
    """Every pooling class spconv.pytorch (and spconv.pytorch.pool) exports exists here, with its constructor."""
    import inspect
    real = real_spconv()
    exported = {n for n in dir(real) if "Pool" in n} | {n for n in dir(real.pool) if "Pool" in n and n[0] != "_"}
    assert exported == set(POOL_NAMES)
    for name in POOL_NAMES:
        ours, theirs = inspect.signature(getattr(spconv, name)), inspect.signature(getattr(real.pool, name))
        assert [(p.name, p.default) for p in ours.parameters.values()] == \
            [(p.name, p.default) for p in theirs.parameters.values()], name
        assert getattr(spconv.pool, name) is getattr(spconv, name) and name in spconv.__all__
    assert {c.__name__ for c in spconv.ALL_POOL_LAYERS} == {c.__name__ for c in real.pool.ALL_POOL_LAYERS}
    assert issubclass(spconv.SparseAvgPool3d, spconv.SparseAvgPool) and not issubclass(spconv.SparseAvgPool,
                                                                                          spconv.SparseMaxPool)
    assert spconv.SparseAvgPool3d(2).stride == [2, 2, 2] and spconv.SparseAvgPool(3, 2).stride == [1, 1, 1]
    assert spconv.SparseAvgPool3d(2, algo=spconv.ConvAlgo.Native).algo is spconv.ConvAlgo.MaskImplicitGemm


def _spconv_cuda_pooling_on_cpu(monkeypatch):
    """Let spconv's own SparseAvgPool / SparseGlobal*Pool ``forward`` run on its CPU build by replacing its three
    CUDA-only ops with ports: the implicit-GEMM pair table (``pair_fwd[k, out] = in or -1``) filled from spconv's
    CPU rulebook for the same geometry, the forward kernel of ``spconv/csrc/sparse/maxpool.py``
    (``forward_avgpool_implicit_gemm_kernel``: the sum of the valid inputs divided by their count, 0 for none)
    and ``global_pool_rearrange`` (each batch item's row numbers)."""
    real = real_spconv()
    ops = real.ops

    def pairs(indices, batch_size, spatial_shape, algo, ksize, stride, padding, dilation, out_padding, subm=False,
              **_):
        assert not subm, "the port covers strided pooling (spconv's CPU subm rulebook leaves out the centre)"
        outids, table, counts = ops.get_indice_pairs(indices, batch_size, spatial_shape, real.ConvAlgo.Native, ksize,
                                                     stride, padding, dilation, out_padding, False)
        fwd = torch.full((table.size(1), outids.size(0)), -1, dtype=torch.int32)
        bwd = torch.full((table.size(1), indices.size(0)), -1, dtype=torch.int32)
        for k, n in enumerate(counts.tolist()):
            fwd[k, table[1, k, :n].long()] = table[0, k, :n]
            bwd[k, table[0, k, :n].long()] = table[1, k, :n]
        return outids, None, fwd, bwd, None, None, None, None, None

    def avgpool(features, pair_fwd, num_out, calc_count):
        valid = pair_fwd >= 0
        count = valid.sum(0)
        total = (features[pair_fwd.clamp(min=0).long()] * valid.unsqueeze(-1)).sum(0)
        out = torch.where(count[:, None] > 0, total / count.clamp(min=1)[:, None].to(features.dtype), 0)
        return out, count.int() if calc_count else torch.Tensor()

    def rearrange(coords, batch_size):
        out = torch.zeros(batch_size, coords.size(0), dtype=torch.int32)
        counts = torch.zeros(batch_size, dtype=torch.int32)
        for b in range(batch_size):
            rows = (coords[:, 0] == b).nonzero().flatten()
            out[b, :rows.numel()], counts[b] = rows, rows.numel()
        return out, counts

    monkeypatch.setattr(ops, "get_indice_pairs_implicit_gemm", pairs)
    monkeypatch.setattr(ops, "indice_avgpool_implicit_gemm", avgpool)
    monkeypatch.setattr(ops, "global_pool_rearrange", rearrange)
    return real


@needs_spconv
@pytest.mark.parametrize("name,args,shape", [
    ("SparseAvgPool3d", (3, 2, 1), (9, 10, 11)),
    ("SparseAvgPool3d", (2,), (9, 10, 11)),
    ("SparseAvgPool3d", ((3, 1, 1), (2, 1, 1)), (9, 10, 11)),
    ("SparseAvgPool3d", (3, 2, 0, 2), (9, 10, 11)),
    ("SparseAvgPool2d", ((3, 2), 2, 1), (13, 12)),
    ("SparseAvgPool1d", (3, 2, 1), (40,)),
])
def test_avg_pool_matches_spconv_forward(monkeypatch, name, args, shape):
    """spconv's SparseAvgPool forward (its module code, with its CUDA-only ops ported, see above): same output
    sites and spatial shape, the mean over the active inputs of each window."""
    real = _spconv_cuda_pooling_on_cpu(monkeypatch)
    feats, coords, shape, batch = make_input(40 if len(shape) == 1 else 120, shape)
    expected = run_spconv(getattr(real, name)(*args), feats, coords.contiguous(), shape, batch)
    got = getattr(spconv, name)(*args)(spconv.SparseConvTensor(feats, coords, shape, batch))
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert got.spatial_shape == expected.spatial_shape and torch.equal(got_idx, exp_idx)
    torch.testing.assert_close(got_feats, exp_feats)
    # the same sites as spconv's max pool of that geometry, which its CPU build runs unpatched
    maxed = run_spconv(getattr(real, name.replace("Avg", "Max"))(*args), feats.abs(), coords.contiguous(), shape, batch)
    assert torch.equal(sorted_rows(maxed.features, maxed.indices, maxed.spatial_shape)[1], got_idx)


@needs_spconv
def test_global_pools_match_spconv_forward(monkeypatch):
    """spconv's own SparseGlobalMaxPool / SparseGlobalAvgPool forward (its batch rearrangement ported): the max
    equals; spconv's mean keeps channel 0 only (``torch.mean(x, dim=0)[0]``), which ours[:, 0] equals."""
    real = _spconv_cuda_pooling_on_cpu(monkeypatch)
    feats, coords, shape, batch = make_input(batch_size=3)
    feats = feats - 3.0  # all negative for the most part: no 0 floor anywhere
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    expected_max = run_spconv(real.SparseGlobalMaxPool(), feats, coords.contiguous(), shape, batch)
    torch.testing.assert_close(spconv.SparseGlobalMaxPool()(x), expected_max, rtol=0, atol=0)
    expected_mean = run_spconv(real.SparseGlobalAvgPool(), feats, coords.contiguous(), shape, batch)
    assert expected_mean.shape == (batch,)
    got_mean = spconv.SparseGlobalAvgPool()(x)
    assert got_mean.shape == (batch, feats.size(1))
    torch.testing.assert_close(got_mean[:, 0], expected_mean)
    per_item = torch.stack([feats[coords[:, 0] == b].mean(0) for b in range(batch)])
    torch.testing.assert_close(got_mean, per_item)


def _window_sums(grid, kernel, stride, padding, dilation):
    """Sum of each channel under every window (a depthwise conv with ones)."""
    ones = grid.new_ones(grid.size(1), 1, *kernel)
    return F.conv3d(grid, ones, stride=stride, padding=padding, dilation=dilation, groups=grid.size(1))


@pytest.mark.parametrize("reduce", ["avg", "max"])
@pytest.mark.parametrize("geometry", [((3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), False),
                                      ((2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), False),
                                      ((3, 1, 2), (2, 1, 2), (1, 0, 0), (1, 1, 1), False),
                                      ((3, 3, 3), (2, 2, 2), (0, 0, 0), (2, 1, 2), False),
                                      ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), True)])
def test_pools_match_dense_torch(reduce, geometry):
    """Outputs, output sites and gradients against dense torch: the window sum over the active inputs divided by
    their count (avg), ``F.max_pool3d`` with -inf at inactive cells (max); strided outputs lie where the window
    holds an active input, submanifold outputs on the input sites."""
    kernel, stride, padding, dilation, subm = geometry
    feats, coords, shape, batch = make_input(60, (7, 8, 9), dtype=torch.float64)
    cls = spconv.SparseAvgPool if reduce == "avg" else spconv.SparseMaxPool
    pool = cls(3, kernel, stride, padding, dilation, subm=subm)
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    out = pool(x)
    occupancy = densify(torch.ones_like(feats[:, :1]), coords, shape, batch)
    counts = _window_sums(occupancy, kernel, stride, padding, dilation)
    if subm:
        assert torch.equal(out.indices, x.indices) and out.spatial_shape == shape
    else:
        assert out.spatial_shape == list(counts.shape[2:])
        assert torch.equal(sorted_rows(out.indices, out.indices, out.spatial_shape)[0],
                           (counts[:, 0] > 0).nonzero().int())

    def ours(feats):
        return pool(x.replace_feature(feats)).features

    def oracle(feats):
        grid = densify(feats, coords, shape, batch)
        if reduce == "avg":
            return values_at(_window_sums(grid, kernel, stride, padding, dilation) / counts.clamp(min=1), out.indices)
        grid = grid.masked_fill(occupancy == 0, float("-inf"))
        return values_at(F.max_pool3d(grid, kernel, stride, padding, dilation), out.indices)

    assert_parity(ours, oracle, [feats.clone().requires_grad_()], rtol=1e-12, atol=1e-12,
                  generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("make", [lambda: spconv.SparseAvgPool3d(3, 2, 1), lambda: spconv.SparseAvgPool3d(2),
                                  lambda: spconv.SparseAvgPool(3, 3, subm=True),
                                  lambda: spconv.SparseMaxPool3d(3, 2, 1),
                                  spconv.SparseGlobalAvgPool, spconv.SparseGlobalMaxPool])
def test_pool_gradcheck_float64(make):
    """Our backward (spconv's cannot run on the CPU, and its avg-pool backward multiplies by the count)."""
    feats, coords, shape, batch = make_input(8, (4, 4, 4), batch_size=2, channels=2, dtype=torch.float64)
    pool, x = make(), spconv.SparseConvTensor(feats, coords, shape, batch)

    def fn(feats):
        out = pool(x.replace_feature(feats))
        return out if isinstance(out, torch.Tensor) else out.features

    assert torch.autograd.gradcheck(fn, (feats.requires_grad_(),))


def test_avg_pool_gradient_divides_by_the_active_count():
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 1], [0, 3, 3, 3]], dtype=torch.int32)
    feats = torch.tensor([[1.0], [2.0], [4.0]], requires_grad=True)
    out = spconv.SparseAvgPool3d(2)(spconv.SparseConvTensor(feats, coords, [4, 4, 4], 1))
    out_feats, out_idx = sorted_rows(out.features, out.indices, out.spatial_shape)
    assert out_idx.tolist() == [[0, 0, 0, 0], [0, 1, 1, 1]]
    assert out_feats.flatten().tolist() == [1.5, 4.0]  # by 2 and 1 active inputs, not by the volume 8
    out.features.sum().backward()
    assert feats.grad.flatten().tolist() == [0.5, 0.5, 1.0]


def test_global_pools_give_zeros_for_items_without_sites():
    feats, coords, shape, _ = make_input(batch_size=2)
    x = spconv.SparseConvTensor(feats - 5, coords, shape, 3)  # batch item 2 has no sites
    for pool in (spconv.SparseGlobalMaxPool(), spconv.SparseGlobalAvgPool()):
        out = pool(x)
        assert out.shape == (3, 4) and torch.equal(out[2], torch.zeros(4)) and (out[:2] < 0).all()


def test_avg_pool_key_is_inverted_by_an_inverse_conv():
    feats, coords, shape, batch = make_input()
    down = spconv.SparseAvgPool3d(3, 2, 1, indice_key="down")
    up = spconv.SparseInverseConv3d(4, 5, 3, "down")
    out = spconv.SparseSequential(down, up)(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert out.spatial_shape == shape and torch.equal(out.indices, coords) and out.features.shape == (coords.size(0), 5)


def test_voxel_counter_of_avg_pool():
    feats, coords, shape, batch = make_input()
    pool = spconv.SparseAvgPool3d(3, 2, 1, record_voxel_count=True)
    out = pool(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert int(getattr(pool, spconv.MAX_NUM_VOXELS)) == out.features.size(0)


def test_pool_bad_input():
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    with pytest.raises(ValueError, match="SparseAvgPool2d: expects 2 spatial axes .* use the 3d variant"):
        spconv.SparseAvgPool2d(2)(x)
    with pytest.raises(TypeError, match="SparseAvgPool3d: input must be a SparseConvTensor"):
        spconv.SparseAvgPool3d(2)(irregconv.SparseTensor(feats, coords, shape, batch))
    with pytest.raises(ValueError, match="SparseAvgPool3d: kernel_size"):
        spconv.SparseAvgPool3d(0)
    with pytest.raises(ValueError, match="SparseAvgPool3d: kernel_size must have 3 entries"):
        spconv.SparseAvgPool3d((2, 2))
    with pytest.raises(TypeError, match="SparseGlobalMaxPool: input must be a SparseConvTensor .* got Tensor"):
        spconv.SparseGlobalMaxPool()(feats)
    with pytest.raises(TypeError, match="SparseGlobalMaxOrAvgPool: is_mean must be a bool .* got 'mean'"):
        spconv.SparseGlobalMaxOrAvgPool("mean")

"""spconv.pytorch.conv: parity with spconv 2.3.8 (outputs, rulebook records) and with dense torch (outputs and
gradients), the checked ``indice_key``, the ``algo`` argument, argument errors, detector-code patterns, and the
SECOND-style backbone on real KITTI scans against spconv."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import irregconv
from irregconv.compat import spconv
from irregconv.data import read_points, voxelize
from irregconv.models.second import SECONDBackbone8x, spconv_second_backbone_8x
from irregconv.testing import DEVICES, assert_parity, data_path, densify, krsc_to_torch, values_at, with_data, with_package

needs_spconv = with_package("spconv")
KITTI_SCANS = ["kitti_training_000000.bin", "kitti_training_000001.bin", "kitti_000008_reduced.bin"]
VOXEL_SIZE, POINT_RANGE = (0.05, 0.05, 0.1), (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)


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
def test_parameter_names_and_shapes_match_spconv(name, args, kwargs, real_spconv):
    theirs = getattr(real_spconv(), name)(*args, **kwargs).state_dict()
    ours = getattr(spconv, name)(*args, **kwargs).state_dict()
    assert list(ours) == list(theirs)
    assert [(v.shape, v.dtype) for v in ours.values()] == [(v.shape, v.dtype) for v in theirs.values()]


def test_repr_and_extra_repr(make_input):
    conv = spconv.SparseConv3d(4, 8, 3, stride=2, padding=1, bias=False, indice_key="down")
    assert repr(conv) == "SparseConv3d(4, 8, kernel_size=[3, 3, 3], stride=[2, 2, 2], padding=[1, 1, 1], " \
                         "bias=False, indice_key='down')"
    feats, coords, shape, batch = make_input()
    assert repr(spconv.SparseConvTensor(feats, coords, shape, batch)) == \
        "SparseConvTensor[shape=[240, 4], spatial_shape=[9, 10, 11], batch_size=2]"


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
def test_conv_matches_spconv(name, args, kwargs, run_spconv, sorted_rows, make_input, shim_twin):
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
def test_conv_matches_spconv_other_dims(name, args, run_spconv, sorted_rows, make_input, shim_twin):
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
@pytest.mark.parametrize("down", [("SparseConv3d", (4, 6, 3, 2, 1)), ("SparseConv3d", (4, 6, 2, 2)),
                                  ("SparseMaxPool3d", (3, 2, 1))])
def test_inverse_conv_matches_spconv(down, real_spconv, run_spconv, make_input, shim_twin):
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
def test_conv_outputs_and_gradients_match_dense_torch(name, args, kwargs, make_input):
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


def test_inverse_conv_outputs_and_gradients_match_dense_torch(make_input):
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
def test_gradcheck_float64(name, args, make_input):
    feats, coords, shape, batch = make_input(6, (3, 3, 3), batch_size=1, channels=2, dtype=torch.float64)
    module = getattr(spconv, name)(*args).double()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)  # one coordinate set: rulebooks built once

    def fn(feats, weight, bias):
        return torch.func.functional_call(module, {"weight": weight, "bias": bias}, (x.replace_feature(feats),)).features

    inputs = (feats.requires_grad_(), module.weight.detach().clone().requires_grad_(),
              module.bias.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs)


def test_subm_key_reused_with_another_kernel_size_raises(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(spconv.SparseConvTensor(feats, coords, shape, batch))
    with pytest.raises(ValueError, match=r"SubMConv3d: indice_key='subm1' was recorded by a subm layer with "
                                         r"kernel_size=\(3, 3, 3\).*kernel_size=\(5, 5, 5\)"):
        spconv.SubMConv3d(4, 4, 5, indice_key="subm1")(x)
    with pytest.raises(ValueError, match="dilation"):
        spconv.SubMConv3d(4, 4, 3, dilation=2, indice_key="subm1")(x)


def test_subm_key_reused_on_other_sites_raises(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(spconv.SparseConvTensor(feats, coords, shape, batch))
    y = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="down")(x)
    with pytest.raises(ValueError, match=r"indice_key='subm1' was recorded on 240 sites on spatial_shape \[9, 10, 11\]"):
        spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(y)


def test_subm_key_reused_on_equal_sites_reuses_the_rulebook(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(spconv.SparseConvTensor(feats, coords, shape, batch))
    record = x.find_indice_pair("subm1")
    builds = record.in_sites.cache.builds
    same = spconv.SparseConvTensor(x.features, coords.clone().long(), shape, batch, indice_dict=x.indice_dict)
    out = spconv.SubMConv3d(4, 4, 3, indice_key="subm1")(same)
    assert record.in_sites.cache.builds == builds and out.indices is record.in_sites.coords
    assert x.find_indice_pair(None) is None and x.find_indice_pair("nope") is None


def test_strided_key_reused_with_another_geometry_raises(make_input):
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


def test_inverse_conv_errors(make_input):
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


def test_module_bad_input(make_input):
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
def test_runs_on_every_device(device, make_input):
    feats, coords, shape, batch = make_input()
    net = spconv.SparseSequential(spconv.SubMConv3d(4, 8, 3, indice_key="s"), nn.BatchNorm1d(8), nn.ReLU(),
                                  spconv.SparseConv3d(8, 8, 3, 2, 1, indice_key="d"),
                                  spconv.SparseInverseConv3d(8, 4, 3, "d"), spconv.SubMConv3d(4, 2, 1))
    expected = net(spconv.SparseConvTensor(feats, coords, shape, batch))
    got = copy.deepcopy(net).to(device)(spconv.SparseConvTensor(feats.to(device), coords.to(device), shape, batch))
    assert got.features.device.type == device and torch.equal(got.indices.cpu(), expected.indices)
    torch.testing.assert_close(got.features.cpu(), expected.features, rtol=1e-4, atol=1e-5)


def test_voxel_counter_tracks_training_outputs(make_input):
    feats, coords, shape, batch = make_input()
    conv = spconv.SparseConv3d(4, 4, 3, 2, 1, record_voxel_count=True)
    out = conv(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert int(getattr(conv, spconv.MAX_NUM_VOXELS)) == out.features.size(0)
    conv.eval()(spconv.SparseConvTensor(feats[:5], coords[:5], shape, batch))
    assert int(getattr(conv, spconv.MAX_NUM_VOXELS)) == out.features.size(0)


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
def test_detector_style_unet_runs_unchanged_and_matches_spconv(real_spconv, run_spconv, make_input):
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


def voxelized_scan(name):
    voxels = voxelize(read_points(data_path("lidar", name)), VOXEL_SIZE, POINT_RANGE)
    return voxels.feats, voxels.coords, list(voxels.spatial_shape)


@pytest.mark.slow
@with_data("lidar")
@needs_spconv
@pytest.mark.parametrize("scan", KITTI_SCANS)
def test_second_backbone_matches_spconv_on_kitti(scan, real_spconv, run_spconv, sorted_rows):
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

"""SECOND-style 8x backbone: structure, a dense torch oracle of the whole network (outputs and gradients),
the native and spconv-API builds agreeing bit for bit on real scans, determinism across reruns and thread
counts, a CPU training step, and state-dict round trips."""
import copy

import pytest
import torch
import torch.nn.functional as F

import irregconv
from irregconv.compat import spconv
from irregconv.data import read_points, voxelize
from irregconv.models.second import SECOND_8X_LAYERS, SECONDBackbone8x, spconv_second_backbone_8x
from irregconv.nn.sparse import SparseConv3d, SubMConv3d
from irregconv.rulebook.region import as_tuple
from irregconv.rulebook.strided import conv_output_shape
from irregconv.testing import (assert_parity, conv_at_sites, data_path, random_coords, reference_output_sites,
                               subm_conv_at_sites, with_data)

VOXEL_SIZE, POINT_RANGE = (0.05, 0.05, 0.1), (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)


def kitti_voxels(name="kitti_training_000000.bin"):
    voxels = voxelize(read_points(data_path("lidar", name)), VOXEL_SIZE, POINT_RANGE)
    return voxels.feats, voxels.coords, voxels.spatial_shape


def clustered_input(num_sites=200, spatial_shape=(41, 16, 16), box=(10, 10, 10), offset=(15, 3, 3), seed=0,
                    dtype=torch.float64):
    """Sites packed in a box (so kernels find neighbours) inside a grid deep enough for four stride-2 levels."""
    gen = torch.Generator().manual_seed(seed)
    coords = random_coords(num_sites, box, 2, generator=gen)
    coords[:, 1:] += torch.tensor(offset, dtype=torch.int32)
    return torch.randn(coords.size(0), 4, generator=gen, dtype=dtype), coords, spatial_shape


def conv_modules(model):
    return [m for m in model.modules() if isinstance(m, (SubMConv3d, SparseConv3d))]


def grads(model, feats):
    return [feats.grad] + [p.grad for p in model.parameters()]


def test_layers_and_names_match_the_spconv_build():
    native, ours = SECONDBackbone8x(), spconv_second_backbone_8x(spconv)
    assert list(native.state_dict()) == list(ours.state_dict())
    convs = conv_modules(native)
    assert len(convs) == len(SECOND_8X_LAYERS) == 12
    for conv, (_, kind, c_out, kernel, stride, padding, _) in zip(convs, SECOND_8X_LAYERS):
        assert conv.kind == kind and conv.out_channels == c_out and conv.bias is None
        assert conv.kernel_size == as_tuple(kernel, 3, "kernel_size")
        if kind == "strided":
            assert conv.stride == as_tuple(stride, 3, "stride") and conv.padding == as_tuple(padding, 3, "padding", minimum=0)
    assert spconv.load_spconv_state_dict(native, ours.state_dict()) is not None
    for conv, twin in zip(convs, [m for m in ours.modules() if isinstance(m, spconv.SparseConvolution)]):
        assert torch.equal(conv.weight, twin.native_weight())


def test_output_grid_and_channels():
    coords = torch.tensor([[0, 20, 800, 700], [0, 21, 801, 700], [0, 21, 801, 701]], dtype=torch.int32)
    out = SECONDBackbone8x()(irregconv.SparseTensor(torch.rand(3, 4), coords, (41, 1600, 1408)))
    assert out.spatial_shape == (2, 200, 176) and out.num_channels == 128
    with pytest.raises(ValueError, match="SECOND backbone: in_channels must be a positive int, got 0"):
        SECONDBackbone8x(0)


def dense_backbone(feats, coords, shape, batch, conv_weights, bn_params):
    """The backbone as dense torch convolutions read at the active sites, and batch norm over those rows."""
    for (_, kind, _, kernel, stride, padding, _), weight, (gamma, beta) in zip(SECOND_8X_LAYERS, conv_weights,
                                                                               bn_params):
        ks, st, pd = as_tuple(kernel, 3, "k"), as_tuple(stride, 3, "s"), as_tuple(padding, 3, "p", minimum=0)
        if kind == "subm":
            out = subm_conv_at_sites(feats, coords, weight, shape, batch, ks)
        else:
            out_coords = reference_output_sites(coords, shape, batch, ks, st, pd)
            out = conv_at_sites(feats, coords, out_coords, weight, shape, batch, ks, st, pd)
            coords, shape = out_coords, conv_output_shape(shape, ks, st, pd, (1, 1, 1))
        feats = F.relu(F.batch_norm(out, None, None, gamma, beta, training=True, eps=1e-3))
    return feats, coords


def test_matches_dense_torch_oracle_outputs_and_gradients():
    feats, coords, shape = clustered_input()
    model = SECONDBackbone8x().double()
    names = [name for name, _ in model.named_parameters()]
    out = model(irregconv.SparseTensor(feats, coords, shape, 2))
    assert out.num_sites > 0
    _, expected_coords = dense_backbone(feats, coords, shape, 2, [c.weight for c in conv_modules(model)],
                                        [(bn.weight, bn.bias) for bn in model.modules()
                                         if isinstance(bn, torch.nn.BatchNorm1d)])
    assert torch.equal(out.coords, expected_coords)

    def ours(feats, *params):
        return torch.func.functional_call(model, dict(zip(names, params)),
                                          (irregconv.SparseTensor(feats, coords, shape, 2),)).feats

    def oracle(feats, *params):
        weights = [p for n, p in zip(names, params) if n.endswith(".0.weight")]
        bns = list(zip([p for n, p in zip(names, params) if n.endswith(".1.weight")],
                       [p for n, p in zip(names, params) if n.endswith(".1.bias")]))
        return dense_backbone(feats, coords, shape, 2, weights, bns)[0]

    inputs = [feats.requires_grad_()] + [p.detach().clone().requires_grad_() for p in model.parameters()]
    assert_parity(ours, oracle, inputs, rtol=1e-7, atol=1e-9, generator=torch.Generator().manual_seed(1))


def test_state_dict_round_trip_through_a_file(tmp_path):
    feats, coords, shape = clustered_input(dtype=torch.float32)
    first = SECONDBackbone8x()
    first(irregconv.SparseTensor(feats, coords, shape, 2))  # moves the batch-norm running statistics
    torch.save(first.state_dict(), tmp_path / "second.pth")
    second = SECONDBackbone8x()
    second.load_state_dict(torch.load(tmp_path / "second.pth"))
    x = irregconv.SparseTensor(feats, coords, shape, 2)
    torch.testing.assert_close(second.eval()(x).feats, first.eval()(x).feats, rtol=0, atol=0)
    shim = spconv_second_backbone_8x(spconv).eval()
    shim.load_state_dict({k: (spconv.weight_from_native(v, (3, 1, 1) if k.startswith("conv_out") else (3, 3, 3))
                              if k.endswith("0.weight") else v) for k, v in first.state_dict().items()})
    got = shim(spconv.SparseConvTensor(feats, coords, list(shape), 2))
    torch.testing.assert_close(got.features, first(x).feats, rtol=0, atol=0)


@pytest.mark.slow
@with_data("lidar")
def test_native_and_spconv_api_builds_agree_bitwise_on_kitti():
    feats, coords, shape = kitti_voxels("kitti_000008_reduced.bin")
    torch.manual_seed(0)
    ours, native = spconv_second_backbone_8x(spconv), SECONDBackbone8x()
    spconv.load_spconv_state_dict(native, ours.state_dict())
    x_ours = spconv.SparseConvTensor(feats.clone().requires_grad_(), coords, list(shape), 1)
    x_native = irregconv.SparseTensor(feats.clone().requires_grad_(), coords, shape, 1)
    out_ours, out_native = ours(x_ours), native(x_native)
    assert torch.equal(out_ours.indices, out_native.coords) and torch.equal(out_ours.features, out_native.feats)
    cotangent = torch.randn(out_native.feats.shape, generator=torch.Generator().manual_seed(0))
    out_ours.features.backward(cotangent)
    out_native.feats.backward(cotangent)
    assert torch.equal(x_ours.features.grad, x_native.feats.grad)
    for conv, twin in zip(conv_modules(native), [m for m in ours.modules() if isinstance(m, spconv.SparseConvolution)]):
        assert torch.equal(conv.weight.grad, spconv.weight_to_native(twin.weight.grad))


@pytest.mark.slow
@with_data("lidar")
def test_outputs_and_gradients_bitwise_identical_across_reruns_and_thread_counts():
    feats, coords, shape = kitti_voxels("kitti_000008_reduced.bin")
    torch.manual_seed(0)
    model = SECONDBackbone8x()
    cotangent = None

    def run(threads):
        nonlocal cotangent
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            fresh = copy.deepcopy(model)
            x = irregconv.SparseTensor(feats.clone().requires_grad_(), coords, shape, 1)
            out = fresh(x)
            if cotangent is None:
                cotangent = torch.randn(out.feats.shape, generator=torch.Generator().manual_seed(0))
            out.feats.backward(cotangent)
            return [out.feats.detach(), out.coords] + grads(fresh, x.feats)
        finally:
            torch.set_num_threads(previous)

    reference = run(2)
    for threads in (2, 1):
        again = run(threads)
        assert all(torch.equal(a, b) for a, b in zip(again, reference)), f"differs with {threads} thread(s)"


@pytest.mark.slow
@with_data("lidar")
def test_one_training_step_on_cpu_with_the_spconv_api():
    """A model written for spconv (whose backward needs CUDA) trains on a CPU-only torch through the shim."""
    feats, coords, shape = kitti_voxels("kitti_000008_reduced.bin")
    torch.manual_seed(0)
    model = spconv_second_backbone_8x(spconv)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    target = torch.randn(1, 128)

    def loss_fn():
        out = model(spconv.SparseConvTensor(feats, coords, list(shape), 1))
        return F.mse_loss(out.features.mean(dim=0, keepdim=True), target)

    loss = loss_fn()
    optimizer.zero_grad()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    with torch.no_grad():
        assert loss_fn() < loss

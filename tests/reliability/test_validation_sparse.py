"""Bad input at every sparse entry point raises a ValueError / TypeError naming the owner, the argument, the
value received and what would work: SparseTensor, every module of ``irregconv.nn.sparse``, the SECOND
backbone and the spconv drop-in's SparseConvTensor. Each case is also a regression test for an input that
once crashed deep inside (RuntimeError, IndexError) or was silently rewritten."""
import pytest
import torch

import irregconv.nn.sparse as sparse
from irregconv import SparseTensor
from irregconv.compat import spconv
from irregconv.models.second import SECONDBackbone8x

C_IN, C_OUT = 4, 8

#: every public module of irregconv.nn.sparse -> a factory with C_IN input channels (None: no in_channels)
FACTORIES = {}
for _d in (1, 2, 3, 4):
    FACTORIES[f"SubMConv{_d}d"] = (_d, lambda d=_d: getattr(sparse, f"SubMConv{d}d")(C_IN, C_OUT, 3))
    FACTORIES[f"SparseConv{_d}d"] = (_d, lambda d=_d: getattr(sparse, f"SparseConv{d}d")(C_IN, C_OUT, 3, 2, 1))
    FACTORIES[f"SparseConvTranspose{_d}d"] = (
        _d, lambda d=_d: getattr(sparse, f"SparseConvTranspose{d}d")(C_IN, C_OUT, 3, 2, 1))
    FACTORIES[f"SparseInverseConv{_d}d"] = (_d, lambda d=_d: getattr(sparse, f"SparseInverseConv{d}d")(C_IN, C_OUT, 3))
for _d in (1, 2, 3):
    FACTORIES[f"SparseMaxPool{_d}d"] = (_d, lambda d=_d: getattr(sparse, f"SparseMaxPool{d}d")(2))
    FACTORIES[f"SparseAvgPool{_d}d"] = (_d, lambda d=_d: getattr(sparse, f"SparseAvgPool{d}d")(2))
FACTORIES.update({
    "SparseGlobalPool": (None, lambda: sparse.SparseGlobalPool()),
    "ToDense": (None, lambda: sparse.ToDense()),
    "SparseSequential": (3, lambda: sparse.SparseSequential(sparse.SubMConv3d(C_IN, C_OUT), torch.nn.ReLU())),
    "SparseDepthwiseSeparableConv3d": (3, lambda: sparse.SparseDepthwiseSeparableConv3d(C_IN, C_OUT)),
    "SparseCondConv3d": (3, lambda: sparse.SparseCondConv3d(C_IN, C_OUT)),
    "SparseDynamicConv3d": (3, lambda: sparse.SparseDynamicConv3d(C_IN, C_OUT)),
})
NO_CHANNELS = {name for name in FACTORIES if "Pool" in name or name == "ToDense"}
RANKED = sorted(name for name, (dims, _) in FACTORIES.items() if dims is not None)
WEIGHTED = sorted(name for name in RANKED if name not in NO_CHANNELS)


def _input(dims: int, channels: int = C_IN, dtype=torch.float32) -> SparseTensor:
    coords = torch.tensor([[0] + [1] * dims, [0] + [2] * dims, [1] + [3] * dims], dtype=torch.int32)
    return SparseTensor(torch.randn(3, channels, dtype=dtype), coords, spatial_shape=(8,) * dims, batch_size=2)


def _owner(name: str) -> str:
    """The class a module's error names (a SparseSequential forwards to its first module)."""
    return "SubMConv3d" if name == "SparseSequential" else name


def test_every_public_sparse_module_is_covered():
    assert set(sparse.__all__) - {"SparseModule", "SparseConvBase"} == set(FACTORIES)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_not_a_sparse_tensor(name):
    module = FACTORIES[name][1]()
    with pytest.raises(TypeError, match=f"{_owner(name)}: input must be an irregconv.SparseTensor, got Tensor"):
        module(torch.randn(3, C_IN))


@pytest.mark.parametrize("name", RANKED)
def test_wrong_number_of_spatial_axes(name):
    dims = FACTORIES[name][0]
    other = 3 if dims != 3 else 2
    with pytest.raises(ValueError, match=rf"{_owner(name)}: expects {dims} spatial axes \(coords \[N, {dims + 1}\]\), "
                                         rf"got a SparseTensor with {other} .*use the {other}d variant"):
        FACTORIES[name][1]()(_input(other))


@pytest.mark.parametrize("name", WEIGHTED)
def test_channel_mismatch(name):
    with pytest.raises(ValueError, match=f"{_owner(name)}: in_channels={C_IN} but the input has 5 channels"):
        FACTORIES[name][1]()(_input(FACTORIES[name][0], channels=5))


@pytest.mark.parametrize("name", WEIGHTED)
def test_feature_dtype_differs_from_weight(name):
    owner = "SubMConv3d" if name == "SparseDepthwiseSeparableConv3d" else _owner(name)
    with pytest.raises(TypeError, match=rf"{owner}: input features are torch.float64 but the weight is torch.float32; "
                                        rf"cast one of them \(e.g. module.to\(torch.float64\)\)"):
        FACTORIES[name][1]()(_input(FACTORIES[name][0], dtype=torch.float64))


@pytest.mark.parametrize("name", [n for n in WEIGHTED if "Inverse" not in n])
def test_weight_on_another_device(name):
    # the 'meta' device stands in for a second device on a CPU-only machine
    with pytest.raises(ValueError, match="(on|,) meta.*cpu|cpu.*meta"):
        FACTORIES[name][1]().to("meta")(_input(FACTORIES[name][0]))


def test_features_and_coords_on_different_devices():
    coords = torch.tensor([[0, 1, 2, 3]], dtype=torch.int32)
    with pytest.raises(ValueError, match="SparseTensor: feats is on meta but coords on cpu; put both on one device"):
        SparseTensor(torch.zeros(1, 2, device="meta"), coords)


@pytest.mark.parametrize("module, match", [
    (sparse.SparseConv3d(C_IN, C_OUT, 9), r"output size on spatial axis 0 would be 0 \(input 8, kernel_size 9"),
    (sparse.SparseConv3d(C_IN, C_OUT, 3, dilation=(1, 5, 1)),
     r"output size on spatial axis 1 would be -2 \(input 8, kernel_size 3, stride 1, padding 0, dilation 5\)"),
    (sparse.SparseConv3d(C_IN, C_OUT, (1, 1, 10), stride=4),
     r"output size on spatial axis 2 would be 0 \(input 8, kernel_size 10, stride 4"),
    (sparse.SparseMaxPool3d(3, dilation=4), r"output size on spatial axis 0 would be 0 .*dilation 4"),
    (sparse.SparseAvgPool3d(9, stride=1), "output size on spatial axis 0 would be 0"),
    (sparse.SparseConvTranspose3d(C_IN, C_OUT, 1, padding=5),
     r"output size on spatial axis 0 would be -2; reduce padding \(5\)"),
])
def test_geometry_that_collapses_the_output(module, match):
    with pytest.raises(ValueError, match=match + ".*"):
        module(_input(3))


CONSTRUCTOR_CASES = [
    (dict(kernel_size=0), ValueError, "kernel_size must be >= 1 on every axis, got 0"),
    (dict(kernel_size=(3, 3)), ValueError, r"kernel_size must have 3 entries \(one per spatial axis\), got \(3, 3\)"),
    (dict(kernel_size=2.5), TypeError, "kernel_size must be an int or a sequence of 3 ints, got 2.5"),
    (dict(kernel_size=(3, "3", 3)), TypeError, "kernel_size must be an int or a sequence of 3 ints"),
    (dict(kernel_size=True), TypeError, "kernel_size must be an int or a sequence of 3 ints, got True"),
    (dict(stride=0), ValueError, "stride must be >= 1 on every axis, got 0"),
    (dict(padding=-1), ValueError, "padding must be >= 0 on every axis, got -1"),
    (dict(dilation=(1, 0, 1)), ValueError, r"dilation must be >= 1 on every axis, got \(1, 0, 1\)"),
    (dict(in_channels=0), ValueError, "in_channels must be a positive int, got 0"),
    (dict(in_channels=4.0), ValueError, "in_channels must be a positive int, got 4.0"),
    (dict(out_channels=True), ValueError, "out_channels must be a positive int, got True"),
    (dict(groups=3), ValueError, "groups=3 must divide in_channels=4 and out_channels=8"),
    (dict(region="ball"), ValueError, "region must be 'cube', 'cross' or a KernelRegion, got 'ball'"),
]


@pytest.mark.parametrize("cls, kwargs, error, match", [
    (cls, *case) for cls in (sparse.SubMConv3d, sparse.SparseConv3d, sparse.SparseConvTranspose3d)
    for case in CONSTRUCTOR_CASES
    if not (cls is sparse.SubMConv3d and set(case[0]) & {"stride", "padding"})  # submanifold: neither
])
def test_constructor_arguments(cls, kwargs, error, match):
    args = dict(in_channels=C_IN, out_channels=C_OUT, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(error, match=f"{cls.__name__}: {match}"):
        cls(**args)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
    (dict(kernel_size=2, stride=0), ValueError, "stride must be >= 1"),
    (dict(kernel_size=2, padding=-2), ValueError, "padding must be >= 0"),
])
def test_pool_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=f"SparseMaxPool3d: {match}"):
        sparse.SparseMaxPool3d(**kwargs)


def test_global_pool_reduction():
    with pytest.raises(ValueError, match="SparseGlobalPool: reduce must be 'max', 'mean' or 'sum', got 'min'"):
        sparse.SparseGlobalPool("min")


def test_inverse_conv_needs_the_strided_conv_it_inverts():
    x = _input(3)
    with pytest.raises(ValueError, match=r"SparseInverseConv3d: these sites were not produced by a strided sparse "
                                         r"conv with kernel_size=\(3, 3, 3\).*no strided conv \(they are input"):
        sparse.SparseInverseConv3d(C_IN, C_OUT, 3)(x)
    down = sparse.SparseConv3d(C_IN, C_IN, 2, stride=2)(x)
    with pytest.raises(ValueError, match=r"produced by: kernel_size=\(2, 2, 2\), stride=\(2, 2, 2\)"):
        sparse.SparseInverseConv3d(C_IN, C_OUT, 3)(down)


def test_batch_norm_width_in_a_sparse_sequential():
    net = sparse.SparseSequential(sparse.SubMConv3d(C_IN, C_OUT), torch.nn.BatchNorm1d(C_OUT + 1))
    with pytest.raises(ValueError, match=rf"BatchNorm1d\({C_OUT + 1}\): expected feature rows \[N, {C_OUT + 1}\], "
                                         rf"got \[3, {C_OUT}\]; the previous layer's out_channels must equal"):
        net(_input(3))


# ------------------------------------------------------------------------------------------ SparseTensor

COORDS = torch.tensor([[0, 1, 2, 3], [1, 4, 0, 2]], dtype=torch.int32)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(spatial_shape=(8.5, 8, 8)), TypeError, r"spatial_shape\[0\] must be an int, got 8.5"),
    (dict(spatial_shape="888"), TypeError, "spatial_shape must be a sequence of 3 ints .* got '888'"),
    (dict(spatial_shape=8), TypeError, "spatial_shape must be a sequence of 3 ints"),
    (dict(spatial_shape=(8, True, 8)), TypeError, r"spatial_shape\[1\] must be an int, got True"),
    (dict(spatial_shape=(8, 0, 8)), ValueError, r"spatial_shape\[1\] must be >= 1, got 0"),
    (dict(spatial_shape=(8, 8)), ValueError, r"spatial_shape \(8, 8\) has 2 axes but coords has 3 spatial columns"),
    (dict(batch_size=1.5), TypeError, "batch_size must be an int, got 1.5"),
    (dict(batch_size=True), TypeError, "batch_size must be an int, got True"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    # batch index 1 with batch_size 1
    (dict(batch_size=1), ValueError, r"coords has batch index \(column 0\) = 1, but batch_size = 1; every value"),
    # (X, Y, Z) = (4, 5, 6) given for (z, y, x) coordinates: caught on the axis that does not fit
    (dict(spatial_shape=(4, 5, 6)), ValueError, r"coords has spatial axis 0 \(column 1\) = 4, but spatial_shape\[0\]"),
    (dict(spatial_shape=(2 ** 21, 2 ** 21, 2 ** 21)), ValueError, r"key space .* more than 2\*\*62; use a coarser"),
])
def test_sparse_tensor_grid_arguments(kwargs, error, match):
    with pytest.raises(error, match=f"SparseTensor: {match}"):
        SparseTensor(torch.zeros(2, 3), COORDS, **kwargs)


@pytest.mark.parametrize("coords, error, match", [
    (COORDS.float(), TypeError, "coords must be an integer tensor .int32 or int64., got torch.float32; voxelize"),
    (COORDS.bool(), TypeError, "coords must be an integer tensor .int32 or int64., got torch.bool"),
    (COORDS[:, :1], ValueError, r"coords must have shape \[N, 1 \+ D\] .* got \[2, 1\]"),
    (COORDS[None], ValueError, r"coords must have shape \[N, 1 \+ D\] .* got \[1, 2, 4\]"),
    (COORDS - 3, ValueError, "coords column 0 has negative value -3; coordinates must be >= 0"),
    (COORDS.long() + torch.tensor([0, 2 ** 31, 0, 0]), ValueError,
     r"coords has value 2147483652, beyond int32; coordinates must be < 2\*\*31"),
    (COORDS.numpy(), TypeError, "coords must be an integer torch.Tensor"),
])
def test_sparse_tensor_coordinates(coords, error, match):
    with pytest.raises(error, match=f"SparseTensor: {match}"):
        SparseTensor(torch.zeros(2, 3), coords)


def test_sparse_tensor_rows_and_feature_types():
    with pytest.raises(ValueError, match="SparseTensor: feats has 3 rows but coords has 2"):
        SparseTensor(torch.zeros(3, 3), COORDS)
    with pytest.raises(TypeError, match="SparseTensor: feats must be floating point, got torch.int32"):
        SparseTensor(torch.zeros(2, 3, dtype=torch.int32), COORDS)
    with pytest.raises(ValueError, match=r"SparseTensor.replace: feats must be \[N, C\] with N = 2 rows, got \[3, 1\]"):
        SparseTensor(torch.zeros(2, 3), COORDS).replace(torch.zeros(3, 1))


# -------------------------------------------------------------------------------------------- backbone

def test_second_backbone_bad_input():
    with pytest.raises(ValueError, match="SECOND backbone: in_channels must be a positive int, got 0"):
        SECONDBackbone8x(in_channels=0)
    net = SECONDBackbone8x(in_channels=4)
    coords = torch.tensor([[0, 1, 5, 5], [0, 1, 6, 5]], dtype=torch.int32)
    with pytest.raises(ValueError, match="SubMConv3d: in_channels=4 but the input has 3 channels"):
        net(SparseTensor(torch.rand(2, 3), coords, spatial_shape=(41, 64, 64)))
    with pytest.raises(ValueError, match=r"SubMConv3d: expects 3 spatial axes .* got a SparseTensor with 2"):
        net(SparseTensor(torch.rand(2, 4), coords[:, :3], spatial_shape=(64, 64)))
    # Z = 2: the third downsampling (padding 0 on z) leaves no output plane
    with pytest.raises(ValueError, match=r"output size on spatial axis 0 would be 0 \(input 1, kernel_size 3, "
                                         r"stride 2, padding 0"):
        net(SparseTensor(torch.rand(2, 4), coords, spatial_shape=(2, 64, 64)))


# ------------------------------------------------------------------------------------ spconv drop-in

FEATS = torch.randn(2, C_IN)


@pytest.mark.parametrize("indices, spatial_shape, batch_size, error, match", [
    (COORDS.short(), [8, 8, 8], 2, TypeError, "SparseConvTensor: indices must be int32 or int64, got torch.int16"),
    (COORDS.float(), [8, 8, 8], 2, TypeError, "SparseConvTensor: indices must be int32 or int64, got torch.float32"),
    (COORDS, [8.5, 8, 8], 2, TypeError, r"SparseConvTensor: spatial_shape must be a sequence of 3 ints, got \[8.5"),
    (COORDS, ["8", 8, 8], 2, TypeError, "SparseConvTensor: spatial_shape must be a sequence of 3 ints"),
    (COORDS, [8, 8], 2, ValueError, r"SparseConvTensor: spatial_shape \[8, 8\] has 2 axes but indices has 3"),
    (COORDS, [8, 8, 8], 1.0, ValueError, "SparseConvTensor: batch_size must be a positive int, got 1.0"),
])
def test_shim_tensor_arguments(indices, spatial_shape, batch_size, error, match):
    with pytest.raises(error, match=match):
        spconv.SparseConvTensor(FEATS, indices, spatial_shape, batch_size)


@pytest.mark.parametrize("feats, indices, spatial_shape, batch_size, match", [
    (FEATS, COORDS, [8, 8, 8], 1, r"batch index \(column 0\) = 1, but batch_size = 1"),
    (FEATS, COORDS - 1, [8, 8, 8], 2, "coords column 0 has negative value -1"),
    (FEATS, COORDS, [4, 8, 8], 2, r"spatial axis 0 \(column 1\) = 4, but spatial_shape\[0\] = 4"),
    (FEATS, COORDS, [2 ** 21] * 3, 2, r"more than 2\*\*62"),
    (FEATS[:1], COORDS, [8, 8, 8], 2, "features has 1 rows but indices has 2"),
    (FEATS.to("meta"), COORDS, [8, 8, 8], 2, "feats is on meta but coords on cpu"),
])
def test_shim_sites_are_checked_when_a_layer_runs(feats, indices, spatial_shape, batch_size, match):
    x = spconv.SparseConvTensor(feats, indices, spatial_shape, batch_size)
    with pytest.raises(ValueError, match=match):
        spconv.SubMConv3d(C_IN, C_OUT, 3)(x)


def test_shim_layer_arguments():
    x = spconv.SparseConvTensor(FEATS, COORDS, [8, 8, 8], 2)
    with pytest.raises(ValueError, match=r"SubMConv3d: in_channels=3 but the input features have 4 channels"):
        spconv.SubMConv3d(3, C_OUT, 3)(x)
    with pytest.raises(TypeError, match="SparseConv3d: input features are torch.float64 but the weight is torch.float"):
        spconv.SparseConv3d(C_IN, C_OUT, 3)(spconv.SparseConvTensor(FEATS.double(), COORDS, [8, 8, 8], 2))
    with pytest.raises(ValueError, match=r"output size on spatial axis 0 would be 0 \(input 8, kernel_size 9"):
        spconv.SparseConv3d(C_IN, C_OUT, 9)(x)
    with pytest.raises(ValueError, match=r"SubMConv2d: expects 2 spatial axes"):
        spconv.SubMConv2d(C_IN, C_OUT, 3)(x)
    with pytest.raises(TypeError, match="SubMConv3d: input must be a SparseConvTensor"):
        spconv.SubMConv3d(C_IN, C_OUT, 3)(FEATS)
    with pytest.raises(ValueError, match="weight .*meta.* must match feats .*cpu"):
        spconv.SparseConv3d(C_IN, C_OUT, 3).to("meta")(x)


# ------------------------------------------------------------------------------------ a real second device

@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CPU / CUDA mismatch needs a GPU; the 'meta' device "
                                                          "cases above stand in for it on a CPU-only machine")
def test_cpu_and_cuda_mismatches():
    from irregconv.nn import GCNConv
    with pytest.raises(ValueError, match="SparseTensor: feats is on cuda:0 but coords on cpu"):
        SparseTensor(FEATS.cuda(), COORDS)
    with pytest.raises(ValueError, match=r"weight \(torch.float32, cuda:0\) must match feats \(torch.float32, cpu\)"):
        sparse.SubMConv3d(C_IN, C_OUT).cuda()(SparseTensor(FEATS, COORDS))
    with pytest.raises(ValueError, match="GCNConv: x is on cuda:0 but edge_index on cpu"):
        GCNConv(C_IN, C_OUT).cuda()(torch.randn(3, C_IN, device="cuda"), torch.tensor([[0, 1], [1, 2]]))

"""Pointcept-style code (``models/pointcept_style.py``) on irregconv's spconv drop-in against the same file on
spconv 2.3.8: ``is_spconv_module`` dispatch, SpUNet (segmentation with a 1x1x1 or ``spconv.Identity()`` head,
and classification) and a PT-v3-style encoder built from point dicts, on a real ScanNet scene; a float64
gradcheck of the residual block on the drop-in."""
import pytest
import torch
from torch import nn
from torch.func import functional_call

from irregconv.data import read_points
from irregconv.testing import assert_scaled_close, data_path, random_coords, with_data, with_package

pytestmark = with_package("spconv", "torch_geometric")

SCENE = ("pointclouds", "scannet_scene0000_00.bin")
GRID_SIZE = 0.15  # metres; Pointcept's ScanNet configs use 0.02, a coarser grid keeps the tests fast
# float32 through a whole network: within 1e-4 of the output's largest magnitude (spconv's own float32 error is
# ~1e-5 of the scale, measured against float64 in tests/compat/test_spconv.py)


def scannet_point_dict():
    """Pointcept's input dict for the scene cut in two at x = 4.2 m (a batch of two): one point per grid cell
    (the first in file order), ``feat`` = xyz and rgb in [0, 1], ``offset`` = cumulative point counts."""
    points = torch.from_numpy(read_points(data_path(*SCENE), num_features=6))
    parts = [points[points[:, 0] < 4.2], points[points[:, 0] >= 4.2]]
    coords, grid_coords, colors, counts = [], [], [], []
    for part in parts:
        cells = torch.div(part[:, :3] - part[:, :3].min(0).values, GRID_SIZE, rounding_mode="floor").int()
        _, inverse = torch.unique(cells, dim=0, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1,), part.size(0)).scatter_reduce(
            0, inverse, torch.arange(part.size(0)), reduce="amin")
        coords.append(part[first, :3])
        colors.append(part[first, 3:] / 255)
        grid_coords.append(cells[first])
        counts.append(first.numel())
    coord = torch.cat(coords)
    return {"coord": coord, "grid_coord": torch.cat(grid_coords), "feat": torch.cat([coord, torch.cat(colors)], 1),
            "offset": torch.tensor(counts).cumsum(0)}



DISPATCHED = {
    "SubMConv3d": lambda s: s.SubMConv3d(4, 4, 3),
    "SparseInverseConv3d": lambda s: s.SparseInverseConv3d(4, 4, 2, indice_key="k"),
    "SparseSequential": lambda s: s.SparseSequential(nn.ReLU()),
    "SparseMaxPool3d": lambda s: s.SparseMaxPool3d(2),
    "SparseBatchNorm": lambda s: s.SparseBatchNorm(4),
    "SparseReLU": lambda s: s.SparseReLU(),
    "SparseIdentity": lambda s: s.SparseIdentity(),
    "Identity": lambda s: s.Identity(),
    "ToDense": lambda s: s.ToDense(),
    "nn.Linear": lambda s: nn.Linear(4, 4),
    "nn.BatchNorm1d": lambda s: nn.BatchNorm1d(4),
}


@pytest.mark.parametrize("name", sorted(DISPATCHED))
def test_is_spconv_module_dispatch_matches_spconv(load_models, name):
    """``PointSequential`` routes by ``spconv.modules.is_spconv_module``; both answer alike for every module
    (``spconv.Identity`` is a plain ``nn.Module`` in spconv, so it gets the features, not the tensor)."""
    theirs, ours = (module.spconv for module in load_models("pointcept_style"))
    assert ours.modules.is_spconv_module(DISPATCHED[name](ours)) == \
        theirs.modules.is_spconv_module(DISPATCHED[name](theirs))
    assert ours.modules.is_sparse_conv(DISPATCHED[name](ours)) == theirs.modules.is_sparse_conv(DISPATCHED[name](theirs))


def test_sparse_module_subclass_is_dispatched_as_a_whole(load_models):
    for module in load_models("pointcept_style"):
        block = module.BasicBlock(4, 8, norm_fn=nn.BatchNorm1d)
        assert module.spconv.modules.is_spconv_module(block)
        assert not module.spconv.modules.is_spconv_module(module.PointSequential())


@with_data(*SCENE)
@pytest.mark.parametrize("num_classes,cls_mode", [(13, False), (0, False), (13, True)])
def test_spunet_matches_spconv_on_scannet(load_models, as_spconv_reference, twins, num_classes, cls_mode):
    """Per-point outputs row by row: submanifold and inverse convolutions keep the input's order, so the skip
    concatenations line up; ``num_classes=0`` builds the ``spconv.Identity()`` head."""
    pair = load_models("pointcept_style")
    data = scannet_point_dict()
    theirs, ours = twins(pair, lambda m: m.SpUNetBase(6, num_classes, cls_mode=cls_mode))
    assert isinstance(ours.final, pair[1].spconv.Identity) == (num_classes == 0)
    with as_spconv_reference(theirs):
        expected = theirs(dict(data))
    with torch.no_grad():
        got = ours(dict(data))
    rows = 2 if cls_mode else data["feat"].size(0)
    assert got.shape == expected.shape == (rows, num_classes or 8)
    assert_scaled_close(got, expected)


@with_data(*SCENE)
@pytest.mark.parametrize("num_classes", [0, 13])
def test_point_transformer_style_encoder_matches_spconv_on_scannet(load_models, as_spconv_reference,
                                                                  twins, num_classes):
    """Point dicts through PointSequential: spconv modules get the sparse tensor, torch modules the features
    (written back with ``replace_feature``), a pooling builds a new sparse tensor mid-network, and the head is
    ``spconv.Identity()`` or a linear layer."""
    pair = load_models("pointcept_style")
    theirs, ours = twins(pair, lambda m: m.PointEncoder(6, num_classes=num_classes))
    data = scannet_point_dict()
    with as_spconv_reference(theirs):
        expected = theirs(pair[0].Point(data))
    with torch.no_grad():
        got = ours(pair[1].Point(data))
    assert isinstance(got.sparse_conv_feat, pair[1].spconv.SparseConvTensor)
    assert torch.equal(got.grid_coord, expected.grid_coord)
    assert torch.equal(got.sparse_conv_feat.indices, expected.sparse_conv_feat.indices)
    assert got.sparse_conv_feat.spatial_shape == expected.sparse_conv_feat.spatial_shape
    assert_scaled_close(got.feat, expected.feat)
    assert_scaled_close(got.sparse_conv_feat.features, expected.sparse_conv_feat.features)


def test_basic_block_gradcheck_on_the_drop_in(load_models):
    """Pointcept's residual block (with its 1x1x1 projection) in training mode, float64: gradients of the
    input features and of every convolution weight against finite differences."""
    module = load_models("pointcept_style")[1]
    block = module.BasicBlock(3, 4, norm_fn=nn.BatchNorm1d, indice_key="subm1").double().train()
    gen = torch.Generator().manual_seed(0)
    shape, batch_size = [4, 5, 4], 2
    coords = random_coords(12, shape, batch_size, generator=gen)
    feats = torch.randn(coords.size(0), 3, dtype=torch.float64, generator=gen, requires_grad=True)
    names = ["conv1.weight", "conv2.weight", "proj.0.weight"]
    weights = [block.get_parameter(name).detach().clone().requires_grad_() for name in names]

    x = module.spconv.SparseConvTensor(feats, coords, shape, batch_size)

    def run(features, *params):
        return functional_call(block, dict(zip(names, params)), (x.replace_feature(features),)).features

    assert torch.autograd.gradcheck(run, (feats, *weights), fast_mode=True)

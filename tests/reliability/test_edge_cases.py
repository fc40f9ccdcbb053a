"""Inputs at the edges that must work (not raise, not give a wrong answer): int32 and int64 coordinates,
non-finite points, zero points / voxels / edges / nodes (empty outputs with the right shapes, gradients that
flow), one voxel, batch items without voxels, coordinates at the top of the key range, non-contiguous
features, float16 / bfloat16 features, graphs with isolated nodes and existing self-loops."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import irregconv.nn as icnn
from irregconv import SparseTensor
from irregconv.compat import spconv
from irregconv.data import voxelize
from irregconv.models.second import OUT_CHANNELS, SECONDBackbone8x
from irregconv.testing import (conv_at_sites, random_coords, reference_output_sites, subm_conv_at_sites,
                               with_package)

C_IN, C_OUT = 3, 4

#: sparse modules that take and return a SparseTensor, with their kind for the dense oracle
SPARSE_MODULES = {
    "SubMConv3d": lambda: icnn.SubMConv3d(C_IN, C_OUT, 3),
    "SparseConv3d": lambda: icnn.SparseConv3d(C_IN, C_OUT, 3, stride=2, padding=1),
    "SparseConvTranspose3d": lambda: icnn.SparseConvTranspose3d(C_IN, C_OUT, 3, stride=2, padding=1),
    "SparseMaxPool3d": lambda: icnn.SparseMaxPool3d(2),
    "SparseAvgPool3d": lambda: icnn.SparseAvgPool3d(2),
    "SparseDepthwiseSeparableConv3d": lambda: icnn.SparseDepthwiseSeparableConv3d(C_IN, C_OUT),
    "SparseCondConv3d": lambda: icnn.SparseCondConv3d(C_IN, C_OUT),
    "SparseDynamicConv3d": lambda: icnn.SparseDynamicConv3d(C_IN, C_OUT),
    "SparseSequential+BN": lambda: icnn.SparseSequential(icnn.SubMConv3d(C_IN, C_OUT, 3), torch.nn.BatchNorm1d(C_OUT),
                                                         torch.nn.ReLU()),
    "strided+inverse": lambda: icnn.SparseSequential(icnn.SparseConv3d(C_IN, C_OUT, 3, stride=2, padding=1),
                                                     icnn.SparseInverseConv3d(C_OUT, C_OUT, 3)),
}


def _sites(num: int = 40, shape=(9, 10, 11), batch_size: int = 2, seed: int = 0):
    return random_coords(num, shape, batch_size, torch.Generator().manual_seed(seed)), shape, batch_size


def _run(module, x: SparseTensor):
    """Output and the gradients of a fixed cotangent w.r.t. the input features and every parameter."""
    feats = x.feats.detach().clone().requires_grad_()
    out = module(SparseTensor.from_sites(feats, x.sites))
    out_feats = out.feats if isinstance(out, SparseTensor) else out
    cotangent = torch.linspace(-1, 1, out_feats.numel(), dtype=out_feats.dtype).reshape(out_feats.shape)
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out_feats, [feats] + params, cotangent, allow_unused=True)
    return out, grads


# ------------------------------------------------------------------------------------------ int32 / int64

@pytest.mark.parametrize("name", sorted(SPARSE_MODULES))
def test_int32_and_int64_coordinates_give_the_same_bits(name):
    coords, shape, batch = _sites()
    feats = torch.randn(coords.size(0), C_IN)
    torch.manual_seed(0)
    module = SPARSE_MODULES[name]()
    (out_a, grads_a), (out_b, grads_b) = [_run(module, SparseTensor(feats, coords.to(dtype), shape, batch))
                                          for dtype in (torch.int32, torch.int64)]
    assert out_a.coords.dtype == out_b.coords.dtype == torch.int32
    assert torch.equal(out_a.coords, out_b.coords) and torch.equal(out_a.feats, out_b.feats)
    for a, b in zip(grads_a, grads_b):
        assert (a is None and b is None) or torch.equal(a, b)


def test_spconv_drop_in_int32_and_int64_indices():
    coords, shape, batch = _sites()
    feats = torch.randn(coords.size(0), C_IN)
    torch.manual_seed(0)
    net = spconv.SparseSequential(spconv.SubMConv3d(C_IN, C_OUT, 3, indice_key="s1"), torch.nn.ReLU(),
                                  spconv.SparseConv3d(C_OUT, C_OUT, 3, 2, 1, indice_key="d1"),
                                  spconv.SparseInverseConv3d(C_OUT, C_OUT, 3, indice_key="d1"))
    outs = [net(spconv.SparseConvTensor(feats, coords.to(dtype), list(shape), batch))
            for dtype in (torch.int32, torch.int64)]
    assert outs[0].indices.dtype == outs[1].indices.dtype == torch.int32
    assert torch.equal(outs[0].indices, outs[1].indices) and torch.equal(outs[0].features, outs[1].features)


# ------------------------------------------------------------------------------------------- non-finite

def test_voxelize_drops_and_counts_nonfinite_points():
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(200, 4, generator=gen) * 2
    bad = {3: (0, float("nan")), 17: (1, float("inf")), 42: (2, -float("inf")), 99: (3, float("nan")),
           150: (3, float("inf"))}   # rows 99 and 150: finite xyz, non-finite intensity
    for row, (column, value) in bad.items():
        points[row, column] = value
    v = voxelize(points, (0.25, 0.25, 0.25), (0, 0, 0, 2, 2, 2))
    finite = torch.ones(200, dtype=torch.bool)
    finite[list(bad)] = False
    clean = voxelize(points[finite], (0.25, 0.25, 0.25), (0, 0, 0, 2, 2, 2))
    assert v.dropped_nonfinite == len(bad) and v.dropped_out_of_range == 0
    assert torch.equal(v.coords, clean.coords) and torch.equal(v.feats, clean.feats)
    assert bool(torch.isfinite(v.feats).all())
    assert v.point_to_voxel[list(bad)].tolist() == [-1] * len(bad)
    assert torch.equal(v.point_to_voxel[finite], clean.point_to_voxel)


# ------------------------------------------------------------------------------------------------ empty

@pytest.mark.parametrize("name", sorted(SPARSE_MODULES))
def test_zero_sites(name):
    x = SparseTensor(torch.zeros(0, C_IN), torch.zeros(0, 4, dtype=torch.int32), spatial_shape=(8, 8, 8),
                     batch_size=2)
    module = SPARSE_MODULES[name]()
    out, grads = _run(module, x)
    width = C_IN if "Pool" in name else C_OUT
    assert out.feats.shape == (0, width) and out.coords.shape == (0, 4) and out.batch_size == 2
    assert grads[0].shape == (0, C_IN)
    for param, grad in zip(module.parameters(), grads[1:]):   # gradients flow: zeros, not None
        assert grad is not None and grad.shape == param.shape and not grad.any()


def test_zero_points_through_voxelize_and_the_backbone():
    v = voxelize(torch.zeros(0, 4), (0.1, 0.1, 0.1), (0, -3.2, -3, 6.4, 3.2, 1.1))   # grid (41, 64, 64)
    net = SECONDBackbone8x(4)
    for training in (True, False):
        net.train(training)
        out, grads = _run(net, v.to_sparse_tensor())
        assert out.feats.shape == (0, OUT_CHANNELS) and out.spatial_shape == (2, 8, 8)
        assert all(g is not None and not g.any() for g in grads[1:])
    assert [int(m.num_batches_tracked) for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)] == [1] * 12


def test_batch_norm_of_zero_rows_in_a_sparse_sequential_matches_torch():
    bn_ours, bn_torch = torch.nn.BatchNorm1d(C_IN), torch.nn.BatchNorm1d(C_IN)
    x = SparseTensor(torch.zeros(0, C_IN), torch.zeros(0, 4, dtype=torch.int32), (4, 4, 4))
    out = icnn.SparseSequential(bn_ours)(x)
    expected = bn_torch(torch.zeros(0, C_IN))
    assert out.feats.shape == expected.shape
    for name, buffer in bn_torch.named_buffers():
        assert torch.equal(getattr(bn_ours, name), buffer), name


def test_zero_points_through_the_spconv_drop_in():
    x = spconv.SparseConvTensor(torch.zeros(0, C_IN), torch.zeros(0, 4, dtype=torch.int32), [8, 8, 8], 2)
    net = spconv.SparseSequential(spconv.SubMConv3d(C_IN, C_OUT, 3), torch.nn.BatchNorm1d(C_OUT),
                                  spconv.SparseConv3d(C_OUT, C_OUT, 3, 2, 1), spconv.ToDense())
    assert net(x).shape == (2, C_OUT, 4, 4, 4) and not net(x).any()


def _gcn_dense(x, edge_index, conv, edge_weight=None):
    """Kipf & Welling with PyG's self-loop rule: existing loops keep their weight, missing ones get 1."""
    n = x.size(0)
    adjacency = torch.zeros(n, n, dtype=x.dtype)
    weight = torch.ones(edge_index.size(1), dtype=x.dtype) if edge_weight is None else edge_weight
    loops = edge_index[0] == edge_index[1]
    adjacency.index_put_((edge_index[1, ~loops], edge_index[0, ~loops]), weight[~loops], accumulate=True)
    diagonal = torch.ones(n, dtype=x.dtype)
    diagonal[edge_index[0, loops]] = weight[loops]   # the last loop of a node wins (one loop per node)
    adjacency += torch.diag(diagonal)
    norm = adjacency.sum(dim=1).pow(-0.5)
    return (norm[:, None] * adjacency * norm[None, :]) @ (x @ conv.lin.weight.t()) + conv.bias


@pytest.mark.parametrize("num_nodes", [0, 5])
def test_graph_layers_without_edges(num_nodes):
    x = torch.randn(num_nodes, C_IN, dtype=torch.float64, requires_grad=True)
    edges = torch.zeros(2, 0, dtype=torch.long)
    gcn = icnn.GCNConv(C_IN, C_OUT).double()
    graph_conv = icnn.GraphConv(C_IN, C_OUT).double()
    sage = icnn.SAGEConv(C_IN, C_OUT).double()
    gin = icnn.GINConv(torch.nn.Linear(C_IN, C_OUT).double(), eps=0.5)
    edge = icnn.EdgeConv(torch.nn.Linear(2 * C_IN, C_OUT).double())
    expected = {  # nothing to aggregate: only the root / self terms remain
        gcn: x @ gcn.lin.weight.t() + gcn.bias,
        graph_conv: x @ graph_conv.lin_root.weight.t() + graph_conv.lin_rel.bias,
        sage: x @ sage.lin_r.weight.t() + sage.lin_l.bias,
        gin: gin.nn(1.5 * x),
        edge: x.new_zeros(num_nodes, C_OUT),
    }
    for layer, want in expected.items():
        out = layer(x, edges)
        torch.testing.assert_close(out, want, rtol=1e-7, atol=1e-9)
        grad, = torch.autograd.grad(out.sum(), x, allow_unused=True, retain_graph=True)
        assert grad is None or grad.shape == x.shape


# -------------------------------------------------------------------------------------------- one voxel

@pytest.mark.parametrize("kind", ["subm", "strided", "transposed"])
def test_a_single_voxel_matches_the_dense_oracle(kind):
    coords = torch.tensor([[0, 3, 0, 4]], dtype=torch.int32)
    shape = (5, 5, 5)
    feats = torch.randn(1, C_IN, dtype=torch.float64)
    torch.manual_seed(0)
    if kind == "subm":
        conv = icnn.SubMConv3d(C_IN, C_OUT, 3, bias=False).double()
        out = conv(SparseTensor(feats, coords, shape))
        want = subm_conv_at_sites(feats, coords, conv.weight, shape, 1, (3, 3, 3))
    else:
        cls = icnn.SparseConv3d if kind == "strided" else icnn.SparseConvTranspose3d
        conv = cls(C_IN, C_OUT, 3, stride=2, padding=1, bias=False).double()
        out = conv(SparseTensor(feats, coords, shape))
        want = conv_at_sites(feats, coords, out.coords, conv.weight, shape, 1, (3, 3, 3), 2, 1,
                             transposed=kind == "transposed")
        sites = reference_output_sites(coords, shape, 1, (3, 3, 3), 2, 1, transposed=kind == "transposed")
        assert torch.equal(out.coords, sites)
    torch.testing.assert_close(out.feats, want, rtol=1e-7, atol=1e-9)


def test_a_single_voxel_through_the_backbone_in_eval_mode():
    x = SparseTensor(torch.rand(1, 4), torch.tensor([[1, 20, 30, 30]], dtype=torch.int32), (41, 64, 64),
                     batch_size=3)
    out = SECONDBackbone8x().eval()(x)
    assert out.num_sites > 0 and bool((out.coords[:, 0] == 1).all()) and bool(torch.isfinite(out.feats).all())


# ------------------------------------------------------------------------------- batch items without sites

@pytest.mark.parametrize("name", ["SubMConv3d", "SparseConv3d", "SparseConvTranspose3d", "SparseMaxPool3d",
                                  "SparseSequential+BN", "strided+inverse", "SparseCondConv3d"])
def test_batch_items_without_sites(name):
    coords, shape, _ = _sites(batch_size=1)
    feats = torch.randn(coords.size(0), C_IN)
    torch.manual_seed(0)
    module = SPARSE_MODULES[name]()
    alone = module(SparseTensor(feats, coords, shape, batch_size=1))
    # the same sites as item 1 of 4; items 0, 2 and 3 are empty
    moved = coords.clone()
    moved[:, 0] = 1
    inside = module(SparseTensor(feats, moved, shape, batch_size=4))
    assert inside.batch_size == 4 and bool((inside.coords[:, 0] == 1).all())
    assert torch.equal(inside.coords[:, 1:], alone.coords[:, 1:]) and torch.equal(inside.feats, alone.feats)
    pooled = icnn.SparseGlobalPool("max")(inside)
    assert pooled.shape == (4, inside.num_channels) and not pooled[[0, 2, 3]].any()
    assert inside.dense().shape == (4, inside.num_channels, *inside.spatial_shape)


# ------------------------------------------------------------------------------------- large coordinates

@pytest.mark.parametrize("dims, extent", [(3, 2 ** 20), (1, 2 ** 31 - 1)])
def test_coordinates_at_the_top_of_the_key_range(dims, extent):
    """Sites translated to the far corner of a huge grid (key space up to 2**61) give the same outputs as
    near the origin: submanifold convs are translation-equivariant, strided ones too for even shifts."""
    coords, _, batch = _sites(30, (6,) * dims)
    feats = torch.randn(coords.size(0), C_IN)
    shift = torch.tensor([0] + [(extent - 8) // 2 * 2] * dims, dtype=torch.int32)
    far = coords + shift
    assert int(far[:, 1:].max()) >= extent - 8
    subm = getattr(icnn, f"SubMConv{dims}d")(C_IN, C_OUT, 3)
    strided = getattr(icnn, f"SparseConv{dims}d")(C_IN, C_OUT, 2, stride=2)
    for conv, scale in ((subm, 1), (strided, 2)):
        near = conv(SparseTensor(feats, coords, (8,) * dims, batch))
        top = conv(SparseTensor(feats, far, (extent,) * dims, batch))
        assert torch.equal(top.coords[:, 1:], near.coords[:, 1:] + shift[1:] // scale)
        assert torch.equal(top.feats, near.feats)


# --------------------------------------------------------------------------------- non-contiguous / dtypes

@pytest.mark.parametrize("name", sorted(SPARSE_MODULES))
def test_non_contiguous_features(name):
    coords, shape, batch = _sites()
    base = torch.randn(C_IN * 2, coords.size(0))
    strided_view = base[::2].t()                 # [N, C_IN], neither row- nor column-contiguous
    assert not strided_view.is_contiguous()
    torch.manual_seed(0)
    module = SPARSE_MODULES[name]()
    out_view = module(SparseTensor(strided_view, coords, shape, batch))
    out_copy = module(SparseTensor(strided_view.contiguous(), coords, shape, batch))
    assert torch.equal(out_view.feats, out_copy.feats)


def test_non_contiguous_graph_features_and_points():
    x = torch.randn(C_IN, 6).t()
    edges = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    conv = icnn.GCNConv(C_IN, C_OUT)
    assert torch.equal(conv(x, edges), conv(x.contiguous(), edges))
    points = np.asfortranarray(np.random.default_rng(0).random((50, 4), dtype=np.float32))
    a, b = voxelize(points, (0.2,) * 3, (0, 0, 0, 1, 1, 1)), voxelize(np.ascontiguousarray(points), (0.2,) * 3,
                                                                     (0, 0, 0, 1, 1, 1))
    assert torch.equal(a.coords, b.coords) and torch.equal(a.feats, b.feats)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["SubMConv3d", "SparseConv3d", "SparseConvTranspose3d", "SparseMaxPool3d",
                                  "SparseAvgPool3d", "SparseDepthwiseSeparableConv3d", "SparseCondConv3d",
                                  "strided+inverse"])
def test_half_precision_sparse_modules(name, dtype):
    """float16 / bfloat16 compute (no silent upcast of the output) and agree with float32 on the same
    (rounded) inputs and weights within the precision of the format."""
    coords, shape, batch = _sites()
    feats = torch.randn(coords.size(0), C_IN).to(dtype)
    torch.manual_seed(0)
    module = SPARSE_MODULES[name]().to(dtype)
    out = module(SparseTensor(feats, coords, shape, batch))
    reference = module.float()(SparseTensor(feats.float(), coords, shape, batch))
    assert out.dtype == dtype and torch.equal(out.coords, reference.coords)
    tolerance = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(out.feats.float(), reference.feats, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_points_and_max_aggregation(dtype):
    points = torch.rand(300, 4, generator=torch.Generator().manual_seed(0))
    v16, v32 = voxelize(points.to(dtype), (0.25,) * 3, (0, 0, 0, 1, 1, 1)), voxelize(points.to(dtype).float(),
                                                                                     (0.25,) * 3, (0, 0, 0, 1, 1, 1))
    assert v16.feats.dtype == dtype and torch.equal(v16.coords, v32.coords)
    torch.testing.assert_close(v16.feats.float(), v32.feats, rtol=1e-2, atol=1e-2)
    x = torch.randn(6, C_IN)
    edges = torch.tensor([[0, 1, 2, 3, 4, 5, 0], [1, 2, 3, 4, 5, 0, 3]])
    for layer in (icnn.SAGEConv(C_IN, C_OUT, aggr="max"), icnn.EdgeConv(torch.nn.Linear(2 * C_IN, C_OUT))):
        want = layer(x.to(dtype).float(), edges)
        torch.testing.assert_close(layer.to(dtype)(x.to(dtype), edges).float(), want, rtol=5e-2, atol=5e-2)


# ------------------------------------------------------------------------ isolated nodes and self-loops

EDGES_WITH_LOOPS = torch.tensor([[0, 1, 1, 2, 3, 3, 0],     # node 4 isolated; loops at 1 and 3 (3 twice)
                                 [1, 0, 1, 3, 3, 3, 2]])


@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_with_isolated_nodes_and_existing_self_loops(weighted):
    x = torch.randn(5, C_IN, dtype=torch.float64)
    weight = torch.rand(7, dtype=torch.float64) + 0.5 if weighted else None
    conv = icnn.GCNConv(C_IN, C_OUT).double()
    torch.nn.init.uniform_(conv.bias)
    out = conv(x, EDGES_WITH_LOOPS, weight)
    torch.testing.assert_close(out, _gcn_dense(x, EDGES_WITH_LOOPS, conv, weight), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(out[4], x[4] @ conv.lin.weight.t() + conv.bias, rtol=1e-7, atol=1e-9)


@with_package("torch_geometric")
def test_gcn_with_isolated_nodes_and_existing_self_loops_matches_pyg():
    from torch_geometric.nn import GCNConv as PygGCNConv
    x = torch.randn(5, C_IN)
    weight = torch.rand(7) + 0.5
    ours, theirs = icnn.GCNConv(C_IN, C_OUT), PygGCNConv(C_IN, C_OUT)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x, EDGES_WITH_LOOPS, weight), theirs(x, EDGES_WITH_LOOPS, weight))


def test_message_passing_layers_with_isolated_nodes_and_self_loops():
    """Existing loops are ordinary edges for GraphConv / SAGEConv / GINConv; an isolated node keeps its root term."""
    x = torch.randn(5, C_IN, dtype=torch.float64)
    src, dst = EDGES_WITH_LOOPS
    adjacency = torch.zeros(5, 5, dtype=torch.float64).index_put_((dst, src), torch.ones(7, dtype=torch.float64),
                                                                  accumulate=True)
    graph_conv = icnn.GraphConv(C_IN, C_OUT).double()
    want = adjacency @ x @ graph_conv.lin_rel.weight.t() + graph_conv.lin_rel.bias + x @ graph_conv.lin_root.weight.t()
    torch.testing.assert_close(graph_conv(x, EDGES_WITH_LOOPS), want, rtol=1e-7, atol=1e-9)
    sage = icnn.SAGEConv(C_IN, C_OUT).double()
    mean = adjacency / adjacency.sum(dim=1, keepdim=True).clamp(min=1)
    want = mean @ x @ sage.lin_l.weight.t() + sage.lin_l.bias + x @ sage.lin_r.weight.t()
    torch.testing.assert_close(sage(x, EDGES_WITH_LOOPS), want, rtol=1e-7, atol=1e-9)
    gin = icnn.GINConv(torch.nn.Linear(C_IN, C_OUT).double())
    torch.testing.assert_close(gin(x, EDGES_WITH_LOOPS), gin.nn(adjacency @ x + x), rtol=1e-7, atol=1e-9)
    edge = icnn.EdgeConv(torch.nn.Linear(2 * C_IN, C_OUT).double())
    out = edge(x, EDGES_WITH_LOOPS)
    assert not out[4].any()   # no incoming edge: the max over no messages is 0
    messages = edge.nn(torch.cat([x[dst], x[src] - x[dst]], dim=1))
    want = torch.stack([messages[dst == i].max(dim=0).values if bool((dst == i).any()) else x.new_zeros(C_OUT)
                        for i in range(5)])
    torch.testing.assert_close(out, want, rtol=1e-7, atol=1e-9)


def test_dense_conv_of_a_one_pixel_image():
    x = torch.randn(2, C_IN, 1, 1, dtype=torch.float64)
    for backend in ("native", "engine"):
        conv = icnn.Conv2d(C_IN, C_OUT, 3, backend=backend).double()
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=1e-7, atol=1e-9)

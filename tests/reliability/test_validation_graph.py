"""Bad input at every graph entry point (each layer of ``irregconv.nn.graph``, ``gcn_norm``, ``knn_graph``)
raises a ValueError / TypeError naming the owner, the argument, the value received and what would work.
Each case once crashed inside (RuntimeError, IndexError, AttributeError) or was silently accepted."""
import copy

import pytest
import torch

import irregconv.nn.graph as graph
from irregconv.functional.graph import gcn_norm
from irregconv.testing import with_package

C_IN, C_OUT, N = 3, 5, 4
EDGES = torch.tensor([[0, 1, 2], [1, 2, 3]])

#: every layer of irregconv.nn.graph -> (factory, has in_channels, takes edge_weight)
LAYERS = {
    "GCNConv": (lambda: graph.GCNConv(C_IN, C_OUT), True, True),
    "GraphConv": (lambda: graph.GraphConv(C_IN, C_OUT), True, True),
    "SAGEConv": (lambda: graph.SAGEConv(C_IN, C_OUT), True, False),
    "GINConv": (lambda: graph.GINConv(torch.nn.Linear(C_IN, C_OUT)), False, False),
    "EdgeConv": (lambda: graph.EdgeConv(torch.nn.Linear(2 * C_IN, C_OUT)), False, False),
}
WITH_CHANNELS = sorted(name for name, (_, channels, _) in LAYERS.items() if channels)
WITH_WEIGHTS = sorted(name for name, (_, _, weights) in LAYERS.items() if weights)


def _x(rows: int = N, channels: int = C_IN, **kwargs) -> torch.Tensor:
    return torch.randn(rows, channels, **kwargs)


def test_every_public_graph_layer_is_covered():
    assert set(graph.__all__) - {"knn_graph"} == set(LAYERS)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_valid_input_runs(name):
    assert LAYERS[name][0]()(_x(), EDGES).shape == (N, C_OUT)


@pytest.mark.parametrize("edge_index, error, match", [
    (torch.tensor([[0, 1, 4], [1, 2, 3]]), ValueError, "edge_index has source index 4 but there are only 4 nodes; "
                                                       "indices must be < 4"),
    (torch.tensor([[0, 1, 2], [1, 2, 9]]), ValueError, "edge_index has target index 9 but there are only 4 nodes"),
    (torch.tensor([[0, -1, 2], [1, 2, 3]]), ValueError, r"edge_index has a negative source index -1; indices must "
                                                        r"be in \[0, 4\)"),
    (torch.tensor([[0, 1, 2], [1, -2, 3]]), ValueError, "edge_index has a negative target index -2"),
    (torch.tensor([[0, 1, 2], [1, 2, 3], [0, 0, 0]]), ValueError, r"edge_index must have shape \[2, E\] \(row 0 "
                                                                  r"source, row 1 target\), got \[3, 3\]"),
    (torch.tensor([0, 1, 2]), ValueError, r"edge_index must have shape \[2, E\] .*got \[3\]"),
    (EDGES.unsqueeze(-1), ValueError, r"edge_index must have shape \[2, E\] .*got \[2, 3, 1\]"),
    (EDGES.float(), TypeError, "edge_index must be int64 .or int32., got torch.float32"),
    (EDGES.bool(), TypeError, "edge_index must be int64 .or int32., got torch.bool"),
    (EDGES.tolist(), TypeError, r"edge_index must be a \[2, E\] int64 tensor, a PyG EdgeIndex or a torch sparse adjacency, got list"),
])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bad_edge_index(name, edge_index, error, match):
    with pytest.raises(error, match=match):
        LAYERS[name][0]()(_x(), edge_index)


@pytest.mark.parametrize("name", WITH_CHANNELS)
def test_channel_mismatch(name):
    with pytest.raises(ValueError, match=rf"{name}: x.* must have shape \[N, {C_IN}\] \(in_channels = {C_IN}\), "
                                         rf"got \[{N}, 2\]"):
        LAYERS[name][0]()(_x(channels=2), EDGES)


@pytest.mark.parametrize("x, error, match", [
    (torch.randn(N), ValueError, r"must have shape \[N, C\], got \[4\]"),
    (torch.ones(N, C_IN, dtype=torch.long), TypeError, "must be floating point, got torch.int64"),
    ([[0.0] * C_IN] * N, TypeError, "must be a tensor"),
])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bad_features(name, x, error, match):
    if name == "GCNConv" and isinstance(x, list):
        match = "received a tuple of node features"  # a list reads as GCN's refused bipartite input
        error = ValueError
    with pytest.raises(error, match=f"{name}.*{match}"):
        LAYERS[name][0]()(x, EDGES)


@pytest.mark.parametrize("edge_weight, error, match", [
    (torch.ones(2), ValueError, r"edge_weight must have shape \[E\] = \[3\], got \[2\]"),
    (torch.ones(3, 1), ValueError, r"edge_weight must have shape \[E\] = \[3\], got \[3, 1\]"),
    ([1.0, 1.0, 1.0], TypeError, r"edge_weight must be a tensor \[E\], got list"),
])
@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_bad_edge_weight(name, edge_weight, error, match):
    with pytest.raises(error, match=f"{name}: {match}"):
        LAYERS[name][0]()(_x(), EDGES, edge_weight)


def test_edge_weight_with_a_sparse_adjacency():
    adjacency = torch.sparse_coo_tensor(EDGES.flip(0), torch.ones(3), (N, N))
    with pytest.raises(ValueError, match="GCNConv: edge_weight was given with a sparse adjacency; the adjacency's "
                                         "values are the edge weights"):
        graph.GCNConv(C_IN, C_OUT)(_x(), adjacency, torch.ones(3))


# the 'meta' device stands in for a second device on a CPU-only machine
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_features_on_another_device_than_edge_index(name):
    with pytest.raises(ValueError, match=f"{name}: x is on meta but edge_index on cpu; put them on one device"):
        LAYERS[name][0]()(_x(device="meta"), EDGES)


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_edge_weight_on_another_device(name):
    with pytest.raises(ValueError, match=f"{name}: edge_weight is on meta but edge_index on cpu"):
        LAYERS[name][0]()(_x(), EDGES, torch.ones(3, device="meta"))


@pytest.mark.parametrize("name", WITH_CHANNELS)
def test_weights_on_another_device_or_dtype(name):
    with pytest.raises(ValueError, match=r"weight \(torch.float32, meta\) must match feats \(torch.float32, cpu\)"):
        LAYERS[name][0]().to("meta")(_x(), EDGES)
    with pytest.raises(ValueError, match=r"weight \(torch.float32, cpu\) must match feats \(torch.float64, cpu\)"):
        LAYERS[name][0]()(_x(dtype=torch.float64), EDGES)


@pytest.mark.parametrize("cls", [graph.GCNConv, graph.GraphConv, graph.SAGEConv])
@pytest.mark.parametrize("in_channels, out_channels, argument", [
    (0, C_OUT, "in_channels"), (-2, C_OUT, "in_channels"), (3.0, C_OUT, "in_channels"), (True, C_OUT, "in_channels"),
    ("3", C_OUT, "in_channels"), (C_IN, 0, "out_channels"), (C_IN, 2.5, "out_channels"),
])
def test_layer_channel_arguments(cls, in_channels, out_channels, argument):
    value = in_channels if argument == "in_channels" else out_channels
    with pytest.raises(ValueError, match=rf"{cls.__name__}: {argument} must be a positive int.*got {value!r}"):
        cls(in_channels, out_channels)


def test_gcn_is_not_bipartite():
    with pytest.raises(ValueError, match=r"GCNConv: in_channels must be a positive int or -1 \(inferred from the first input\), got \(3, 3\)"):
        graph.GCNConv((C_IN, C_IN), C_OUT)
    with pytest.raises(ValueError, match="GCNConv received a tuple of node features"):
        graph.GCNConv(C_IN, C_OUT)((_x(), _x()), EDGES)


@pytest.mark.parametrize("cls", [graph.GINConv, graph.EdgeConv])
@pytest.mark.parametrize("module", [5, None, torch.randn(3, 3)])
def test_message_network_must_be_a_module(cls, module):
    with pytest.raises(TypeError, match=rf"{cls.__name__}: nn must be a torch.nn.Module .*got {type(module).__name__}"):
        cls(module)


@with_package("torch_geometric")  # names beyond the engine's reductions go to PyG's resolver
def test_aggregation_names():
    for cls, args in ((graph.SAGEConv, (C_IN, C_OUT)), (graph.GraphConv, (C_IN, C_OUT)),
                      (graph.EdgeConv, (torch.nn.Linear(2, 2),)), (graph.GINConv, (torch.nn.Linear(2, 2),))):
        with pytest.raises(ValueError, match=f"{cls.__name__}: cannot resolve aggr='nonsense': Could not resolve"):
            cls(*args, aggr="nonsense")
        with pytest.raises(TypeError, match=f"{cls.__name__}: an aggr module must be a .*Aggregation, got Linear"):
            cls(*args, aggr=torch.nn.Linear(2, 2))
        with pytest.raises(TypeError, match=f"{cls.__name__}: aggr must be a string .* got int"):
            cls(*args, aggr=3)
    with pytest.raises(ValueError, match="GCNConv: flow must be one of .* got 'up'"):
        graph.GCNConv(C_IN, C_OUT, flow="up")(_x(), EDGES)


def test_bipartite_targets_are_checked():
    x = (_x(), _x(rows=2, channels=2))
    with pytest.raises(ValueError, match=r"SAGEConv: x \(target features\) must have shape \[N, 2\]"):
        graph.SAGEConv((C_IN, 2), C_OUT)((_x(), _x(rows=2)), EDGES)
    with pytest.raises(ValueError, match="edge_index has target index 3 but there are only 2 nodes"):
        graph.SAGEConv((C_IN, 2), C_OUT)(x, EDGES)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("name", ["GCNConv", "GraphConv", "SAGEConv", "GINConv"])
def test_half_precision_on_the_cpu_computes(name, dtype, tolerance):
    # refused before 3b14faf; the engine now rounds half inputs, sums in float32 and rounds the output back
    layer = LAYERS[name][0]()
    x = _x()
    expected = layer(x, EDGES)
    out = copy.deepcopy(layer).to(dtype)(x.to(dtype), EDGES)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, rtol=tolerance, atol=tolerance)


# --------------------------------------------------------------------------------- functional entry points

@pytest.mark.parametrize("args, error, match", [
    ((EDGES.float(),), TypeError, "gcn_norm: edge_index must be int64 .or int32., got torch.float32"),
    ((torch.zeros(3, 3, dtype=torch.long),), ValueError, r"gcn_norm: edge_index must have shape \[2, E\]"),
    ((EDGES, torch.ones(2)), ValueError, r"gcn_norm: edge_weight must have shape \[E\] = \[3\], got \[2\]"),
    ((EDGES, None, 3), ValueError, "edge_index has target index 3 but there are only 3 nodes"),
])
def test_gcn_norm(args, error, match):
    with pytest.raises(error, match=match):
        gcn_norm(*args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=0), "knn_graph: k must be a positive int, got 0"),
    (dict(k=2.0), "knn_graph: k must be a positive int, got 2.0"),
    (dict(pos=torch.ones(5, 3, dtype=torch.long)), r"knn_graph: pos must be a floating point \[N, D\] tensor"),
    (dict(pos=torch.randn(5)), r"knn_graph: pos must be a floating point \[N, D\] tensor"),
    (dict(batch=torch.zeros(4, dtype=torch.long)), r"knn_graph: batch must be a \[N\] = \[5\] tensor on cpu"),
    (dict(batch=torch.zeros(5, dtype=torch.long, device="meta")), r"batch must be a \[N\] = \[5\] tensor on cpu, "
                                                                  r"got \[5\] on meta"),
])
def test_knn_graph(kwargs, match):
    args = dict(pos=torch.randn(5, 3), k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        graph.knn_graph(**args)

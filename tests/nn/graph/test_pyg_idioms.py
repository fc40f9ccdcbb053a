"""PyG's idioms on irregconv's graph layers, each compared with the PyG layer of the same name holding the same
weights: every input format PyG accepts (tensor, ``EdgeIndex``, sparse COO/CSR/CSC adjacency, bipartite pairs,
``size``), GCNConv's cache and its reset, lazy ``in_channels=-1``, reprs, PyG aggregation modules and lists of
aggregations, and ``to_hetero``. Written from what PyG's own test files check (test/nn/conv/test_*_conv.py)."""
import subprocess
import sys
import textwrap

import pytest
import torch

import irregconv.nn.graph as graph
from irregconv.testing import with_package

pytestmark = with_package("torch_geometric")

RTOL, ATOL = 1e-7, 1e-9
N_SRC, N_DST, C_SRC, C_DST, C_OUT = 6, 4, 5, 3, 7


def _pyg(name):
    import torch_geometric.nn as pyg_nn
    return getattr(pyg_nn, name)


def _mlp(c_in, c_out=C_OUT):
    return torch.nn.Sequential(torch.nn.Linear(c_in, 8), torch.nn.ReLU(), torch.nn.Linear(8, c_out))


def _pair(name, *args, **kwargs):
    """(ours, PyG's) in float64, ours holding PyG's weights."""
    ref = _pyg(name)(*args, **kwargs).double()
    ours = getattr(graph, name)(*args, **kwargs).double()
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _edges(num_src, num_dst, num_edges=14, seed=0, sort=False):
    """Random edges without duplicates; ``sort`` orders them by (target, source), the rulebook's order."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(num_src * num_dst, generator=gen)[:num_edges]
    if sort:
        flat = flat[torch.argsort((flat % num_dst) * num_src + flat // num_dst)]
    return torch.stack([flat // num_dst, flat % num_dst])


def _features(rows, channels, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, channels, generator=gen, dtype=torch.float64, requires_grad=True)


def _assert_same_outputs_and_gradients(ours, ref, leaves, *args, **kwargs):
    """Ours on ``args``/``kwargs`` against PyG's on the plain ``edge_index`` call (``ref`` = (module, args) or
    (module, args, kwargs)), outputs and the gradients of ``leaves`` and of every parameter."""
    out = ours(*args, **kwargs)
    expected = ref[0](*ref[1], **(ref[2] if len(ref) > 2 else {}))
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)
    grad_out = torch.randn_like(out)
    ours_params, ref_params = list(ours.parameters()), list(ref[0].parameters())
    got = torch.autograd.grad(out, leaves + ours_params, grad_out, allow_unused=True)
    want = torch.autograd.grad(expected, leaves + ref_params, grad_out, allow_unused=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------ input formats

def _adjacency(edge_index, layout, size, values=None):
    """PyG's ``adj_t`` idiom: the transposed ``[N_src, N_dst]`` adjacency, i.e. ``A[target, source]``."""
    from torch_geometric.utils import to_torch_coo_tensor, to_torch_csc_tensor, to_torch_csr_tensor
    build = {"coo": to_torch_coo_tensor, "csr": to_torch_csr_tensor, "csc": to_torch_csc_tensor}[layout]
    adj_t = build(edge_index, values, size=size).t()
    return adj_t.coalesce() if layout == "coo" else adj_t


def _edge_format(edge_index, fmt, size, values=None):
    """``(edge_index argument, edge_weight argument, extra kwargs)`` of one input format."""
    from torch_geometric import EdgeIndex
    if fmt == "tensor":
        return edge_index, values, {}
    if fmt == "size":
        return edge_index, values, {"size": size}
    if fmt == "edge_index_sorted":
        order = torch.argsort(edge_index[1] * size[0] + edge_index[0])
        return (EdgeIndex(edge_index[:, order], sort_order="col", sparse_size=size),
                None if values is None else values[order], {})
    if fmt == "edge_index_unsorted":
        return EdgeIndex(edge_index, sparse_size=size), values, {}
    return _adjacency(edge_index, fmt.split("_")[1], size, values), None, {}


FORMATS = ["tensor", "size", "edge_index_sorted", "edge_index_unsorted", "adj_coo", "adj_csr", "adj_csc"]

LAYERS = {  # name -> (constructor arguments for (C_src, C_dst) inputs, takes edge_weight, bipartite, takes size)
    "GCNConv": (lambda: (C_SRC, C_OUT), True, False, False),
    "GraphConv": (lambda: ((C_SRC, C_DST), C_OUT), True, True, True),
    "SAGEConv": (lambda: ((C_SRC, C_DST), C_OUT), False, True, True),
    "GINConv": (lambda: (_mlp(C_SRC),), False, True, True),
    "EdgeConv": (lambda: (_mlp(2 * C_SRC),), False, True, False),
}


def _format_cases():
    """Every (layer, edge format, kind of targets, weighted) combination PyG's layer accepts."""
    for name, (_, takes_weight, bipartite, takes_size) in LAYERS.items():
        kinds = ["same"] + (["pair"] if bipartite else []) + (["pair_without_target_features"] if takes_size else [])
        for targets in kinds:
            for weighted in [False, True] if takes_weight else [False]:
                for fmt in FORMATS if takes_size else [f for f in FORMATS if f != "size"]:
                    yield pytest.param(name, fmt, targets, weighted, id=f"{name}-{fmt}-{targets}-weighted={weighted}")


@pytest.mark.parametrize("name, fmt, targets, weighted", list(_format_cases()))
def test_every_input_format_matches_pyg(name, fmt, targets, weighted):
    make_args, takes_weight = LAYERS[name][:2]
    same_width = name in ("GINConv", "EdgeConv")  # x_i and x_j meet in one network: one width
    args = make_args() if same_width or targets != "same" else (C_SRC, C_OUT)
    if targets == "same":
        x = _features(N_SRC, C_SRC, 1)
        size, leaves = (N_SRC, N_SRC), [x]
    else:
        x_dst = _features(N_DST, C_SRC if same_width else C_DST, 2)
        x_src = _features(N_SRC, C_SRC, 1)
        size = (N_SRC, N_DST)
        x = (x_src, x_dst) if targets == "pair" else (x_src, None)
        leaves = [x_src, x_dst] if targets == "pair" else [x_src]
    edge_index = _edges(*size)
    values = torch.rand(edge_index.size(1), dtype=torch.float64) + 0.5 if weighted else None
    ours, ref = _pair(name, *args)
    edges, edge_weight, kwargs = _edge_format(edge_index, fmt, size, values)
    ref_kwargs = {"size": size} if targets == "pair_without_target_features" else {}
    ref_call = (x, edge_index) + ((values,) if takes_weight else ())
    ours_call = (x, edges) + ((edge_weight,) if takes_weight else ())
    if targets == "pair_without_target_features" and fmt == "tensor":
        kwargs = {"size": size}  # as PyG, which needs it to know the targets
    _assert_same_outputs_and_gradients(ours, (ref, ref_call, ref_kwargs), leaves, *ours_call, **kwargs)


@pytest.mark.parametrize("name", ["GCNConv", "GraphConv", "SAGEConv", "GINConv", "EdgeConv"])
def test_edge_index_subclass_in_a_child_process(name):
    """PyG's EdgeIndex (and every tensor derived from it) reports data_ptr() == 0: a native kernel reading
    through it crashed the interpreter, so the check runs in a child process where a crash fails the test."""
    code = textwrap.dedent(f"""
        import torch
        from torch_geometric import EdgeIndex
        import irregconv.nn.graph as graph
        torch.manual_seed(0)
        x, edge_index = torch.randn(40, 8), torch.randint(0, 40, (2, 200))
        layer = {{"GCNConv": lambda: graph.GCNConv(8, 16), "GraphConv": lambda: graph.GraphConv(8, 16),
                  "SAGEConv": lambda: graph.SAGEConv(8, 16), "GINConv": lambda: graph.GINConv(torch.nn.Linear(8, 16)),
                  "EdgeConv": lambda: graph.EdgeConv(torch.nn.Linear(16, 16))}}["{name}"]()
        expected = layer(x, edge_index)
        for wrapped in (EdgeIndex(edge_index, sparse_size=(40, 40)), EdgeIndex(edge_index).sort_by("col")[0]):
            torch.testing.assert_close(layer(x, wrapped), expected, rtol=1e-5, atol=1e-6)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-2000:]}"


@pytest.mark.parametrize("name", ["GraphConv", "SAGEConv", "GINConv"])
def test_size_disagreeing_with_features_is_refused(name):
    conv = getattr(graph, name)(*((_mlp(C_SRC),) if name == "GINConv" else (C_SRC, C_OUT)))
    x = torch.randn(N_SRC, C_SRC)
    with pytest.raises(ValueError, match=rf"{name}: size = \(6, 3\) says 3 target nodes but the target features "
                                         rf"have 6 rows"):
        conv(x, _edges(N_SRC, 3), size=(N_SRC, 3))
    with pytest.raises(ValueError, match=rf"{name}: size must be None or a pair \(N_src, N_dst\).*got 6"):
        conv(x, _edges(N_SRC, N_SRC), size=6)
    with pytest.raises(ValueError, match=rf"{name}: size = \(6, 5\) disagrees with the sparse adjacency"):
        conv(x, _adjacency(_edges(N_SRC, N_SRC), "csr", (N_SRC, N_SRC)), size=(N_SRC, 5))


def test_torch_sparse_tensor_gets_a_hint():
    class SparseTensor:  # stands for torch_sparse's class, which is not installed here
        pass

    with pytest.raises(TypeError, match=r"SparseTensor is not supported: pass adj_t.to_torch_sparse_csr_tensor\(\)"):
        graph.GCNConv(C_SRC, C_OUT)(torch.randn(3, C_SRC), SparseTensor())


# -------------------------------------------------------------------------------------------- GCN cache

@pytest.mark.parametrize("reset", ["_cached_edge_index", "_cached_adj_t", "reset_parameters"])
def test_gcn_cache_follows_pyg(reset):
    ours, ref = _pair("GCNConv", C_SRC, C_OUT)
    x = _features(N_SRC, C_SRC, 1).detach()
    first, second = _edges(N_SRC, N_SRC, seed=1), _edges(N_SRC, N_SRC, seed=2)
    for conv in (ours, ref):
        conv.cached = True  # set after construction, as PyG's test does
    assert ours._cached_edge_index is None
    torch.testing.assert_close(ours(x, first), ref(x, first), rtol=RTOL, atol=ATOL)
    assert ours._cached_edge_index is not None and ours._cached_adj_t is not None
    # cached: a new graph is ignored, in PyG as here
    torch.testing.assert_close(ours(x, second), ref(x, first), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ours(x, _adjacency(second, "csr", (N_SRC, N_SRC))), ref(x, first), rtol=RTOL,
                               atol=ATOL)
    if reset == "reset_parameters":
        state = ref.state_dict()
        ours.reset_parameters()
        ours.load_state_dict(state)
    else:
        setattr(ours, reset, None)
    ref._cached_edge_index = None
    assert ours._cached_edge_index is None
    torch.testing.assert_close(ours(x, second), ref(x, second), rtol=RTOL, atol=ATOL)


def test_gcn_without_normalize_never_serves_a_cached_graph():
    ours, ref = _pair("GCNConv", C_SRC, C_OUT, cached=True, normalize=False)
    x = _features(N_SRC, C_SRC, 1).detach()
    for seed in (1, 2):
        edge_index = _edges(N_SRC, N_SRC, seed=seed)
        torch.testing.assert_close(ours(x, edge_index), ref(x, edge_index), rtol=RTOL, atol=ATOL)
    assert ours._cached_edge_index is None


def test_gcn_cache_refuses_a_foreign_value():
    with pytest.raises(ValueError, match="GCNConv: the graph cache can only be reset \\(assigned None\\), got tuple"):
        graph.GCNConv(C_SRC, C_OUT)._cached_edge_index = (None, None)


# ------------------------------------------------------------------------------------------------- lazy

LAZY = {  # name -> (lazy in_channels, inputs builder)
    "GCNConv": (-1, lambda: _features(N_SRC, C_SRC, 1)),
    "GraphConv": ((-1, -1), lambda: (_features(N_SRC, C_SRC, 1), _features(N_DST, C_DST, 2))),
    "SAGEConv": ((-1, -1), lambda: (_features(N_SRC, C_SRC, 1), _features(N_DST, C_DST, 2))),
}


@pytest.mark.parametrize("name", LAZY)
@pytest.mark.parametrize("single_value", [False, True])
def test_lazy_in_channels_like_pyg(name, single_value):
    in_channels, inputs = LAZY[name]
    if single_value:
        in_channels = -1
    x = inputs()
    if single_value and name != "GCNConv":
        x = x[0]
    edge_index = _edges(N_SRC, N_SRC if isinstance(x, torch.Tensor) else N_DST)
    ref = _pyg(name)(in_channels, C_OUT).double()
    ours = getattr(graph, name)(in_channels, C_OUT).double()
    assert repr(ours) == str(ref)
    expected = ref(x, edge_index)
    assert ours(x, edge_index).shape == expected.shape  # materialised by the first call
    ours.load_state_dict(ref.state_dict())
    leaves = list(x) if isinstance(x, tuple) else [x]
    _assert_same_outputs_and_gradients(ours, (ref, (x, edge_index)), leaves, x, edge_index)
    assert repr(ours) == str(ref)  # in_channels stays -1, as in PyG
    fresh = getattr(graph, name)(in_channels, C_OUT).double()
    fresh.load_state_dict(ref.state_dict())  # a materialised state dict loads into a lazy layer
    torch.testing.assert_close(fresh(x, edge_index), expected, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="must have shape \\[N, "):  # the inferred width is checked from then on
        ours(torch.randn(N_SRC, C_SRC + 1, dtype=torch.float64), _edges(N_SRC, N_SRC))


def test_lazy_gcn_is_glorot_initialised():
    conv = graph.GCNConv(-1, 400)
    conv(torch.randn(3, 300), _edges(3, 3, num_edges=4))
    bound = (6 / (300 + 400)) ** 0.5
    assert conv.lin.weight.abs().max() <= bound and conv.lin.weight.abs().max() > 0.9 * bound


def test_lazy_sage_with_project_is_refused():
    with pytest.raises(ValueError, match="SAGEConv does not support lazy initialization with project=True"):
        graph.SAGEConv(-1, C_OUT, project=True)


# ------------------------------------------------------------------------------------------------ reprs

REPRS = [
    ("GCNConv", lambda: (16, 32), {}), ("GCNConv", lambda: (-1, 32), dict(improved=True, cached=True)),
    ("GraphConv", lambda: (8, 32), dict(aggr="mean")), ("GraphConv", lambda: ((8, 16), 32), {}),
    ("SAGEConv", lambda: (8, 32), {}), ("SAGEConv", lambda: (8, 32), dict(aggr="sum", project=True)),
    ("SAGEConv", lambda: ((8, 16), 32), dict(aggr="max")), ("SAGEConv", lambda: (-1, 32), {}),
    ("SAGEConv", lambda: (8, 32), dict(aggr="lstm")), ("SAGEConv", lambda: (8, 32), dict(aggr=["mean", "max"])),
    ("GINConv", lambda: (_mlp(16),), dict(train_eps=True)), ("EdgeConv", lambda: (_mlp(32),), {}),
    ("EdgeConv", lambda: (_mlp(32),), dict(aggr="mean")),
]


@pytest.mark.parametrize("name, args, kwargs", REPRS)
def test_repr_is_pyg(name, args, kwargs):
    args = args()
    assert repr(getattr(graph, name)(*args, **kwargs)) == str(_pyg(name)(*args, **kwargs))


def test_layers_are_pyg_message_passing_modules():
    from torch_geometric.nn import MessagePassing
    for make in (lambda: graph.GCNConv(2, 3), lambda: graph.SAGEConv(2, 3), lambda: graph.GINConv(_mlp(2))):
        assert isinstance(make(), MessagePassing)


# ------------------------------------------------------------------------------------------ aggregations

def _aggregations():
    from torch_geometric.nn import LSTMAggregation, MLPAggregation, SoftmaxAggregation
    return {
        "lstm": lambda c: "lstm",
        "lstm_module": lambda c: LSTMAggregation(c, c),
        "mlp_module": lambda c: MLPAggregation(c, c, max_num_elements=4, num_layers=1),
        "softmax_learn": lambda c: SoftmaxAggregation(learn=True),
        "std": lambda c: "std",
        "mean_max": lambda c: ["mean", "max"],
    }


AGGREGATIONS = ["lstm", "lstm_module", "mlp_module", "softmax_learn", "std", "mean_max"]
MULTI_KWARGS = [
    dict(mode="cat"),
    dict(mode="proj", mode_kwargs=dict(in_channels=C_SRC, out_channels=C_SRC)),
    dict(mode="attn", mode_kwargs=dict(in_channels=C_SRC, out_channels=C_SRC, num_heads=1)),
    dict(mode="sum"),
]


def _sorted_inputs(bipartite):
    """Edges in the rulebook's order, (target, source), so that order-aware aggregations see the same
    sequence in PyG (which keeps the given order) and here."""
    num_dst = N_DST if bipartite else N_SRC
    x_src = _features(N_SRC, C_SRC, 1)
    x = (x_src, _features(N_DST, C_DST, 2)) if bipartite else x_src
    return x, _edges(N_SRC, num_dst, num_edges=16, sort=True), [x_src, x[1]] if bipartite else [x_src]


@pytest.mark.parametrize("aggr", AGGREGATIONS)
@pytest.mark.parametrize("bipartite", [False, True])
def test_sage_aggregations_match_pyg(aggr, bipartite):
    x, edge_index, leaves = _sorted_inputs(bipartite)
    channels = (C_SRC, C_DST) if bipartite else C_SRC
    torch.manual_seed(0)
    ours, ref = _pair("SAGEConv", channels, C_OUT, aggr=_aggregations()[aggr](C_SRC))
    assert ours.aggr == ref.aggr
    _assert_same_outputs_and_gradients(ours, (ref, (x, edge_index)), leaves, x, edge_index)


@pytest.mark.parametrize("aggr_kwargs", MULTI_KWARGS, ids=lambda k: k["mode"])
def test_sage_multi_aggregation_modes_match_pyg(aggr_kwargs):
    x, edge_index, leaves = _sorted_inputs(bipartite=False)
    aggr_kwargs = dict(aggr_kwargs, aggrs_kwargs=[{}, {}, {}, dict(learn=True, t=1)])
    torch.manual_seed(0)
    ours, ref = _pair("SAGEConv", C_SRC, C_OUT, aggr=["mean", "max", "sum", "softmax"], aggr_kwargs=aggr_kwargs)
    assert ours.lin_l.weight.shape == ref.lin_l.weight.shape
    _assert_same_outputs_and_gradients(ours, (ref, (x, edge_index)), leaves, x, edge_index)


def test_aggregation_module_gets_neighbours_in_csr_order():
    """An unsorted edge list reaches an order-aware aggregation sorted by (target, source): the same output
    as PyG's on the sorted list (PyG itself refuses unsorted input for LSTM aggregation)."""
    x, edge_index, _ = _sorted_inputs(bipartite=False)
    shuffled = edge_index[:, torch.randperm(edge_index.size(1), generator=torch.Generator().manual_seed(3))]
    torch.manual_seed(0)
    ours, ref = _pair("SAGEConv", C_SRC, C_OUT, aggr="lstm")
    torch.testing.assert_close(ours(x, shuffled), ref(x, edge_index), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="'index' tensor is not sorted"):
        ref(x, shuffled)


@pytest.mark.parametrize("name", ["GraphConv", "GINConv", "EdgeConv"])
@pytest.mark.parametrize("aggr", ["mean", "min", "std", "softmax_learn", "mean_max_sum"])
def test_other_layers_take_pyg_aggregations(name, aggr):
    from torch_geometric.nn import SoftmaxAggregation
    x, edge_index, leaves = _sorted_inputs(bipartite=False)
    aggr = {"softmax_learn": SoftmaxAggregation(learn=True), "mean_max_sum": ["mean", "max", "sum"]}.get(aggr, aggr)
    kwargs = dict(aggr=aggr, aggr_kwargs=dict(mode="sum")) if isinstance(aggr, list) else dict(aggr=aggr)
    args = {"GraphConv": (C_SRC, C_OUT), "GINConv": (_mlp(C_SRC),), "EdgeConv": (_mlp(2 * C_SRC),)}[name]
    ours, ref = _pair(name, *args, **kwargs)
    _assert_same_outputs_and_gradients(ours, (ref, (x, edge_index)), leaves, x, edge_index)


# --------------------------------------------------------------------------------------------- to_hetero

def _hetero_graph():
    """Two node types, three relations: one within 'paper', two across types (bipartite)."""
    x = {"paper": _features(7, 4, 1), "author": _features(5, 4, 2)}
    edges = {("paper", "cites", "paper"): _edges(7, 7, 12, seed=3),
             ("author", "writes", "paper"): _edges(5, 7, 10, seed=4),
             ("paper", "rev_writes", "author"): _edges(7, 5, 10, seed=5)}
    return x, edges, (list(x), list(edges))


def _hetero_model(module, layer_name):
    """Two-layer homogeneous model in PyG's style, from ``module`` (irregconv.nn.graph or torch_geometric.nn)."""
    layer = getattr(module, layer_name)
    make = {"GraphConv": lambda c_in: layer((-1, -1), 6), "SAGEConv": lambda c_in: layer((-1, -1), 6),
            "GCNConv": lambda c_in: layer(-1, 6),
            "GINConv": lambda c_in: layer(torch.nn.Linear(c_in, 6), train_eps=True)}[layer_name]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = make(4)
            self.conv2 = make(6)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    return Net()


@pytest.mark.parametrize("layer_name", ["GCNConv", "GraphConv", "SAGEConv", "GINConv"])
def test_to_hetero_matches_pyg(layer_name):
    import torch_geometric.nn as pyg_nn
    from torch_geometric.nn import to_hetero
    x, edges, metadata = _hetero_graph()
    if layer_name == "GCNConv":  # GCN has one node set (to_hetero refuses its self-loops across types)
        x = {"paper": x["paper"], "author": x["author"]}
        edges = {("paper", "cites", "paper"): edges[("paper", "cites", "paper")],
                 ("author", "knows", "author"): _edges(5, 5, 8, seed=6)}
        metadata = (list(x), list(edges))
    torch.manual_seed(0)
    ref = to_hetero(_hetero_model(pyg_nn, layer_name), metadata, aggr="sum").double()
    ours = to_hetero(_hetero_model(graph, layer_name), metadata, aggr="sum").double()
    expected = ref(x, edges)
    ours(x, edges)  # materialises the lazy layers
    ours.load_state_dict(ref.state_dict())
    out = ours(x, edges)
    assert set(out) == set(expected)
    leaves = list(x.values()) + list(ours.parameters())
    ref_leaves = list(x.values()) + list(ref.parameters())
    grad_out = {key: torch.randn_like(value) for key, value in out.items()}
    got = torch.autograd.grad([out[k] for k in out], leaves, [grad_out[k] for k in out], allow_unused=True)
    want = torch.autograd.grad([expected[k] for k in out], ref_leaves, [grad_out[k] for k in out], allow_unused=True)
    for key in out:
        torch.testing.assert_close(out[key], expected[key], rtol=RTOL, atol=ATOL)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------ without PyG

def test_layers_without_pyg_in_a_child_process():
    """With PyG absent the layers are plain modules with the same reprs; PyG's aggregations say what they need."""
    code = textwrap.dedent("""
        import sys
        sys.modules["torch_geometric"] = None  # import torch_geometric now raises ImportError
        import pytest, torch
        import irregconv.nn.graph as graph
        from irregconv.nn.graph._common import GraphLayer
        assert GraphLayer.__bases__ == (torch.nn.Module,)
        x, edge_index = torch.randn(5, 3), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
        assert graph.SAGEConv(-1, 4)(x, edge_index).shape == (5, 4)
        assert repr(graph.SAGEConv(3, 4, aggr="max")) == "SAGEConv(3, 4, aggr=max)"
        assert repr(graph.GraphConv((3, 2), 4)) == "GraphConv((3, 2), 4)"
        assert repr(graph.GINConv(torch.nn.Identity())) == "GINConv(nn=Identity())"
        with pytest.raises(ImportError, match="SAGEConv: aggr='lstm' needs the package torch_geometric"):
            graph.SAGEConv(3, 4, aggr="lstm")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-2000:]}"


@pytest.mark.parametrize("name", ["GCNConv", "SAGEConv", "GINConv"])
def test_layers_copy_and_pickle(name):
    """PyG's MessagePassing regenerates code when unpickled; the layers unpickle as plain modules."""
    import copy
    import io
    conv = getattr(graph, name)(*((_mlp(C_SRC),) if name == "GINConv" else (C_SRC, C_OUT))).double()
    x, edge_index = _features(N_SRC, C_SRC, 1).detach(), _edges(N_SRC, N_SRC)
    expected = conv(x, edge_index)
    buffer = io.BytesIO()
    torch.save(conv, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(conv), torch.load(buffer, weights_only=False)):
        torch.testing.assert_close(clone(x, edge_index), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("wrap", [False, True], ids=["tensor", "EdgeIndex"])
def test_gcn_on_sparse_features_keeps_the_prepared_native_path(monkeypatch, wrap):
    """The input handling added for PyG (sizes, plain tensors, lazy checks) leaves GCN's fast path in place:
    float32 CSR features over a plain or EdgeIndex graph still take the prepared native graph path."""
    import sys

    from torch_geometric import EdgeIndex

    from irregconv.data import make_cora_like
    from irregconv.engine.backends import native
    if not native.AVAILABLE:
        pytest.skip("the native kernels are not built")
    engine_module = sys.modules["irregconv.engine.gather_scatter"]
    decisions, decide = [], engine_module._native_graph
    monkeypatch.setattr(engine_module, "_native_graph", lambda *args: decisions.append(decide(*args)) or decisions[-1])
    cora = make_cora_like(num_nodes=300, num_features=50, num_edges=900, topic_words=10, num_val=20, num_test=40,
                          seed=1)
    edge_index = EdgeIndex(cora.edge_index) if wrap else cora.edge_index
    graph.GCNConv(50, 16)(cora.x.to_sparse_csr(), edge_index).sum().backward()
    assert decisions == [True]


def test_pyg_explainer_skips_the_layers_with_pyg_error():
    """PyG's explainers mask edges inside MessagePassing.propagate, which the layers do not run: they skip
    them, and an edge mask then ends in PyG's own clear error rather than in an AttributeError."""
    from torch_geometric.explain import Explainer, GNNExplainer
    explainer = Explainer(graph.GCNConv(C_SRC, 3), GNNExplainer(epochs=2), explanation_type="model", edge_mask_type="object",
                          model_config=dict(mode="multiclass_classification", task_level="node", return_type="raw"))
    with pytest.raises(ValueError, match="Could not compute gradients for edges"):
        explainer(torch.randn(N_SRC, C_SRC), _edges(N_SRC, N_SRC), index=0)

import importlib
import itertools

import pytest
import torch

from irregconv.functional.graph import sparse_dropout
from irregconv.nn.graph import GCNConv
from irregconv.testing import DEVICES, assert_close_with_grads, data_path, random_graph, with_data, with_package

# (improved, add_self_loops, normalize): every combination PyG accepts
FLAGS = [(i, a, n) for i, a, n in itertools.product([False, True], repeat=3) if not (a and not n)]


def dense_gcn(x, edge_index, edge_weight, conv):
    """Oracle: the dense normalised adjacency product, for graphs without self-loops."""
    n = x.size(0)
    w = torch.ones(edge_index.size(1), dtype=x.dtype) if edge_weight is None else edge_weight
    adj = torch.zeros(n, n, dtype=x.dtype).index_put((edge_index[1], edge_index[0]), w, accumulate=True)
    if conv.add_self_loops:
        adj = adj + (2.0 if conv.improved else 1.0) * torch.eye(n, dtype=x.dtype)
    if conv.normalize:
        deg = adj.sum(dim=1)
        inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
        adj = inv.unsqueeze(1) * adj * inv.unsqueeze(0)
    out = adj @ x @ conv.lin.weight.t()
    return out if conv.bias is None else out + conv.bias


def _graph(n=12, e=40, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_graph(n, e, generator=gen)
    return (torch.randn(n, 5, generator=gen, dtype=dtype), edge_index,
            torch.rand(edge_index.size(1), generator=gen, dtype=dtype) + 0.1)


def _grads(*tensors):
    return [t.grad.clone() for t in tensors]


@pytest.mark.parametrize("improved,add_self_loops,normalize", FLAGS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_dense_oracle_outputs_and_gradients(improved, add_self_loops, normalize, weighted, bias):
    x, edge_index, edge_weight = _graph()
    edge_weight = edge_weight if weighted else None
    conv = GCNConv(5, 3, improved=improved, add_self_loops=add_self_loops, normalize=normalize, bias=bias).double()
    if bias:
        torch.nn.init.normal_(conv.bias)
    inputs = [x.requires_grad_()] + ([edge_weight.requires_grad_()] if weighted else [])
    params = inputs + list(conv.parameters())
    grad_out = torch.randn(12, 3, dtype=torch.float64)
    out = conv(x, edge_index, edge_weight)
    out.backward(grad_out)
    got = _grads(*params)
    for p in params:
        p.grad = None
    expected = dense_gcn(x, edge_index, edge_weight, conv)
    expected.backward(grad_out)
    torch.testing.assert_close(out, expected, rtol=1e-7, atol=1e-9)
    for g, p in zip(got, params):
        torch.testing.assert_close(g, p.grad, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("features", ["dense", "csr"])
def test_gradcheck(features):
    x, edge_index, edge_weight = _graph(n=5, e=8)
    conv = GCNConv(5, 2, improved=True).double()
    torch.nn.init.normal_(conv.bias)
    weight, bias = conv.lin.weight.detach().clone().requires_grad_(), conv.bias.detach().clone().requires_grad_()
    feats = x.to_sparse_csr() if features == "csr" else x.requires_grad_()

    def f(weight, bias, edge_weight, *dense_x):
        return torch.func.functional_call(conv, {"lin.weight": weight, "bias": bias},
                                          (dense_x[0] if dense_x else feats, edge_index, edge_weight))

    inputs = (weight, bias, edge_weight.requires_grad_()) + ((feats,) if features == "dense" else ())
    assert torch.autograd.gradcheck(f, inputs)


def _input_formats(x, edge_index, edge_weight):
    n = x.size(0)
    coo = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight, (n, n))  # A[target, source]
    yield "edge_index", (x, edge_index, edge_weight)
    yield "coo", (x, coo)
    yield "coalesced coo", (x, coo.coalesce())
    yield "csr", (x, coo.to_sparse_csr())
    yield "csc", (x, coo.to_sparse_csc())
    yield "coo features", (x.to_sparse_coo(), edge_index, edge_weight)
    yield "csr features", (x.to_sparse_csr(), edge_index, edge_weight)
    yield "csc features", (x.to_sparse_csc(), edge_index, edge_weight)


@pytest.mark.parametrize("improved,add_self_loops,normalize", FLAGS)
def test_every_input_format_gives_the_same_output(improved, add_self_loops, normalize):
    x, edge_index, edge_weight = _graph(dtype=torch.float32)
    x = x * (torch.rand_like(x) < 0.3)  # sparse-looking features
    conv = GCNConv(5, 4, improved=improved, add_self_loops=add_self_loops, normalize=normalize)
    expected = conv(x, edge_index, edge_weight)
    for name, args in _input_formats(x, edge_index, edge_weight):
        torch.testing.assert_close(conv(*args), expected, rtol=1e-5, atol=1e-6, msg=name)


@with_package("torch_geometric")
def test_pyg_data_input():
    from torch_geometric.data import Data
    x, edge_index, edge_weight = _graph(dtype=torch.float32)
    conv = GCNConv(5, 4)
    torch.testing.assert_close(conv(Data(x=x, edge_index=edge_index, edge_weight=edge_weight)),
                               conv(x, edge_index, edge_weight))
    with pytest.raises(ValueError, match="GCNConv: got a PyG Data object and an edge_index"):
        conv(Data(x=x, edge_index=edge_index), edge_index)


@pytest.mark.parametrize("improved,add_self_loops,normalize", FLAGS)
@pytest.mark.parametrize("weighted", [False, True])
@with_package("torch_geometric")
def test_matches_pyg_on_random_graphs_with_self_loops(improved, add_self_loops, normalize, weighted):
    from torch_geometric.nn import GCNConv as PygGCNConv
    gen = torch.Generator().manual_seed(1)
    edge_index = random_graph(20, 80, generator=gen, allow_self_loops=True)
    assert (edge_index[0] == edge_index[1]).any()  # exercises add_remaining_self_loops
    x = torch.randn(20, 6, generator=gen, requires_grad=True)
    edge_weight = torch.rand(edge_index.size(1), generator=gen) if weighted else None
    ref = PygGCNConv(6, 3, improved=improved, add_self_loops=add_self_loops, normalize=normalize)
    torch.nn.init.normal_(ref.bias)
    conv = GCNConv(6, 3, improved=improved, add_self_loops=add_self_loops, normalize=normalize)
    conv.load_state_dict(ref.state_dict())
    # PyG 2.8 ignores `improved` without edge weights; explicit ones give the documented A + 2I
    ref_weight = edge_weight if weighted or not improved else torch.ones(edge_index.size(1))
    out, expected = conv(x, edge_index, edge_weight), ref(x, edge_index, ref_weight)
    assert_close_with_grads(out, expected, [x, conv.lin.weight, conv.bias], rtol=1e-5, atol=1e-6,
                            ref_inputs=[x, ref.lin.weight, ref.bias])


def _pyg_graph(name):
    from irregconv.data import Planetoid
    data = Planetoid(data_path("planetoid"), name)
    return data.x / data.x.sum(1, keepdim=True).clamp(min=1), data.edge_index


@with_package("torch_geometric")
@with_data("planetoid", "cora")
@with_data("planetoid", "citeseer")
@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_matches_pyg_on_planetoid(name):
    from torch_geometric.nn import GCNConv as PygGCNConv
    x, edge_index = _pyg_graph(name)
    x_csr = x.to_sparse_csr()
    edge_weight = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(0))
    for (improved, add_self_loops, normalize), weighted in itertools.product(FLAGS, [False, True]):
        ref = PygGCNConv(x.size(1), 16, improved=improved, add_self_loops=add_self_loops, normalize=normalize)
        conv = GCNConv(x.size(1), 16, improved=improved, add_self_loops=add_self_loops, normalize=normalize)
        conv.load_state_dict(ref.state_dict())
        w = edge_weight if weighted else None
        expected = ref(x, edge_index, w if weighted or not improved else torch.ones(edge_index.size(1)))
        case = f"improved={improved} add_self_loops={add_self_loops} normalize={normalize} weighted={weighted}"
        torch.testing.assert_close(conv(x, edge_index, w), expected, rtol=1e-5, atol=1e-5, msg=case)
        torch.testing.assert_close(conv(x_csr, edge_index, w), expected, rtol=1e-5, atol=1e-5, msg=case)


@with_package("torch_geometric")
@with_data("planetoid", "cora")
def test_two_layer_gradients_match_pyg_on_cora():
    from torch_geometric.nn import GCNConv as PygGCNConv
    x, edge_index = _pyg_graph("cora")
    refs = [PygGCNConv(1433, 16), PygGCNConv(16, 7)]
    convs = [GCNConv(1433, 16), GCNConv(16, 7)]
    for conv, ref in zip(convs, refs):
        torch.nn.init.normal_(ref.bias, std=0.1)
        conv.load_state_dict(ref.state_dict())
    y = torch.arange(2708) % 7
    for features in (x, x.to_sparse_csr()):
        out = convs[1](convs[0](features, edge_index).relu(), edge_index)
        loss = torch.nn.functional.cross_entropy(out[:140], y[:140])
        expected = refs[1](refs[0](x, edge_index).relu(), edge_index)
        ref_loss = torch.nn.functional.cross_entropy(expected[:140], y[:140])
        params = [p for c in convs for p in (c.lin.weight, c.bias)]
        ref_params = [p for c in refs for p in (c.lin.weight, c.bias)]
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        for g, w in zip(torch.autograd.grad(loss, params), torch.autograd.grad(ref_loss, ref_params)):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


@with_data("planetoid", "cora")
@pytest.mark.parametrize("features", ["dense", "csr"])
def test_bitwise_deterministic_on_cora(features):
    x, edge_index = _pyg_graph("cora")
    x = x.to_sparse_csr() if features == "csr" else x
    results = []
    for _ in range(3):
        torch.manual_seed(0)
        convs = [GCNConv(1433, 16), GCNConv(16, 7)]
        out = convs[1](convs[0](x, edge_index).relu(), edge_index)
        out.square().sum().backward()
        results.append([out.detach()] + [p.grad for c in convs for p in c.parameters()])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_pyg_state_dict_names_and_shapes():
    conv = GCNConv(16, 32)
    assert {k: tuple(v.shape) for k, v in conv.state_dict().items()} == {"lin.weight": (32, 16), "bias": (32,)}
    assert "bias" not in GCNConv(16, 32, bias=False).state_dict()


@with_package("torch_geometric")
def test_loads_pyg_state_dict_unchanged():
    from torch_geometric.nn import GCNConv as PygGCNConv
    ref = PygGCNConv(16, 32)
    conv = GCNConv(16, 32)
    assert conv.load_state_dict(ref.state_dict()) is not None
    assert torch.equal(conv.lin.weight, ref.lin.weight)


def _count_builds(monkeypatch):
    import irregconv.nn.graph.gcn_conv as module
    calls = []
    build = module.build_gcn_rulebook
    monkeypatch.setattr(module, "build_gcn_rulebook", lambda *a: calls.append(1) or build(*a))
    return calls


def test_cached_builds_the_rulebook_once_for_any_later_input(monkeypatch):
    calls = _count_builds(monkeypatch)
    x, edge_index, _ = _graph(dtype=torch.float32)
    conv = GCNConv(5, 4, cached=True)
    first = conv(x, edge_index)
    torch.testing.assert_close(conv(x, edge_index.clone()), first)
    assert len(calls) == 1
    conv.reset_parameters()  # forgets the cached=True entry
    conv(x, edge_index.clone())
    assert len(calls) == 2


def test_uncached_reuses_the_rulebook_while_inputs_are_unchanged(monkeypatch):
    calls = _count_builds(monkeypatch)
    x, edge_index, edge_weight = _graph(dtype=torch.float32)
    conv = GCNConv(5, 4)
    expected = conv(x, edge_index, edge_weight)
    torch.testing.assert_close(conv(x, edge_index, edge_weight), expected)
    assert len(calls) == 1
    conv(x, edge_index)  # no weights: another graph
    conv(x, edge_index.clone(), edge_weight)  # a new tensor
    assert len(calls) == 3
    conv(x, edge_index, edge_weight)
    edge_weight.mul_(2.0)  # modified in place: detected through the version counter
    out = conv(x, edge_index, edge_weight)
    assert len(calls) == 5
    reference = GCNConv(5, 4)
    reference.load_state_dict(conv.state_dict())
    torch.testing.assert_close(out, reference(x, edge_index, edge_weight))
    assert len(calls) == 5  # the other layer found the same graph in the cache all GCNConv layers share
    conv.improved = True  # options are part of the key
    conv(x, edge_index, edge_weight)
    assert len(calls) == 6
    weight = edge_weight.clone().requires_grad_()
    conv(x, edge_index, weight).sum().backward()
    conv(x, edge_index, weight).sum().backward()  # a fresh scale (and autograd graph) on every call
    assert len(calls) == 8 and weight.grad is not None


def test_layers_called_on_a_new_graph_normalise_it_once(monkeypatch):
    calls = _count_builds(monkeypatch)
    x, edge_index, _ = _graph(dtype=torch.float32)
    first, second = GCNConv(5, 5), GCNConv(5, 3)
    for _ in range(3):   # a new edge_index every step, as with sampled subgraphs
        edges = edge_index.clone()
        second(torch.relu(first(x, edges)), edges).sum().backward()
    assert len(calls) == 3
    second.add_self_loops = False   # different options: its own graph, the first layer's stays valid
    edges = edge_index.clone()
    second(torch.relu(first(x, edges)), edges)
    assert len(calls) == 5


def test_sparse_features_reuse_their_transposed_pattern_across_dropout():
    engine = importlib.import_module("irregconv.engine.gather_scatter")
    x, edge_index, _ = _graph(dtype=torch.float32)
    x = (x * (torch.rand_like(x) < 0.3)).to_sparse_csr()
    conv = GCNConv(5, 4)
    builds = engine._SPARSE_FEATURES.patterns.builds
    for _ in range(3):  # dropout keeps the pattern: the weight gradient's transposed pattern is built once
        conv(sparse_dropout(x, 0.5, True), edge_index).sum().backward()
    assert engine._SPARSE_FEATURES.patterns.builds == builds + 1
    conv(x.to_dense().to_sparse_csr(), edge_index).sum().backward()  # new index tensors: a new pattern
    assert engine._SPARSE_FEATURES.patterns.builds == builds + 2


def test_repr():  # PyG's reprs: channels only
    assert repr(GCNConv(16, 32)) == "GCNConv(16, 32)"
    assert repr(GCNConv(16, 32, improved=True, cached=True, bias=False)) == "GCNConv(16, 32)"
    assert repr(GCNConv(-1, 32, normalize=False)) == "GCNConv(-1, 32)"


def test_bad_inputs_raise_clear_errors():
    x, edge_index, edge_weight = _graph(dtype=torch.float32)
    conv = GCNConv(5, 4)
    with pytest.raises(ValueError, match=r"GCNConv: x must have shape \[N, 5\].*got \[12, 6\]"):
        conv(torch.randn(12, 6), edge_index)
    with pytest.raises(TypeError, match="GCNConv: x must be floating point"):
        conv(torch.ones(12, 5, dtype=torch.long), edge_index)
    with pytest.raises(ValueError, match="GCNConv: edge_weight must have shape"):
        conv(x, edge_index, edge_weight[:-1])
    with pytest.raises(ValueError, match="only 3 nodes"):
        conv(x[:3], edge_index)
    with pytest.raises(TypeError, match="GCNConv: edge_index must be"):
        conv(x, edge_index.tolist())
    adj = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight, (12, 12))
    with pytest.raises(ValueError, match="GCNConv: edge_weight was given with a sparse adjacency"):
        conv(x, adj, edge_weight)
    conv.flow = "sideways"
    with pytest.raises(ValueError, match="GCNConv: flow must be one of"):
        conv(x, edge_index)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("features", ["dense", "csr"])
def test_runs_on_device(device, features):
    x, edge_index, edge_weight = _graph(dtype=torch.float32)
    conv = GCNConv(5, 4)
    expected = conv(x, edge_index, edge_weight)
    conv = conv.to(device)
    x = x.to(device)
    out = conv(x.to_sparse_csr() if features == "csr" else x, edge_index.to(device), edge_weight.to(device))
    assert out.device.type == torch.device(device).type
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert conv.lin.weight.grad.device.type == torch.device(device).type


# --- the cases of PyG's own test/nn/conv/test_gcn_conv.py, run against GCNConv ---------------------------

def _pyg_like_inputs():
    x = torch.randn(4, 16)
    edge_index = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])
    value = torch.rand(edge_index.size(1))
    return x, edge_index, value


def _to_csc(edge_index, value=None, size=(4, 4)):
    """PyG's ``to_torch_csc_tensor``: ``A[source, target]`` in CSC, so ``.t()`` is ``A[target, source]`` CSR."""
    value = torch.ones(edge_index.size(1)) if value is None else value
    return torch.sparse_coo_tensor(edge_index, value, size).coalesce().to_sparse_csc()


def test_pyg_suite_gcn_conv():
    x, edge_index, value = _pyg_like_inputs()
    adj1, adj2 = _to_csc(edge_index), _to_csc(edge_index, value)
    conv = GCNConv(16, 32)
    assert str(conv) == "GCNConv(16, 32)"
    out1 = conv(x, edge_index)
    assert out1.size() == (4, 32)
    torch.testing.assert_close(conv(x, adj1.t()), out1, atol=1e-6, rtol=1e-5)
    out2 = conv(x, edge_index, value)
    assert out2.size() == (4, 32)
    torch.testing.assert_close(conv(x, adj2.t()), out2, atol=1e-6, rtol=1e-5)
    conv.cached = True
    conv(x, edge_index)
    assert conv._cached_edge_index is not None
    torch.testing.assert_close(conv(x, edge_index), out1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(conv(x, adj1.t()), out1, atol=1e-6, rtol=1e-5)


def test_pyg_suite_sparse_input_feature():
    x = torch.sparse_coo_tensor(indices=torch.tensor([[0, 0], [0, 1]]), values=torch.tensor([1.0, 1.0]),
                                size=torch.Size([4, 16]))
    edge_index = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])
    conv = GCNConv(16, 32)
    assert conv(x, edge_index).size() == (4, 32)
    torch.testing.assert_close(conv(x, edge_index), conv(x.to_dense(), edge_index))


def test_pyg_suite_static_graph():
    x = torch.randn(3, 4, 16)
    edge_index = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])
    conv = GCNConv(16, 32)
    out = conv(x, edge_index)
    assert out.size() == (3, 4, 32)
    for b in range(3):
        torch.testing.assert_close(out[b], conv(x[b], edge_index))


def test_pyg_suite_norm_flow():
    x = torch.randn(4, 16)
    edge_index = torch.tensor([[0, 0, 0], [1, 2, 3]])
    conv = GCNConv(16, 32, flow="source_to_target")
    out1 = conv(x, edge_index)
    conv.flow = "target_to_source"
    out2 = conv(x, edge_index.flip(0))
    torch.testing.assert_close(out1, out2, atol=1e-6, rtol=1e-5)


def test_pyg_suite_errors():
    with pytest.raises(ValueError, match="does not support adding self-loops"):
        GCNConv(16, 32, normalize=False, add_self_loops=True)
    x, edge_index, _ = _pyg_like_inputs()
    with pytest.raises(ValueError, match="received a tuple"):
        GCNConv(16, 32)((x, x), edge_index)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("layout", [torch.sparse_coo, torch.sparse_csr])
def test_pyg_suite_gcn_norm_gradient(requires_grad, layout):
    from irregconv.functional.graph import gcn_norm
    edge_index = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])
    edge_weight = torch.ones(edge_index.size(1), requires_grad=requires_grad)
    adj = torch.sparse_coo_tensor(edge_index, edge_weight, (4, 4))
    if layout == torch.sparse_csr:
        adj = adj.to_sparse_csr()
    assert gcn_norm(adj)[1].requires_grad == requires_grad
    assert gcn_norm(edge_index, edge_weight)[1].requires_grad == requires_grad

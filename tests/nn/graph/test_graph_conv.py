import pytest
import torch

from irregconv.nn.graph import GraphConv
from irregconv.testing import DEVICES, assert_close_with_grads, random_graph, with_package


def _inputs(n=15, e=50, c=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_graph(n, e, generator=gen)
    x = torch.randn(n, c, generator=gen, dtype=torch.float64, requires_grad=True)
    return x, edge_index, torch.rand(edge_index.size(1), generator=gen, dtype=torch.float64, requires_grad=True)


def _loop_oracle(conv, x, edge_index, edge_weight):
    """Per-target loop over incoming edges: an independent reference."""
    rows = []
    for i in range(x.size(0)):
        incoming = (edge_index[1] == i).nonzero().squeeze(1)
        msgs = x[edge_index[0, incoming]] * (1 if edge_weight is None else edge_weight[incoming].unsqueeze(1))
        if incoming.numel() == 0:
            rows.append(torch.zeros(x.size(1), dtype=x.dtype))
        else:
            rows.append({"add": msgs.sum(0), "mean": msgs.mean(0), "max": msgs.max(0).values}[conv.aggr])
    return torch.stack(rows) @ conv.lin_rel.weight.t() + conv.lin_rel.bias + x @ conv.lin_root.weight.t()


@pytest.mark.parametrize("aggr", ["add", "mean", "max"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_loop_oracle(aggr, weighted):
    x, edge_index, edge_weight = _inputs()
    conv = GraphConv(6, 4, aggr=aggr).double()
    w = edge_weight if weighted else None
    torch.testing.assert_close(conv(x, edge_index, w), _loop_oracle(conv, x, edge_index, w), rtol=1e-7, atol=1e-9)


@with_package("torch_geometric")
@pytest.mark.parametrize("aggr", ["add", "mean", "max"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("bipartite", [False, True])
def test_matches_pyg_outputs_and_gradients(aggr, weighted, bipartite):
    from torch_geometric.nn import GraphConv as PygGraphConv
    x, edge_index, edge_weight = _inputs()
    w = edge_weight if weighted else None
    if bipartite:
        x_dst = torch.randn(15, 3, dtype=torch.float64, requires_grad=True)
        inputs, channels = (x, x_dst), (6, 3)
    else:
        inputs, channels = x, 6
    ref = PygGraphConv(channels, 4, aggr=aggr).double()
    conv = GraphConv(channels, 4, aggr=aggr).double()
    conv.load_state_dict(ref.state_dict())
    out, expected = conv(inputs, edge_index, w), ref(inputs, edge_index, w)
    leaves = [x] + ([w] if weighted else []) + ([inputs[1]] if bipartite else [])
    assert_close_with_grads(out, expected, leaves + list(conv.parameters()), rtol=1e-7, atol=1e-9,
                            ref_inputs=leaves + list(ref.parameters()))


@pytest.mark.parametrize("aggr", ["add", "mean", "max"])
def test_gradcheck(aggr):
    x, edge_index, edge_weight = _inputs(n=5, e=8, c=3)
    conv = GraphConv(3, 2, aggr=aggr).double()
    assert torch.autograd.gradcheck(lambda x, w: conv(x, edge_index, w), (x, edge_weight))


@pytest.mark.parametrize("aggr", ["add", "mean", "max"])
def test_sparse_features_and_adjacency_match_dense(aggr):
    x, edge_index, edge_weight = _inputs()
    x = (x.detach() * (torch.rand(x.shape, dtype=x.dtype) < 0.3)).float()
    conv = GraphConv(6, 4, aggr=aggr)
    expected = conv(x, edge_index, edge_weight.detach().float())
    adj = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight.detach().float(), (15, 15))
    for args in ((x.to_sparse_csr(), edge_index, edge_weight.detach().float()), (x, adj.to_sparse_csr())):
        torch.testing.assert_close(conv(*args), expected, rtol=1e-5, atol=1e-6)


def test_repr_and_errors():
    assert repr(GraphConv(16, 32)) == "GraphConv(16, 32)"
    assert repr(GraphConv((16, 8), 32, aggr="mean", bias=False)) == "GraphConv((16, 8), 32)"  # PyG's repr
    with pytest.raises(ValueError, match="GraphConv: cannot resolve aggr='nonsense'"):
        GraphConv(16, 32, aggr="nonsense")
    with pytest.raises(ValueError, match=r"GraphConv: x \(source features\) must have shape \[N, 16\]"):
        GraphConv(16, 32)(torch.randn(4, 8), torch.tensor([[0], [1]]))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device(device):
    x, edge_index, edge_weight = _inputs()
    conv = GraphConv(6, 4).double()
    expected = conv(x, edge_index, edge_weight)
    out = conv.to(device)(x.to(device), edge_index.to(device), edge_weight.to(device))
    torch.testing.assert_close(out.cpu(), expected)


def test_rulebook_reused_for_the_same_edge_index():
    x, edge_index, edge_weight = _inputs()
    conv = GraphConv(6, 4).double()
    conv(x, edge_index, edge_weight)
    conv(x, edge_index, edge_weight * 2)  # weights are per-call pair scales, not part of the rulebook
    assert conv._graph_cache.builds == 1
    conv(x, edge_index.clone(), edge_weight)
    assert conv._graph_cache.builds == 2

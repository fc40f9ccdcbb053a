import pytest
import torch

from irregconv.nn.graph import SAGEConv
from irregconv.testing import DEVICES, random_graph, with_package


def _inputs(n=15, e=50, c=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_graph(n, e, generator=gen)
    return torch.randn(n, c, generator=gen, dtype=torch.float64, requires_grad=True), edge_index


def test_mean_matches_dense_oracle():
    x, edge_index = _inputs()
    conv = SAGEConv(6, 4).double()
    adj = torch.zeros(15, 15, dtype=torch.float64)
    adj[edge_index[1], edge_index[0]] = 1.0
    mean = adj @ x / adj.sum(1, keepdim=True).clamp(min=1)
    expected = mean @ conv.lin_l.weight.t() + conv.lin_l.bias + x @ conv.lin_r.weight.t()
    torch.testing.assert_close(conv(x, edge_index), expected, rtol=1e-7, atol=1e-9)


OPTIONS = [dict(), dict(aggr="max"), dict(aggr="add"), dict(normalize=True), dict(root_weight=False),
           dict(project=True), dict(bias=False)]


@with_package("torch_geometric")
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("bipartite", [False, True])
def test_matches_pyg_outputs_and_gradients(options, bipartite):
    from torch_geometric.nn import SAGEConv as PygSAGEConv
    x, edge_index = _inputs()
    if bipartite:
        x_dst = torch.randn(15, 3, dtype=torch.float64, requires_grad=True)
        inputs, channels, leaves = (x, x_dst), (6, 3), [x, x_dst]
    else:
        inputs, channels, leaves = x, 6, [x]
    ref = PygSAGEConv(channels, 4, **options).double()
    conv = SAGEConv(channels, 4, **options).double()
    conv.load_state_dict(ref.state_dict())
    out, expected = conv(inputs, edge_index), ref(inputs, edge_index)
    torch.testing.assert_close(out, expected, rtol=1e-7, atol=1e-9)
    grad_out = torch.randn_like(out)
    # without root_weight the target features of a bipartite input are unused: both give None
    got = torch.autograd.grad(out, leaves + list(conv.parameters()), grad_out, allow_unused=True)
    want = torch.autograd.grad(expected, leaves + list(ref.parameters()), grad_out, allow_unused=True)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("aggr", ["mean", "max"])
def test_gradcheck(aggr):
    x, edge_index = _inputs(n=5, e=8, c=3)
    conv = SAGEConv(3, 2, aggr=aggr, project=True).double()
    assert torch.autograd.gradcheck(lambda x: conv(x, edge_index), (x,))


def test_sparse_features_match_dense():
    x, edge_index = _inputs()
    x = (x.detach() * (torch.rand(x.shape, dtype=x.dtype) < 0.3)).float()
    conv = SAGEConv(6, 4, project=True)
    torch.testing.assert_close(conv(x.to_sparse_csr(), edge_index), conv(x, edge_index), rtol=1e-5, atol=1e-6)
    assert conv._feature_cache.builds == 1  # projection and root term share the features' rulebook


def test_repr_and_errors():
    assert repr(SAGEConv(16, 32)) == "SAGEConv(16, 32, aggr=mean)"  # PyG's reprs
    assert repr(SAGEConv(16, 32, aggr="max", normalize=True)) == "SAGEConv(16, 32, aggr=max)"
    with pytest.raises(ValueError, match="SAGEConv: cannot resolve aggr='nonsense'"):
        SAGEConv(16, 32, aggr="nonsense")


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device(device):
    x, edge_index = _inputs()
    conv = SAGEConv(6, 4).double()
    expected = conv(x, edge_index)
    torch.testing.assert_close(conv.to(device)(x.to(device), edge_index.to(device)).cpu(), expected)

import pytest
import torch
from torch import nn

from irregconv.functional.knn import knn_graph
from irregconv.nn.graph import EdgeConv
from irregconv.testing import DEVICES, assert_close_with_grads, random_graph, with_package


def _mlp(c_in=6, c_out=4):
    return nn.Sequential(nn.Linear(2 * c_in, 8), nn.ReLU(), nn.Linear(8, c_out)).double()


def _points(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=gen, dtype=torch.float64, requires_grad=True)


def test_matches_loop_oracle_on_knn_graph():
    pos = _points()
    edge_index = knn_graph(pos.detach(), k=5)
    conv = EdgeConv(_mlp(3))
    rows = []
    for i in range(40):
        j = edge_index[0, edge_index[1] == i]
        x_i = pos[i].expand(j.numel(), 3)
        rows.append(conv.nn(torch.cat([x_i, pos[j] - x_i], dim=1)).max(dim=0).values)
    torch.testing.assert_close(conv(pos, edge_index), torch.stack(rows), rtol=1e-7, atol=1e-9)


@with_package("torch_geometric")
@pytest.mark.parametrize("aggr", ["max", "mean", "add"])
@pytest.mark.parametrize("bipartite", [False, True])
def test_matches_pyg_outputs_and_gradients(aggr, bipartite):
    from torch_geometric.nn import EdgeConv as PygEdgeConv
    gen = torch.Generator().manual_seed(3)
    edge_index = random_graph(20, 70, generator=gen)  # leaves some targets without edges
    x = torch.randn(20, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    if bipartite:
        x_dst = torch.randn(20, 6, generator=gen, dtype=torch.float64, requires_grad=True)
        inputs, leaves = (x, x_dst), [x, x_dst]
    else:
        inputs, leaves = x, [x]
    ref = PygEdgeConv(_mlp(), aggr=aggr)
    conv = EdgeConv(_mlp(), aggr=aggr)
    conv.load_state_dict(ref.state_dict())
    out, expected = conv(inputs, edge_index), ref(inputs, edge_index)
    assert_close_with_grads(out, expected, leaves + list(conv.parameters()), rtol=1e-7, atol=1e-9,
                            ref_inputs=leaves + list(ref.parameters()))


def test_gradcheck():
    pos = _points(n=6)
    edge_index = knn_graph(pos.detach(), k=2)
    conv = EdgeConv(_mlp(3, 2))
    assert torch.autograd.gradcheck(lambda p: conv(p, edge_index), (pos,))


def test_point_cloud_batch_stays_within_items():
    pos = _points(n=30).detach().float()
    batch = torch.arange(30) // 10
    edge_index = knn_graph(pos, k=4, batch=batch)
    assert torch.equal(batch[edge_index[0]], batch[edge_index[1]])
    out = EdgeConv(_mlp(3).float())(pos, edge_index)
    assert out.shape == (30, 4)


def test_repr_and_errors():
    assert repr(EdgeConv(nn.Identity())) == "EdgeConv(nn=Identity())"  # PyG's repr
    assert repr(EdgeConv(nn.Identity(), aggr="mean")) == "EdgeConv(nn=Identity())"
    with pytest.raises(ValueError, match="EdgeConv: cannot resolve aggr='nonsense'"):
        EdgeConv(nn.Identity(), aggr="nonsense")
    with pytest.raises(ValueError, match="EdgeConv: the message needs target features"):
        EdgeConv(nn.Identity())((torch.randn(3, 2), None), torch.tensor([[0], [1]]))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device(device):
    pos = _points()
    edge_index = knn_graph(pos.detach(), k=5)
    conv = EdgeConv(_mlp(3))
    expected = conv(pos, edge_index)
    out = conv.to(device)(pos.to(device), knn_graph(pos.detach().to(device), k=5))
    torch.testing.assert_close(out.cpu(), expected)

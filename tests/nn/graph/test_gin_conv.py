import pytest
import torch
from torch import nn

from irregconv.nn.graph import GINConv
from irregconv.testing import DEVICES, assert_close_with_grads, random_graph, with_package


def _inputs(n=15, e=50, c=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_graph(n, e, generator=gen)
    return torch.randn(n, c, generator=gen, dtype=torch.float64, requires_grad=True), edge_index


def _mlp(c_in=6, c_out=4):
    return nn.Sequential(nn.Linear(c_in, 8), nn.ReLU(), nn.Linear(8, c_out)).double()


def test_matches_dense_oracle():
    x, edge_index = _inputs()
    conv = GINConv(_mlp(), eps=0.3).double()
    adj = torch.zeros(15, 15, dtype=torch.float64).index_put((edge_index[1], edge_index[0]),
                                                             torch.ones(50, dtype=torch.float64), accumulate=True)
    torch.testing.assert_close(conv(x, edge_index), conv.nn(adj @ x + 1.3 * x), rtol=1e-7, atol=1e-9)


@with_package("torch_geometric")
@pytest.mark.parametrize("eps,train_eps", [(0.0, False), (0.5, False), (-0.2, True)])
@pytest.mark.parametrize("bipartite", [False, True])
def test_matches_pyg_outputs_and_gradients(eps, train_eps, bipartite):
    from torch_geometric.nn import GINConv as PygGINConv
    x, edge_index = _inputs()
    if bipartite:
        x_dst = torch.randn(15, 6, dtype=torch.float64, requires_grad=True)
        inputs, leaves = (x, x_dst), [x, x_dst]
    else:
        inputs, leaves = x, [x]
    ref = PygGINConv(_mlp(), eps=eps, train_eps=train_eps)
    conv = GINConv(_mlp(), eps=eps, train_eps=train_eps)
    conv.load_state_dict(ref.state_dict())
    out, expected = conv(inputs, edge_index), ref(inputs, edge_index)
    assert_close_with_grads(out, expected, leaves + list(conv.parameters()), rtol=1e-7, atol=1e-9,
                            ref_inputs=leaves + list(ref.parameters()))


def test_gradcheck():
    x, edge_index = _inputs(n=5, e=8, c=3)
    conv = GINConv(_mlp(3, 2), eps=0.1, train_eps=True).double()
    assert torch.autograd.gradcheck(lambda x, eps: torch.func.functional_call(conv, {"eps": eps}, (x, edge_index)),
                                    (x, conv.eps.detach().clone().requires_grad_()))


def test_eps_is_parameter_or_buffer_and_reset():
    assert "eps" in dict(GINConv(_mlp(), train_eps=True).named_parameters())
    conv = GINConv(_mlp(), eps=0.25)
    assert "eps" in dict(conv.named_buffers()) and "eps" not in dict(conv.named_parameters())
    conv.eps.fill_(3.0)
    conv.reset_parameters()
    assert float(conv.eps) == 0.25


def test_sparse_features_match_dense():
    x, edge_index = _inputs()
    x = (x.detach() * (torch.rand(x.shape, dtype=x.dtype) < 0.3))
    conv = GINConv(_mlp())
    torch.testing.assert_close(conv(x.to_sparse_coo(), edge_index), conv(x, edge_index))


def test_repr():
    assert repr(GINConv(nn.Linear(2, 3))) == "GINConv(nn=Linear(in_features=2, out_features=3, bias=True))"


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device(device):
    x, edge_index = _inputs()
    conv = GINConv(_mlp())
    expected = conv(x, edge_index)
    torch.testing.assert_close(conv.to(device)(x.to(device), edge_index.to(device)).cpu(), expected)

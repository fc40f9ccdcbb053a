"""Graph rulebook (one offset, pairs = edges sorted by target) + gather_scatter against the dense adjacency
product, with and without edge weights as pair_scale, for the output and all gradients."""
import pytest
import torch

from irregconv.engine import gather_scatter
from irregconv.rulebook import build_graph_rulebook
from irregconv.testing import DEVICES, assert_parity, assert_rulebook_invariants, random_graph

F64 = dict(rtol=1e-7, atol=1e-9)


def _adjacency(edge_index, edge_weight, num_out, num_in):
    """Dense ``A [num_out, num_in]`` with ``A[target, source] += weight`` (repeated edges add up)."""
    a = edge_weight.new_zeros(num_out, num_in)
    return a.index_put((edge_index[1], edge_index[0]), edge_weight, accumulate=True)


def test_pairs_sorted_by_target_and_pair_ids():
    edge_index = torch.tensor([[2, 0, 1, 2, 0], [1, 2, 0, 0, 1]])
    rb = build_graph_rulebook(edge_index, 3)
    assert_rulebook_invariants(rb)
    assert not rb.injective and rb.kernel_volume == 1 and rb.geometry.kind == "graph"
    torch.testing.assert_close(rb.out_idx, torch.tensor([0, 0, 1, 1, 2]), rtol=0, atol=0)
    torch.testing.assert_close(rb.in_idx, torch.tensor([1, 2, 0, 2, 0]), rtol=0, atol=0)
    torch.testing.assert_close(rb.pair_ids, torch.tensor([2, 3, 4, 0, 1]), rtol=0, atol=0)
    torch.testing.assert_close(edge_index[:, rb.pair_ids], torch.stack([rb.in_idx, rb.out_idx]), rtol=0, atol=0)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("transform", ["none", "shrink", "grow", "grouped"])
def test_graph_matches_dense_adjacency(weighted, transform):
    gen = torch.Generator().manual_seed(0)
    num_nodes, c_in = 30, 6
    edge_index = random_graph(num_nodes, 120, gen, allow_self_loops=True)
    rb = build_graph_rulebook(edge_index, num_nodes)
    assert_rulebook_invariants(rb)
    feats = torch.randn(num_nodes, c_in, dtype=torch.float64, generator=gen).requires_grad_()
    edge_weight = torch.rand(edge_index.size(1), dtype=torch.float64, generator=gen).requires_grad_(weighted)
    shapes = {"shrink": (1, c_in, 3), "grow": (1, c_in, 9), "grouped": (1, 2, 3, 4)}
    weight = (torch.randn(shapes[transform], dtype=torch.float64, generator=gen).requires_grad_()
              if transform != "none" else None)

    def engine(f, ew, *w):
        return gather_scatter(f, w[0] if w else None, rb, ew[rb.pair_ids] if weighted else None)

    def oracle(f, ew, *w):
        a = _adjacency(edge_index, ew if weighted else torch.ones_like(ew), num_nodes, num_nodes)
        h = a @ f
        if not w:
            return h
        w = w[0]
        if w.dim() == 3:
            return h @ w[0]
        return torch.cat([h[:, g * w.size(2):(g + 1) * w.size(2)] @ w[0, g] for g in range(w.size(1))], dim=1)

    inputs = [feats, edge_weight] + ([weight] if weight is not None else [])
    assert_parity(engine, oracle, inputs, generator=gen, **F64)


@pytest.mark.parametrize("device", DEVICES)
def test_graph_on_device(device):
    gen = torch.Generator().manual_seed(2)
    edge_index = random_graph(25, 100, gen).to(device)
    rb = build_graph_rulebook(edge_index, 25)
    assert rb.device.type == torch.device(device).type
    feats = torch.randn(25, 4, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    edge_weight = torch.rand(100, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    weight = torch.randn(1, 4, 3, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    assert_parity(lambda f, ew, w: gather_scatter(f, w, rb, ew[rb.pair_ids]),
                  lambda f, ew, w: _adjacency(edge_index, ew, 25, 25) @ f @ w[0],
                  [feats, edge_weight, weight], generator=gen, **F64)


def test_bipartite_and_repeated_edges():
    gen = torch.Generator().manual_seed(1)
    # sources 0..6, targets 0..3, one edge repeated three times: its messages add up
    edge_index = torch.tensor([[0, 6, 3, 3, 3, 5, 1], [3, 0, 2, 2, 2, 0, 1]])
    rb = build_graph_rulebook(edge_index, 7, num_out=4)
    assert_rulebook_invariants(rb)
    assert rb.num_in == 7 and rb.num_out == 4
    feats = torch.randn(7, 3, dtype=torch.float64, generator=gen).requires_grad_()
    edge_weight = torch.rand(7, dtype=torch.float64, generator=gen).requires_grad_()
    weight = torch.randn(1, 3, 2, dtype=torch.float64, generator=gen).requires_grad_()
    assert_parity(lambda f, ew, w: gather_scatter(f, w, rb, ew[rb.pair_ids]),
                  lambda f, ew, w: _adjacency(edge_index, ew, 4, 7) @ f @ w[0],
                  [feats, edge_weight, weight], generator=gen, **F64)
    # the transpose sends messages back along the reversed edges
    back = rb.transpose()
    assert_rulebook_invariants(back)
    g = torch.randn(4, 3, dtype=torch.float64, generator=gen).requires_grad_()
    scale = edge_weight.detach()[back.pair_ids]
    assert_parity(lambda g, w: gather_scatter(g, w, back, scale),
                  lambda g, w: _adjacency(edge_index, edge_weight.detach(), 4, 7).t() @ g @ w[0],
                  [g, weight], generator=gen, **F64)


def test_empty_graph():
    rb = build_graph_rulebook(torch.zeros(2, 0, dtype=torch.long), 5)
    assert rb.num_pairs == 0 and rb.num_out == 5
    assert_rulebook_invariants(rb)
    feats = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    scale = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    out = gather_scatter(feats, weight, rb, scale)
    torch.testing.assert_close(out, torch.zeros(5, 4, dtype=torch.float64), rtol=0, atol=0)
    out.sum().backward()
    torch.testing.assert_close(feats.grad, torch.zeros_like(feats), rtol=0, atol=0)
    torch.testing.assert_close(weight.grad, torch.zeros_like(weight), rtol=0, atol=0)
    assert scale.grad.shape == (0,)
    rb0 = build_graph_rulebook(torch.zeros(2, 0, dtype=torch.long), 0)
    assert gather_scatter(torch.zeros(0, 3), None, rb0).shape == (0, 3)


@pytest.mark.parametrize("edge_index, num_nodes, error, match", [
    (torch.tensor([[0, 1], [1, 0]]).float(), 2, TypeError, "build_graph_rulebook: edge_index must be int64"),
    ([[0, 1], [1, 0]], 2, TypeError, "build_graph_rulebook: edge_index must be a torch.Tensor"),
    (torch.tensor([0, 1]), 2, ValueError, r"build_graph_rulebook: edge_index must have shape \[2, E\]"),
    (torch.tensor([[0, -1], [1, 0]]), 2, ValueError, "negative source index -1"),
    (torch.tensor([[0, 1], [1, 2]]), 2, ValueError, "target index 2 but there are only 2 nodes"),
])
def test_bad_edge_index(edge_index, num_nodes, error, match):
    with pytest.raises(error, match=match):
        build_graph_rulebook(edge_index, num_nodes)

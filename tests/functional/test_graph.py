import pytest
import torch

from irregconv.functional.graph import (IdentityCache, add_remaining_self_loops, add_self_loops,
                                        adjacency_to_edge_index, gcn_norm, plain_tensor, propagate,
                                        sparse_dropout, sparse_matmul, unpack_graph_inputs)
from irregconv.rulebook import build_graph_rulebook
from irregconv.testing import random_graph, with_package


def _graph(n=10, e=30, seed=0, loops=True):
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_graph(n, e, generator=gen, allow_self_loops=loops)
    return edge_index, torch.rand(edge_index.size(1), generator=gen, dtype=torch.float64)


@with_package("torch_geometric")
@pytest.mark.parametrize("weighted", [False, True])
def test_self_loop_helpers_match_pyg(weighted):
    from torch_geometric import utils
    edge_index, edge_weight = _graph()
    w = edge_weight if weighted else None
    for ours, theirs in ((add_self_loops, utils.add_self_loops),
                         (add_remaining_self_loops, utils.add_remaining_self_loops)):
        got, expected = ours(edge_index, w, 2.0, 12), theirs(edge_index, w, 2.0, 12)
        assert torch.equal(got[0], expected[0])
        assert (got[1] is None) == (expected[1] is None)
        if weighted:
            torch.testing.assert_close(got[1], expected[1])


@with_package("torch_geometric")
@pytest.mark.parametrize("improved", [False, True])
@pytest.mark.parametrize("add_loops", [False, True])
def test_gcn_norm_matches_pyg_as_a_set_of_weighted_edges(improved, add_loops):
    from torch_geometric.nn.conv.gcn_conv import gcn_norm as pyg_gcn_norm
    edge_index, edge_weight = _graph()
    got_index, got_weight = gcn_norm(edge_index, edge_weight, 12, improved, add_loops, torch.float64)
    ref_index, ref_weight = pyg_gcn_norm(edge_index, edge_weight, 12, improved, add_loops)
    dense = lambda ei, w: torch.zeros(12, 12, dtype=torch.float64).index_put((ei[1], ei[0]), w, accumulate=True)
    torch.testing.assert_close(dense(got_index, got_weight), dense(ref_index, ref_weight))
    assert torch.all(got_index[1].diff() >= 0)  # sorted by target (rulebook order)


def test_gcn_norm_improved_without_weights_uses_two_on_the_diagonal():
    edge_index = torch.tensor([[0, 1], [1, 0]])
    _, weight = gcn_norm(edge_index, improved=True)
    torch.testing.assert_close(weight, torch.tensor([2 / 3, 1 / 3, 1 / 3, 2 / 3]))


def test_adjacency_layouts_give_the_same_edges():
    edge_index, edge_weight = _graph(loops=False)
    adj = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight, (10, 10)).coalesce()
    ref = torch.zeros(10, 10, dtype=torch.float64).index_put((edge_index[1], edge_index[0]), edge_weight)
    for layout in (adj, adj.to_sparse_csr(), adj.to_sparse_csc()):
        ei, w = adjacency_to_edge_index(layout)
        torch.testing.assert_close(torch.zeros_like(ref).index_put((ei[1], ei[0]), w), ref)
    with pytest.raises(TypeError, match="adjacency_to_edge_index: the adjacency must be a 2-D torch sparse"):
        adjacency_to_edge_index(ref)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_matmul_matches_dense_and_gradchecks(layout):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64) * (torch.rand(6, 5, generator=gen) < 0.4)
    xs = x.to_sparse_coo() if layout == "coo" else x.to_sparse_csr()
    weight = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(sparse_matmul(xs, weight), x @ weight)
    assert torch.autograd.gradcheck(lambda w: sparse_matmul(xs, w), (weight,))


def test_sparse_matmul_sums_duplicates_of_uncoalesced_coo():
    x = torch.sparse_coo_tensor(torch.tensor([[0, 0, 1], [2, 2, 0]]), torch.tensor([1.0, 2.0, 4.0]), (2, 3))
    weight = torch.randn(3, 2)
    torch.testing.assert_close(sparse_matmul(x, weight), x.to_dense() @ weight)


def test_pattern_cache_counts_builds():
    x = (torch.randn(8, 6) * (torch.rand(8, 6) < 0.3)).to_sparse_csr()
    cache, weight = IdentityCache(), torch.randn(6, 2)
    for _ in range(3):
        sparse_matmul(sparse_dropout(x, 0.5), weight, cache)
    assert cache.builds == 1
    sparse_matmul(x.to_dense().to_sparse_csr(), weight, cache)
    assert cache.builds == 2


@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
def test_sparse_dropout_keeps_pattern_and_scales_survivors(layout):
    torch.manual_seed(0)
    x = torch.rand(50, 40) * (torch.rand(50, 40) < 0.2)
    xs = {"dense": x, "coo": x.to_sparse_coo(), "csr": x.to_sparse_csr()}[layout]
    out = sparse_dropout(xs, 0.5, True)
    assert out.layout == xs.layout
    dense = out.to_dense()
    kept = dense != 0
    assert not (kept & (x == 0)).any()
    torch.testing.assert_close(dense[kept], 2 * x[kept])
    assert 0.4 < kept.sum() / (x != 0).sum() < 0.6
    assert sparse_dropout(xs, 0.5, training=False) is xs or layout == "dense"


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_propagate_reductions_match_a_loop(reduce):
    edge_index, edge_weight = _graph(loops=False)
    x = torch.randn(10, 4, dtype=torch.float64)
    rulebook = build_graph_rulebook(edge_index, 10)
    out = propagate(x, rulebook, edge_weight[rulebook.pair_ids], reduce=reduce)
    for i in range(10):
        incoming = edge_index[1] == i
        msgs = x[edge_index[0, incoming]] * edge_weight[incoming].unsqueeze(1)
        expected = torch.zeros(4, dtype=torch.float64) if msgs.numel() == 0 else {
            "sum": msgs.sum(0), "mean": msgs.mean(0), "max": msgs.max(0).values, "min": msgs.min(0).values}[reduce]
        torch.testing.assert_close(out[i], expected)


def test_propagate_rejects_unknown_reduction():
    rulebook = build_graph_rulebook(torch.tensor([[0], [1]]), 2)
    with pytest.raises(ValueError, match="propagate: reduce must be one of"):
        propagate(torch.randn(2, 3), rulebook, reduce="median")


@pytest.mark.parametrize("values_need_grad", [False, True])
def test_propagate_sparse_features_with_bias_match_dense_and_give_value_gradients(values_need_grad):
    edge_index, edge_weight = _graph()
    rulebook = build_graph_rulebook(edge_index, 10)
    gen = torch.Generator().manual_seed(3)
    dense = torch.randn(10, 6, dtype=torch.float64, generator=gen) * (torch.rand(10, 6, generator=gen) < 0.4)
    weight = torch.randn(6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    scale = edge_weight[rulebook.pair_ids]
    sparse = dense.to_sparse_coo().coalesce().requires_grad_(values_need_grad)
    out = propagate(sparse, rulebook, scale, weight, bias=bias)
    dense_leaf = dense.clone().requires_grad_()
    expected = propagate(dense_leaf, rulebook, scale, weight) + bias
    torch.testing.assert_close(out, expected)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    got = torch.autograd.grad(out, [weight, bias] + ([sparse] if values_need_grad else []), grad)
    want = torch.autograd.grad(expected, [weight, bias, dense_leaf], grad)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    if values_need_grad:  # only the stored entries have gradients
        torch.testing.assert_close(got[2].to_dense(), want[2] * (dense != 0))


@with_package("torch_geometric")
def test_pyg_edge_index_becomes_a_plain_tensor_with_its_size():
    from torch_geometric import EdgeIndex
    edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    wrapped = EdgeIndex(edge_index, sort_order="col", sparse_size=(4, 2))
    assert wrapped.data_ptr() == 0  # a wrapper: its data lives elsewhere
    _, plain, _, size = unpack_graph_inputs(torch.randn(4, 2), wrapped, None, "test")
    assert type(plain) is torch.Tensor and plain.data_ptr() != 0 and torch.equal(plain, edge_index)
    assert size == (4, 2)
    assert type(plain_tensor(wrapped[0])) is torch.Tensor  # PyG's Index too


def test_plain_tensor_keeps_the_autograd_graph():
    weight = torch.nn.Parameter(torch.rand(3))
    plain = plain_tensor(weight)
    assert type(plain) is torch.Tensor and plain.data_ptr() == weight.data_ptr()
    (plain * 2).sum().backward()
    torch.testing.assert_close(weight.grad, torch.full((3,), 2.0))
    assert plain_tensor(None) is None and plain_tensor(weight.detach()) is not None


def test_sparse_adjacency_gives_its_size():
    adj_t = torch.sparse_coo_tensor(torch.tensor([[0, 1], [3, 4]]), torch.ones(2), (2, 5))  # A[target, source]
    assert unpack_graph_inputs(None, adj_t, None, "test")[3] == (5, 2)
    with pytest.raises(ValueError, match=r"test: size = \(5, 3\) disagrees with the sparse adjacency"):
        unpack_graph_inputs(None, adj_t, None, "test", size=(5, 3))
    assert unpack_graph_inputs(None, torch.tensor([[0], [1]]), None, "test")[3] == (None, None)

import pytest
import torch

from irregconv.functional.knn import knn_graph
from irregconv.testing import DEVICES


def _naive_knn(pos, k, batch, loop):
    """Per-point sort of all distances (ties by index): the oracle."""
    edges = []
    for i in range(pos.size(0)):
        cand = [j for j in range(pos.size(0)) if (loop or j != i) and (batch is None or batch[j] == batch[i])]
        cand.sort(key=lambda j: (float(((pos[i] - pos[j]) ** 2).sum()), j))
        edges += [(j, i) for j in cand[:k]]
    return torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("batched", [False, True])
def test_matches_naive_oracle(k, loop, batched):
    gen = torch.Generator().manual_seed(k)
    pos = torch.randn(37, 3, generator=gen, dtype=torch.float64)
    batch = torch.randint(0, 4, (37,), generator=gen) if batched else None
    expected = _naive_knn(pos, k, batch, loop)
    assert torch.equal(knn_graph(pos, k, batch, loop=loop, chunk_size=8), expected)


def test_ties_go_to_the_smaller_index_and_small_items_give_fewer_edges():
    pos = torch.tensor([[0.0], [1.0], [-1.0], [5.0]])
    assert knn_graph(pos, 1).tolist() == [[1, 0, 0, 1], [0, 1, 2, 3]]
    edge_index = knn_graph(pos, 3, batch=torch.tensor([0, 0, 0, 1]))
    assert (edge_index[1] == 3).sum() == 0 and edge_index.size(1) == 6


def test_flow_reverses_rows():
    pos = torch.randn(10, 2)
    assert torch.equal(knn_graph(pos, 3, flow="target_to_source"), knn_graph(pos, 3).flip(0))


@pytest.mark.parametrize("bad", [dict(k=0), dict(k=2.5), dict(flow="up"), dict(batch=torch.zeros(3, dtype=torch.long))])
def test_bad_arguments(bad):
    with pytest.raises(ValueError, match="knn_graph: "):
        knn_graph(torch.randn(5, 3), **{"k": 2, **bad})


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device(device):
    pos = torch.randn(50, 3)
    assert torch.equal(knn_graph(pos.to(device), 4).cpu(), knn_graph(pos, 4))

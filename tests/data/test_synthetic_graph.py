import pytest
import torch

from irregconv.data import make_cora_like


def test_default_matches_cora_sizes():
    graph = make_cora_like()
    assert graph.x.shape == (2708, 1433) and graph.edge_index.shape == (2, 10556)
    assert [int(m.sum()) for m in (graph.train_mask, graph.val_mask, graph.test_mask)] == [140, 500, 1000]
    assert torch.bincount(graph.y[graph.train_mask]).tolist() == [20] * 7
    src, dst = graph.edge_index
    assert not (src == dst).any() and torch.unique(src * 2708 + dst).numel() == 10556
    assert torch.equal(torch.sort(src * 2708 + dst).values, torch.sort(dst * 2708 + src).values)  # undirected
    assert torch.all(dst.diff() >= 0)  # sorted by target
    assert torch.bincount(dst, minlength=2708).min() >= 1  # no isolated nodes
    homophily = float((graph.y[src] == graph.y[dst]).float().mean())
    assert 0.76 < homophily < 0.86
    words = graph.x.sum(dim=1)
    assert set(graph.x.unique().tolist()) == {0.0, 1.0} and 15 < float(words.mean()) < 20 and words.min() >= 1
    masks = torch.stack([graph.train_mask, graph.val_mask, graph.test_mask])
    assert masks.sum(dim=0).max() == 1


def test_same_seed_same_graph_other_seed_other_graph():
    a, b, c = make_cora_like(seed=3), make_cora_like(seed=3), make_cora_like(seed=4)
    for key in ("x", "edge_index", "y", "train_mask", "test_mask"):
        assert torch.equal(getattr(a, key), getattr(b, key))
    assert not torch.equal(a.edge_index, c.edge_index)


def test_features_carry_class_signal():
    graph = make_cora_like()
    # class-mean word profiles: a node is closer to its own class profile than chance would allow
    profiles = torch.stack([graph.x[graph.y == c].mean(0) for c in range(7)])
    nearest = (graph.x @ profiles.t()).argmax(dim=1)
    assert float((nearest == graph.y).float().mean()) > 0.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="make_cora_like: the split needs 1640 nodes"):
        make_cora_like(num_nodes=1000)
    with pytest.raises(ValueError, match="homophily and topic_strength must lie in"):
        make_cora_like(homophily=1.5)
    with pytest.raises(ValueError, match=r"topic_words must lie in \[1, num_features=20\], got 60"):
        make_cora_like(num_features=20)
    with pytest.raises(ValueError, match="num_edges=99999999 is too dense"):
        make_cora_like(num_edges=99999999)

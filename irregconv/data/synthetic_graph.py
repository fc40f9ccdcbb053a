"""A synthetic Cora-like citation graph: the embedded default for the demo and tests without data.

Graph: a degree-corrected stochastic block model (Karrer & Newman, "Stochastic blockmodels and community
structure in networks", arXiv:1008.3926), sampled edge by edge: an endpoint is drawn with probability
proportional to a heavy-tailed degree propensity, the other endpoint from the same class with
probability ``homophily`` (else from another class), again proportional to propensity. Features: sparse
binary bags of words; each word of a node comes from its class's topic with probability
``topic_strength`` and from a shared Zipf background otherwise. The defaults give Cora's sizes (2708
nodes, 5278 undirected edges, 1433 words, 7 classes, ~18 words per node, edge homophily ~0.81) and
its split sizes (20 training nodes per class, 500 validation, 1000 test). It is somewhat easier than
Cora for a GCN (about 88% test accuracy with the Kipf & Welling setup, against 81% on Cora) and harder
from the features alone (logistic regression about 47%, against about 58%).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .planetoid import NodeClassificationGraph


def make_cora_like(num_nodes: int = 2708, num_classes: int = 7, num_features: int = 1433, num_edges: int = 5278,
                   homophily: float = 0.81, words_per_node: float = 18.0, topic_words: int = 60,
                   topic_strength: float = 0.2, degree_exponent: float = 2.5, train_per_class: int = 20,
                   num_val: int = 500, num_test: int = 1000, seed: int = 0) -> NodeClassificationGraph:
    """Sample a Cora-like graph (same seed, same graph, on every machine).

    Args:
        num_nodes (int): ``N`` (default: 2708).
        num_classes (int): classes (default: 7).
        num_features (int): vocabulary size ``F`` (default: 1433).
        num_edges (int): undirected edges; ``edge_index`` holds both directions (default: 5278).
        homophily (float): probability that an edge stays within a class (default: 0.81).
        words_per_node (float): mean number of word draws per node (default: 18).
        topic_words (int): words in each class's topic (default: 60).
        topic_strength (float): probability that a word comes from the node's class topic (default: 0.2).
        degree_exponent (float): power-law exponent of the degree propensities (default: 2.5).
        train_per_class (int): training nodes per class (default: 20).
        num_val (int): validation nodes (default: 500).
        num_test (int): test nodes (default: 1000).
        seed (int): random seed (default: 0).

    Returns:
        NodeClassificationGraph: ``x [N, F]`` binary float32, ``edge_index [2, 2 * num_edges]`` (sorted by
        target, no self-loops, no duplicates), ``y [N]``, masks of the given sizes.

    Example:
        >>> g = make_cora_like(num_nodes=300, num_features=100, num_edges=600, num_val=50, num_test=100)
        >>> int(g.train_mask.sum()), g.edge_index.shape
        (140, torch.Size([2, 1200]))
    """
    if num_classes * train_per_class + num_val + num_test > num_nodes:
        raise ValueError(f"make_cora_like: the split needs {num_classes * train_per_class + num_val + num_test} "
                         f"nodes (train_per_class * num_classes + num_val + num_test) but num_nodes={num_nodes}")
    if not 0.0 <= homophily <= 1.0 or not 0.0 <= topic_strength <= 1.0:
        raise ValueError(f"make_cora_like: homophily and topic_strength must lie in [0, 1], got "
                         f"{homophily} and {topic_strength}")
    if not 1 <= topic_words <= num_features:
        raise ValueError(f"make_cora_like: topic_words must lie in [1, num_features={num_features}], got {topic_words}")
    if num_edges > num_nodes * (num_nodes - 1) // 4:
        raise ValueError(f"make_cora_like: num_edges={num_edges} is too dense for {num_nodes} nodes "
                         f"(at most N (N - 1) / 4 = {num_nodes * (num_nodes - 1) // 4})")
    gen = torch.Generator().manual_seed(seed)
    y = _labels(num_nodes, num_classes, train_per_class, gen)
    propensity = (1.0 - torch.rand(num_nodes, generator=gen)).pow(-1.0 / (degree_exponent - 1.0))
    edge_index = _sample_edges(y, num_classes, propensity, num_edges, homophily, gen)
    x = _bag_of_words(y, num_classes, num_features, words_per_node, topic_words, topic_strength, gen)
    train_mask, val_mask, test_mask = _split(y, num_classes, train_per_class, num_val, num_test, gen)
    return NodeClassificationGraph(name="synthetic", x=x, edge_index=edge_index, y=y, train_mask=train_mask,
                                   val_mask=val_mask, test_mask=test_mask, num_classes=num_classes)


def _labels(num_nodes: int, num_classes: int, min_size: int, gen: torch.Generator) -> Tensor:
    # unequal class sizes, as in Cora (largest class ~4.5x the smallest), each big enough to train on
    share = torch.softmax(0.5 * torch.randn(num_classes, generator=gen), 0)
    sizes = (share * (num_nodes - num_classes * min_size)).floor().long() + min_size
    sizes[0] += num_nodes - int(sizes.sum())
    y = torch.repeat_interleave(torch.arange(num_classes), sizes)
    return y[torch.randperm(num_nodes, generator=gen)]


def _pick_in_class(cls: Tensor, y: Tensor, propensity: Tensor, num_classes: int, gen: torch.Generator) -> Tensor:
    """One node of class ``cls[e]`` per entry, drawn proportionally to propensity (inverse-CDF sampling)."""
    order = torch.argsort(y, stable=True)
    cum = torch.cumsum(propensity[order].double(), 0)
    total = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, y, propensity.double())
    start = torch.cumsum(total, 0) - total
    count = torch.bincount(y, minlength=num_classes)
    first = torch.cumsum(count, 0) - count
    target = start[cls] + torch.rand(cls.numel(), generator=gen, dtype=torch.float64) * total[cls]
    pos = torch.searchsorted(cum, target, right=True)
    pos = torch.minimum(torch.maximum(pos, first[cls]), first[cls] + count[cls] - 1)
    return order[pos]


def _sample_edges(y: Tensor, num_classes: int, propensity: Tensor, num_edges: int, homophily: float,
                  gen: torch.Generator) -> Tensor:
    n = y.numel()
    key = torch.empty(0, dtype=torch.long)
    # every node cites at least once (no isolated nodes, as in Cora), the rest by propensity
    src = torch.cat([torch.randperm(n, generator=gen),
                     torch.multinomial(propensity, 2 * num_edges, replacement=True, generator=gen)])
    while key.numel() < num_edges:  # duplicates and self-loops are dropped: draw again until enough
        same = torch.rand(src.numel(), generator=gen) < homophily
        other = (y[src] + torch.randint(1, max(num_classes, 2), (src.numel(),), generator=gen)) % num_classes
        dst = _pick_in_class(torch.where(same, y[src], other), y, propensity, num_classes, gen)
        keep = src != dst
        lo, hi = torch.minimum(src, dst)[keep], torch.maximum(src, dst)[keep]
        fresh = torch.cat([key, lo * n + hi])
        # keep first occurrences in draw order so the result does not depend on how many rounds ran
        uniq, inverse = torch.unique(fresh, return_inverse=True)
        first = torch.full((uniq.numel(),), fresh.numel(), dtype=torch.long).scatter_reduce(
            0, inverse, torch.arange(fresh.numel()), reduce="amin")
        key = uniq[torch.argsort(first)]
        src = torch.multinomial(propensity, 2 * num_edges, replacement=True, generator=gen)
    key = key[:num_edges]
    lo, hi = key // n, key % n
    src, dst = torch.cat([lo, hi]), torch.cat([hi, lo])
    order = torch.argsort(dst * n + src)
    return torch.stack([src[order], dst[order]])


def _bag_of_words(y: Tensor, num_classes: int, num_features: int, words_per_node: float, topic_words: int,
                  topic_strength: float, gen: torch.Generator) -> Tensor:
    n = y.numel()
    rank = torch.randperm(num_features, generator=gen).double()
    background = 1.0 / (rank + 10.0)  # Zipf-like shared vocabulary
    topics = torch.stack([torch.randperm(num_features, generator=gen)[:topic_words] for _ in range(num_classes)])
    draws = 1 + torch.poisson(torch.full((n,), words_per_node - 1.0), generator=gen).long()
    node = torch.repeat_interleave(torch.arange(n), draws)
    from_topic = torch.rand(node.numel(), generator=gen) < topic_strength
    topic_word = topics[y[node], torch.randint(0, topic_words, (node.numel(),), generator=gen)]
    background_word = torch.multinomial(background, node.numel(), replacement=True, generator=gen)
    word = torch.where(from_topic, topic_word, background_word)
    x = torch.zeros(n, num_features)
    x[node, word] = 1.0
    return x


def _split(y: Tensor, num_classes: int, train_per_class: int, num_val: int, num_test: int, gen: torch.Generator):
    n = y.numel()
    perm = torch.randperm(n, generator=gen)
    train = torch.cat([perm[y[perm] == c][:train_per_class] for c in range(num_classes)])
    rest = perm[~torch.isin(perm, train)]
    masks = []
    for idx in (train, rest[:num_val], rest[num_val:num_val + num_test]):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[idx] = True
        masks.append(mask)
    return masks

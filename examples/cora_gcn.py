"""Semi-supervised node classification with a two-layer GCN on Cora (or the synthetic Cora-like graph).

    python examples/cora_gcn.py                          # Cora from $IRREGCONV_DATA/planetoid, else synthetic
    python examples/cora_gcn.py --dataset synthetic --epochs 200

A graph convolution is a rulebook with one offset: the edge list says which source row feeds which target
row, the symmetric normalisation is a per-pair scale, and the layer is gather -> GEMM -> scatter-add.
Setup of Kipf & Welling (arXiv:1609.02907): 16 hidden units, dropout 0.5, Adam (lr 0.01, weight decay 5e-4 on
the first layer), the test accuracy of the epoch with the best validation accuracy.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from irregconv.apps.cora import GCN, default_root, evaluate, load_graph, make_optimizer, row_normalize, train_step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("cora", "citeseer", "synthetic"), default=None,
                        help="default: cora when its files are under --root, else synthetic")
    parser.add_argument("--root", default=None, help="folder with <name>/raw/ind.<name>.* (default: "
                                                     "$IRREGCONV_DATA/planetoid)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    root = default_root() if args.root is None else Path(args.root)
    dataset = args.dataset
    if dataset is None:
        dataset = "cora" if (root / "cora" / "raw" / "ind.cora.x").is_file() else "synthetic"
    graph = load_graph(dataset, root, seed=args.seed)
    print(f"{dataset}: {graph.num_nodes} nodes, {graph.edge_index.size(1)} directed edges, {graph.num_features} "
          f"features, {int(graph.train_mask.sum())} training labels")

    x = row_normalize(graph.x.to_sparse_csr())        # sparse bag-of-words features, rows summing to 1
    torch.manual_seed(args.seed)
    model = GCN(graph.num_features, 16, graph.num_classes)
    optimizer = make_optimizer(model)
    best_val, test_at_best, best_epoch = -1.0, 0.0, 0
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        loss = train_step(model, optimizer, x, graph.edge_index, graph.y, graph.train_mask)
        val, test = evaluate(model, x, graph.edge_index, graph.y, (graph.val_mask, graph.test_mask))
        if val > best_val:
            best_val, test_at_best, best_epoch = val, test, epoch
        if epoch % 50 == 0 or epoch == args.epochs:
            print(f"epoch {epoch:3d}  loss {loss:.3f}  validation {val:.3f}  test {test:.3f}")
    seconds = time.perf_counter() - start
    print(f"test accuracy {test_at_best:.3f} at epoch {best_epoch} (best validation accuracy {best_val:.3f}); "
          f"{1e3 * seconds / args.epochs:.1f} ms per epoch with evaluation")


if __name__ == "__main__":
    main()

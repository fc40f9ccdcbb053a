"""``irregconv cora``: the Kipf & Welling GCN on Cora, CiteSeer or the synthetic Cora-like graph.

Setup of "Semi-Supervised Classification with Graph Convolutional Networks" (arXiv:1609.02907):
2 layers, 16 hidden units, dropout 0.5 (on the input and the hidden layer), Adam with lr 0.01 and
weight decay 5e-4 on the first layer, 200 epochs, row-normalised features, test accuracy of the epoch
with the best validation accuracy. Features stay sparse (CSR): the input dropout draws one number per
nonzero and the first layer runs over the nonzeros only.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.datasets import data_root
from ..data.planetoid import PLANETOID_NAMES, NodeClassificationGraph, Planetoid
from ..data.synthetic_graph import make_cora_like
from ..functional.graph import is_sparse, sparse_dropout
from ..nn.graph.gcn_conv import GCNConv
from ..rulebook.rulebook import rows_from_pointer
from .progress import ProgressBar

DATASETS = PLANETOID_NAMES + ("synthetic",)


class GCN(nn.Module):
    """Two GCNConv layers with ReLU and dropout (Kipf & Welling).

    Shapes:
        ``x [N, C_in]`` (dense or sparse), ``edge_index [2, E]`` -> logits ``[N, num_classes]``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_classes: int, dropout: float = 0.5,
                 cached: bool = True):
        super().__init__()
        self.dropout = dropout
        self.conv1 = GCNConv(in_channels, hidden_channels, cached=cached)
        self.conv2 = GCNConv(hidden_channels, num_classes, cached=cached)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = sparse_dropout(x, self.dropout, self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


def row_normalize(x: Tensor) -> Tensor:
    """Divide every row by its sum (rows summing to 0 stay 0); keeps a sparse ``x`` sparse (CSR)."""
    if is_sparse(x):
        x = x.to_sparse_csr()
        rows = rows_from_pointer(x.crow_indices())
        row_sum = torch.zeros(x.size(0), dtype=x.dtype, device=x.device).index_add_(0, rows, x.values())
        inv = torch.where(row_sum == 0, row_sum, 1.0 / row_sum)
        values = x.values() * inv[rows]
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), values, x.shape, check_invariants=False)
    row_sum = x.sum(dim=1, keepdim=True)
    return x / torch.where(row_sum == 0, torch.ones_like(row_sum), row_sum)


def make_optimizer(model: GCN, lr: float = 0.01, weight_decay: float = 5e-4) -> torch.optim.Optimizer:
    """Adam with weight decay on the first layer only (as in the paper's code)."""
    return torch.optim.Adam([dict(params=model.conv1.parameters(), weight_decay=weight_decay),
                             dict(params=model.conv2.parameters(), weight_decay=0.0)], lr=lr)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, edge_index: Tensor, y: Tensor,
               train_mask: Tensor) -> float:
    """One epoch: forward, cross-entropy on the training nodes, backward, optimizer step."""
    model.train()
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x, edge_index)[train_mask], y[train_mask])
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, edge_index: Tensor, y: Tensor, masks) -> List[float]:
    """Accuracy on each mask."""
    model.eval()
    pred = model(x, edge_index).argmax(dim=1)
    return [float((pred[m] == y[m]).float().mean()) for m in masks]


def train_gcn(graph: NodeClassificationGraph, seed: int, epochs: int = 200, sparse: bool = True,
              hidden: int = 16, on_epoch=None) -> Dict[str, object]:
    """Train one GCN and select the epoch on validation accuracy.

    Args:
        graph (NodeClassificationGraph): the data (features are row-normalised here).
        seed (int): seeds torch's generator (initialisation and dropout).
        epochs (int): training epochs (default: 200).
        sparse (bool): keep the features as CSR (default: ``True``).
        hidden (int): hidden units (default: 16).
        on_epoch (callable, optional): called with the epoch number after each epoch.

    Returns:
        dict: ``test_acc`` and ``val_acc`` at the selected epoch, ``epoch_times`` (seconds per training
        step), ``best_epoch``, and per epoch ``losses`` (training loss) and ``val_curve`` (validation accuracy).
    """
    x = row_normalize(graph.x.to_sparse_csr() if sparse else graph.x)
    torch.manual_seed(seed)
    model = GCN(graph.num_features, hidden, graph.num_classes).to(graph.x.device)
    optimizer = make_optimizer(model)
    best_val, test_acc, best_epoch, times, losses, val_curve = -1.0, 0.0, 0, [], [], []
    masks = (graph.val_mask, graph.test_mask)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        losses.append(train_step(model, optimizer, x, graph.edge_index, graph.y, graph.train_mask))
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        val_acc, tmp_test = evaluate(model, x, graph.edge_index, graph.y, masks)
        val_curve.append(val_acc)
        if val_acc > best_val:
            best_val, test_acc, best_epoch = val_acc, tmp_test, epoch
        if on_epoch is not None:
            on_epoch(epoch)
    return dict(test_acc=test_acc, val_acc=best_val, epoch_times=times, best_epoch=best_epoch, losses=losses,
                val_curve=val_curve)


def default_root() -> Path:
    """``planetoid/`` in the data root (:func:`irregconv.data.data_root`: ``$IRREGCONV_DATA``, else ``./datasets``)."""
    return data_root() / "planetoid"


def load_graph(dataset: str, root: Optional[Path] = None, seed: int = 0) -> NodeClassificationGraph:
    """``"cora"``, ``"citeseer"`` (Planetoid files under ``root``) or ``"synthetic"``."""
    if dataset == "synthetic":
        return make_cora_like(seed=seed)
    if dataset not in PLANETOID_NAMES:
        raise ValueError(f"load_graph: dataset must be one of {DATASETS}, got {dataset!r}")
    return Planetoid(default_root() if root is None else root, dataset)


def run_cora(args: argparse.Namespace) -> int:
    """Entry point of ``irregconv cora``: train ``args.seeds`` models and print the summary."""
    if args.seeds < 1 or args.epochs < 1:
        raise SystemExit(f"irregconv cora: --seeds and --epochs must be >= 1, got {args.seeds} and {args.epochs}")
    try:
        torch.empty(0, device=args.device)
    except (RuntimeError, AssertionError) as err:  # torch asserts for cuda on a CPU-only build
        usable = "cpu" + (" or cuda" if torch.cuda.is_available() else "")
        raise SystemExit(f"irregconv cora: --device {args.device!r} is not usable here ({err}); use {usable}") from err
    root = Path(args.root) if args.root else default_root()
    dataset = args.dataset
    if dataset is None:
        dataset = "cora" if all((root / "cora" / "raw" / f"ind.cora.{s}").is_file() for s in ("x", "graph")) \
            else "synthetic"
        if dataset == "synthetic":
            print(f"irregconv cora: no Cora files under {root}; using the synthetic Cora-like graph "
                  f"(pass --root DIR or --dataset cora to download)", file=sys.stderr)
    try:
        graph = load_graph(dataset, root).to(args.device)
    except (OSError, ValueError) as err:  # missing, truncated or corrupt data files
        raise SystemExit(f"irregconv cora: {err}") from err
    print(f"{graph}", file=sys.stderr)
    accuracies, times = [], []
    bar = ProgressBar(args.seeds * args.epochs, f"{dataset} x{args.seeds}")
    for seed in range(args.seeds):
        result = train_gcn(graph, seed, args.epochs, sparse=not args.dense,
                           on_epoch=lambda e, s=seed: bar.update(s * args.epochs + e, f"seed {s}"))
        accuracies.append(100.0 * result["test_acc"])
        times.extend(result["epoch_times"])
    bar.close()
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    layout = "dense" if args.dense else "sparse CSR"
    print(f"{dataset}: test accuracy {statistics.mean(accuracies):.1f} ± {std:.1f} % over {args.seeds} seed(s) "
          f"(GCN 2 layers x 16, {layout} features, model chosen on validation accuracy)")
    print(f"per seed: {' '.join(f'{a:.1f}' for a in accuracies)}")
    print(f"median epoch time: {1e3 * statistics.median(times):.2f} ms (forward + backward + Adam step, "
          f"{torch.get_num_threads()} threads, {args.device})")
    return 0


def add_cora_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``cora`` on an argparse subparsers object; ``set_defaults(run=run_cora)``."""
    parser = subparsers.add_parser("cora", help="train the Kipf & Welling GCN (Cora, CiteSeer, synthetic)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None,
                        help="folder holding <name>/raw/ind.<name>.* (default: $IRREGCONV_DATA/planetoid, "
                             "else datasets/planetoid; python -m irregconv.data.fetch cora puts the files there)")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="data set (default: cora when its files are found, else synthetic)")
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds, 0..N-1 (default: 10)")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs (default: 200)")
    parser.add_argument("--dense", action="store_true", help="dense features instead of sparse CSR")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.set_defaults(run=run_cora)
    return parser


#: the name ``irregconv.cli`` looks up in every subcommand module
add_parser = add_cora_parser

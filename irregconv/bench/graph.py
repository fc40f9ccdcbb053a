"""``irregconv bench graph``: GCNConv against PyG's GCNConv in the same process, medians and ratios.

Cases (the graph issue's):

(a) Cora, the two GCNConv layers (1433 -> 16 -> 7) forward + backward, cross-entropy on the 140 training
    nodes, dense features;
(b) the same with the features as a torch sparse CSR tensor (PyG runs it too);
(c) a whole training epoch of ``irregconv cora`` (sparse features, dropout over the nonzeros) against the
    same model in PyG (dense features, as in PyG's example): dropout, forward, loss, backward, Adam step;
(d) a random graph of ogbn-arxiv size (169,343 nodes, 1,166,243 edges), GCNConv 128 -> 128
    forward + backward.

Both libraries use ``cached=True`` (the normalised graph is built once, as in a training loop); cases (a)
and (d) also time uncached layers given a new ``edge_index`` tensor on every call, so that both libraries
normalise the graph (and irregconv builds its rulebook) every time. Cora comes from the Planetoid files
when found, else the synthetic Cora-like graph of the same size.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import allocator
from ..apps.cora import GCN, default_root, load_graph, make_optimizer, row_normalize, train_step
from ..nn.graph.gcn_conv import GCNConv
from ..testing.generators import random_graph
from .timing import format_table, median_time

ARXIV_NODES, ARXIV_EDGES = 169_343, 1_166_243
TARGETS = {"a": 1.5, "b": 5.0, "c": 5.0, "d": 1.5}


def _pyg():
    try:
        from torch_geometric.nn import GCNConv as PygGCNConv
    except ImportError:
        return None
    return PygGCNConv


class _PygGCN(nn.Module):
    """The model of :class:`irregconv.apps.cora.GCN` built from PyG's layer, with torch's dense dropout."""

    def __init__(self, conv_cls, in_channels: int, hidden: int, num_classes: int, cached: bool = True):
        super().__init__()
        self.conv1 = conv_cls(in_channels, hidden, cached=cached)
        self.conv2 = conv_cls(hidden, num_classes, cached=cached)

    def forward(self, x, edge_index):
        x = F.dropout(x, 0.5, self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, 0.5, self.training)
        return self.conv2(x, edge_index)


def _layers_step(model: nn.Module, x, edge_index, y, mask):
    """Forward + backward of the two layers alone (no dropout), loss on the training nodes."""
    model.zero_grad(set_to_none=True)
    out = model.conv2(F.relu(model.conv1(x, edge_index)), edge_index)
    F.cross_entropy(out[mask], y[mask]).backward()


def _layer_step(conv: nn.Module, x, edge_index, grad):
    conv.zero_grad(set_to_none=True)
    conv(x, edge_index).backward(grad)


def bench_cora(graph, pyg_cls, repeat: int):
    """Rows for cases (a), (b), (c): ``[case, PyG ms, irregconv ms]`` (PyG None when not installed)."""
    x = row_normalize(graph.x)
    x_csr = x.to_sparse_csr()
    ei, y, mask = graph.edge_index, graph.y, graph.train_mask
    torch.manual_seed(0)
    ours = GCN(graph.num_features, 16, graph.num_classes)
    theirs = _PygGCN(pyg_cls, graph.num_features, 16, graph.num_classes) if pyg_cls else None
    if theirs is not None:
        ours.load_state_dict(theirs.state_dict())
    rows = []

    def time_pair(their_fn, our_fn):
        t_ours = median_time(our_fn, repeat=repeat, warmup=3)
        t_theirs = median_time(their_fn, repeat=repeat, warmup=3) if theirs is not None else None
        return t_theirs, t_ours

    ms = lambda t: None if t is None else 1e3 * t  # noqa: E731
    pyg_dense, ours_dense = time_pair(lambda: _layers_step(theirs, x, ei, y, mask),
                                      lambda: _layers_step(ours, x, ei, y, mask))
    rows.append(["(a) Cora 2 layers fwd+bwd, dense", ms(pyg_dense), ms(ours_dense), pyg_dense])
    pyg_csr, ours_csr = time_pair(lambda: _layers_step(theirs, x_csr, ei, y, mask),
                                  lambda: _layers_step(ours, x_csr, ei, y, mask))
    rows.append(["(b) same, CSR features (vs PyG dense)", ms(pyg_csr), ms(ours_csr), pyg_dense])
    torch.manual_seed(0)
    ours_fresh = GCN(graph.num_features, 16, graph.num_classes, cached=False)
    theirs_fresh = _PygGCN(pyg_cls, graph.num_features, 16, graph.num_classes, cached=False) if pyg_cls else None
    # a new edge_index tensor per call defeats every cache: the graph is normalised on every call
    t_ours = median_time(lambda: _layers_step(ours_fresh, x, ei.clone(), y, mask), repeat=repeat, warmup=3)
    t_theirs = median_time(lambda: _layers_step(theirs_fresh, x, ei.clone(), y, mask), repeat=repeat, warmup=3) \
        if theirs_fresh is not None else None
    rows.append(["(a) same, new graph every call (uncached)", ms(t_theirs), ms(t_ours), t_theirs])
    opt_ours = make_optimizer(ours)
    opt_theirs = make_optimizer(theirs) if theirs is not None else None
    pyg_epoch, ours_epoch = time_pair(lambda: train_step(theirs, opt_theirs, x, ei, y, mask),
                                      lambda: train_step(ours, opt_ours, x_csr, ei, y, mask))
    rows.append(["(c) training epoch (ours CSR, PyG dense)", ms(pyg_epoch), ms(ours_epoch), pyg_epoch])
    return rows


def bench_arxiv_size(pyg_cls, repeat: int, channels: int = 128):
    """Rows for case (d), cached and uncached."""
    gen = torch.Generator().manual_seed(0)
    edge_index = random_graph(ARXIV_NODES, ARXIV_EDGES, generator=gen)
    x = torch.randn(ARXIV_NODES, channels, generator=gen)
    grad = torch.randn(ARXIV_NODES, channels, generator=gen)
    rows = []
    for cached in (True, False):
        torch.manual_seed(0)
        edges = (lambda: edge_index) if cached else edge_index.clone  # uncached: a new graph every call
        ours = GCNConv(channels, channels, cached=cached)
        t_ours = median_time(lambda: _layer_step(ours, x, edges(), grad), repeat=repeat, warmup=1)
        t_theirs = None
        if pyg_cls is not None:
            theirs = pyg_cls(channels, channels, cached=cached)
            t_theirs = median_time(lambda: _layer_step(theirs, x, edges(), grad), repeat=repeat, warmup=1)
        label = f"(d) {ARXIV_NODES:,} nodes / {ARXIV_EDGES:,} edges, 128->128 fwd+bwd" + \
            ("" if cached else ", new graph every call")
        rows.append([label, None if t_theirs is None else 1e3 * t_theirs, 1e3 * t_ours, t_theirs])
    return rows


def run_graph_bench(args: argparse.Namespace) -> int:
    """Entry point of ``irregconv bench graph``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    pyg_cls = _pyg()
    root = Path(args.root) if args.root else default_root()
    try:
        graph = load_graph("cora", root)
        source = f"Cora from {root}"
    except FileNotFoundError:
        graph = load_graph("synthetic")
        source = "synthetic Cora-like graph (no Cora files found; pass --root)"
    print(f"irregconv bench graph: {source}; {torch.get_num_threads()} threads; "
          f"PyG {'in the same process' if pyg_cls else 'not installed: irregconv times only'}\n{allocator.describe()}")
    rows = bench_cora(graph, pyg_cls, args.repeat)
    if not args.skip_large:
        rows += bench_arxiv_size(pyg_cls, args.repeat_large)
    table = []
    for label, pyg_ms, ours_ms, baseline_s in rows:
        case = label[1]
        speedup = None if baseline_s is None else 1e3 * baseline_s / ours_ms
        if speedup is None:
            verdict = "-"
        else:
            target = TARGETS[case]
            verdict = f">= {target:g}x: {'met' if speedup >= target else 'NOT met'}"
        table.append([label, "-" if pyg_ms is None else pyg_ms, ours_ms,
                      "-" if speedup is None else f"{speedup:.2f}x",
                      verdict if "new graph" not in label else "(information)"])
    print(format_table(["case", "PyG ms", "irregconv ms", "speed-up", "target"], table))
    print("medians; speed-up = PyG time / irregconv time ((b) against PyG's dense time, as the issue asks)")
    return 0


def add_graph_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``graph`` on the ``bench`` subparsers; ``set_defaults(run=run_graph_bench)``."""
    parser = subparsers.add_parser("graph", help="GCNConv vs PyG: Cora layers, epoch, ogbn-arxiv-size graph",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help="Planetoid root holding cora/raw/ (default: as irregconv cora)")
    parser.add_argument("--repeat", type=int, default=30, help="timed repeats for the Cora cases (default: 30)")
    parser.add_argument("--repeat-large", type=int, default=5, help="timed repeats for case (d) (default: 5)")
    parser.add_argument("--skip-large", action="store_true", help="skip case (d)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.set_defaults(run=run_graph_bench)
    return parser


#: the name ``irregconv.cli`` looks up in every benchmark module
add_parser = add_graph_bench_parser

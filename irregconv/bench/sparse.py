"""``irregconv bench sparse``: the SECOND-style 8x backbone on a KITTI scan, irregconv beside spconv.

The scan (default ``kitti_training_000000.bin`` from ``$IRREGCONV_DATA/lidar``) is voxelized at
0.05 x 0.05 x 0.1 m in [0, -40, -3] .. [70.4, 40, 1] (mean of the points per voxel) and run through
:class:`irregconv.models.second.SECONDBackbone8x`, and through the same network built from real
``spconv.pytorch`` (same weights) when spconv is installed, in the same process and thread count.
Printed: medians after warm-up of the forward (inference: eval mode, no grad) with rulebooks built in the
call (a new scan, as in training and inference) and with rulebooks cached, the spconv-API build on the shim,
forward + backward (spconv cannot: its backward needs CUDA), the speed ratio, GFLOP/s of useful work
(``2 x pairs x C_in x C_out`` summed over layers, from the real rulebooks), the share of time spent building
rulebooks, the peak memory growth of one call (RSS, measured in a fresh subprocess per library), and a
per-layer profile of irregconv (rulebook build, gather-GEMM-scatter, batch norm + ReLU).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

import torch

from .. import allocator
from .engine import load_voxels
from .timing import format_table, median_time, sgemm_gflops

#: targets of the sparse front-end issue, printed next to the measurements
TARGET_SPEEDUP, TARGET_TRAIN_RATIO = 2.0, 3.0


def _spconv():
    try:
        import spconv.pytorch as real
    except ImportError:
        return None
    return real


def _models(real, seed: int = 0):
    """``(native, shim_api, spconv_model)``: the backbone built natively, on the shim through the spconv API,
    and on real spconv (None without it), all with the weights of one spconv-format initialisation."""
    from ..compat import spconv as shim
    from ..models.second import SECONDBackbone8x, spconv_second_backbone_8x
    torch.manual_seed(seed)
    reference = spconv_second_backbone_8x(real if real is not None else shim)
    native, shim_api = SECONDBackbone8x(), spconv_second_backbone_8x(shim)
    shim.load_spconv_state_dict(native, reference.state_dict())
    shim_api.load_state_dict(reference.state_dict())
    return native, shim_api, (reference if real is not None else None)


def _fresh(x):
    """``x`` on a new coordinate set with an empty rulebook cache: what a new scan costs."""
    from ..tensor import Sites, SparseTensor
    return SparseTensor.from_sites(x.feats, Sites(x.coords, x.spatial_shape, x.batch_size))


def _blocks(model):
    """``(name, conv, [batch norm, relu])`` of every (conv, BatchNorm1d, ReLU) block, in order."""
    return [(f"{stage_name}.{i}", block[0], list(block)[1:])
            for stage_name, stage in model.named_children() for i, block in enumerate(stage)]


def _rulebook(conv, sites):
    """The (cached) rulebook ``conv`` uses on ``sites``."""
    from ..functional.sparse_conv import strided_rulebook, subm_rulebook
    if conv.kind == "subm":
        return subm_rulebook(sites, conv.region, conv.dilation)
    return strided_rulebook(sites, conv.region, conv.stride, conv.padding, conv.dilation)[0]


def profile_layers(model, x, repeat: int) -> List[Dict[str, object]]:
    """Per block of ``model``: sites, pairs, useful FLOPs and median times (ms) of the conv on fresh sites
    (rulebook built if this block is the first to need it), the conv with its rulebook cached, and the batch
    norm + ReLU, measured block by block in eval mode without grad."""
    rows, times = [], []
    with torch.no_grad():
        for _ in range(repeat):
            current, layer_times = _fresh(x), []
            for _, conv, post in _blocks(model):
                start = time.perf_counter()
                out = conv(current)
                first = time.perf_counter()
                out = conv(current)
                cached = time.perf_counter()
                feats = out.feats
                for module in post:
                    feats = module(feats)
                layer_times.append((first - start, cached - first, time.perf_counter() - cached))
                if len(rows) < len(layer_times):
                    rulebook = _rulebook(conv, current.sites)
                    rows.append({"pairs": rulebook.num_pairs, "n_in": current.num_sites, "n_out": out.num_sites,
                                 "c_in": conv.in_channels, "c_out": conv.out_channels, "kind": conv.kind,
                                 "flops": 2.0 * rulebook.num_pairs * conv.in_channels * conv.out_channels})
                current = out.replace(feats)
            times.append(layer_times)
    for (name, _, _), row, per_run in zip(_blocks(model), rows, zip(*times)):
        first, cached, post = (1e3 * statistics.median(t) for t in zip(*per_run))
        row.update(name=name, first_ms=first, cached_ms=cached, rulebook_ms=max(first - cached, 0.0), post_ms=post)
    return rows


def _train_step(model, x):
    model.zero_grad(set_to_none=True)
    model(_fresh(x)).feats.sum().backward()


def _rss_status() -> Dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) * 1024
    return values


def memory_child(library: str, mode: str, scan: Optional[str], threads: int) -> None:
    """Run in a fresh process: print (JSON) how far one call raised the peak resident set above the RSS
    before it, after a warm-up on a few voxels (numba compilation, library initialisation)."""
    torch.set_num_threads(threads)
    x, _ = load_voxels(scan)
    real = _spconv() if library == "spconv" else None
    native, _, theirs = _models(real)
    from ..tensor import SparseTensor
    tiny = SparseTensor(x.feats[:64], x.coords[:64], x.spatial_shape, x.batch_size)
    if library == "spconv":
        theirs.eval()
        call = lambda t: theirs(real.SparseConvTensor(t.feats, t.coords, list(t.spatial_shape), t.batch_size))  # noqa: E731
    elif mode == "train":
        call = lambda t: _train_step(native, t)  # noqa: E731
    else:
        native.eval()
        call = native
    with torch.set_grad_enabled(mode == "train"):
        call(tiny)
        torch.set_num_threads(threads)  # a first numba launch may have reset the OpenMP thread count
        before = _rss_status()["VmRSS"]
        try:
            with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to the current RSS
                f.write("5")
            peak_of = lambda: _rss_status()["VmHWM"]  # noqa: E731
        except OSError:
            peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731
        call(x)
        peak = peak_of()
    print(json.dumps({"growth_bytes": max(peak - before, 0), "rss_before_bytes": before}))


def peak_memory(library: str, mode: str, scan: Optional[str], threads: int) -> Optional[float]:
    """Peak RSS growth in MB of one call in a fresh subprocess, or None if it failed."""
    code = ("from irregconv.bench.sparse import memory_child; "
            f"memory_child({library!r}, {mode!r}, {scan!r}, {threads})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        print(f"  (memory of {library} {mode} not measured: {result.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(lines[-1])["growth_bytes"] / 2 ** 20


def run_sparse_bench(args: argparse.Namespace) -> int:
    """Entry point of ``irregconv bench sparse``."""
    from ..compat import spconv as shim

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    real = _spconv()
    x, source = load_voxels(args.scan)
    native, ours_api, theirs = _models(real)
    for model in (native, ours_api, theirs):
        if model is not None:
            model.eval()
    print(f"irregconv bench sparse: {source}\n  {x.num_sites:,} voxels on grid {x.spatial_shape}, "
          f"SECOND-style 8x backbone, {threads} thread(s), spconv "
          + (f"{_spconv_version()} in the same process" if real is not None else "not installed")
          + f"\n  {allocator.describe()}")

    def spconv_forward():
        return theirs(real.SparseConvTensor(x.feats, x.coords, list(x.spatial_shape), x.batch_size))

    def shim_forward():
        return ours_api(shim.SparseConvTensor(x.feats, x.coords, list(x.spatial_shape), x.batch_size))

    with torch.no_grad():
        native(_fresh(x))  # numba compilation and its thread pool start here, before any timing
    torch.set_num_threads(threads)  # the first numba launch may reset the OpenMP thread count

    layers = profile_layers(native, x, max(3, args.repeat // 2))
    flops = sum(row["flops"] for row in layers)
    timed = {}
    with torch.no_grad():
        timed["forward"] = median_time(lambda: native(_fresh(x)), args.repeat, args.warmup)
        timed["cached"] = median_time(lambda: native(x), args.repeat, args.warmup)
        timed["shim"] = median_time(shim_forward, args.repeat, args.warmup)
        if real is not None:
            timed["spconv"] = median_time(spconv_forward, args.repeat, args.warmup)
    native.train()
    timed["train"] = median_time(lambda: _train_step(native, x), args.repeat, args.warmup)
    native.eval()

    memory = {}
    if not args.no_memory:
        for library, mode in (("irregconv", "forward"), ("irregconv", "train"), ("spconv", "forward")):
            if library == "irregconv" or real is not None:
                memory[(library, mode)] = peak_memory(library, mode, args.scan, threads)

    baseline = timed.get("spconv")
    gflops = lambda seconds, work=flops: work / seconds / 1e9  # noqa: E731
    mb = lambda key: "-" if memory.get(key) is None else f"{memory[key]:.0f}"  # noqa: E731
    ratio = lambda seconds: "-" if baseline is None else f"{baseline / seconds:.2f}x"  # noqa: E731
    rows = [
        ["irregconv forward (rulebooks built in the call)", 1e3 * timed["forward"], gflops(timed["forward"]),
         ratio(timed["forward"]), mb(("irregconv", "forward"))],
        ["irregconv forward, rulebooks cached", 1e3 * timed["cached"], gflops(timed["cached"]), ratio(timed["cached"]),
         "-"],
        ["irregconv.compat.spconv forward (same model code)", 1e3 * timed["shim"], gflops(timed["shim"]),
         ratio(timed["shim"]), "-"],
        ["spconv forward", "-" if baseline is None else 1e3 * baseline, "-" if baseline is None else gflops(baseline),
         "-" if baseline is None else "1.00x", mb(("spconv", "forward"))],
        ["irregconv forward + backward", 1e3 * timed["train"], gflops(timed["train"], 3 * flops), "-",
         mb(("irregconv", "train"))],
        ["spconv forward + backward", "n/a (its backward needs CUDA)", "-", "-", "-"],
    ]
    print(format_table(["case", "median ms", "GFLOP/s", "speed vs spconv", "peak +MB"], rows))
    sgemm = sgemm_gflops()
    rulebook_ms = sum(row["rulebook_ms"] for row in layers)
    print(f"useful work: {flops / 1e9:.2f} GFLOP forward (2 x pairs x C_in x C_out over the real rulebooks), "
          f"3x that for forward + backward; sgemm here: {sgemm:.0f} GFLOP/s (torch.mm 2048^3, same run), "
          f"so the forward limit is ~{1e3 * flops / sgemm / 1e9:.0f} ms")
    share = 1 - timed["cached"] / timed["forward"]
    print(f"rulebooks: {1e3 * (timed['forward'] - timed['cached']):.0f} ms of the {1e3 * timed['forward']:.0f} ms "
          f"forward ({100 * share:.0f}%, first call minus cached); summed per layer: {rulebook_ms:.0f} ms")
    print("per layer (eval, no grad, medians):")
    print(format_table(
        ["block", "kind", "N_in -> N_out", "C_in -> C_out", "pairs", "rulebook ms", "conv ms (cached)", "GFLOP/s",
         "bn+relu ms"],
        [[r["name"], r["kind"], f"{r['n_in']:,} -> {r['n_out']:,}", f"{r['c_in']} -> {r['c_out']}", f"{r['pairs']:,}",
          r["rulebook_ms"], r["cached_ms"], r["flops"] / r["cached_ms"] / 1e6, r["post_ms"]] for r in layers]))
    if baseline is not None:
        speedup = baseline / timed["forward"]
        print(f"target forward >= {TARGET_SPEEDUP:g}x spconv: {speedup:.2f}x, "
              f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}")
    train_ratio = timed["train"] / timed["forward"]
    print(f"target forward + backward <= {TARGET_TRAIN_RATIO:g}x own forward: {train_ratio:.2f}x, "
          f"{'met' if train_ratio <= TARGET_TRAIN_RATIO else 'NOT met'}")
    if memory.get(("irregconv", "forward")) is not None and memory.get(("spconv", "forward")) is not None:
        ok = memory[("irregconv", "forward")] <= memory[("spconv", "forward")]
        print(f"target peak memory <= spconv's: {mb(('irregconv', 'forward'))} MB vs {mb(('spconv', 'forward'))} MB, "
              f"{'met' if ok else 'NOT met'}")
    return 0


def _spconv_version() -> str:
    try:
        from importlib.metadata import version
        return version("spconv")
    except Exception:  # metadata missing for a source build
        return "(version unknown)"


def add_sparse_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sparse`` on the ``bench`` subparsers; ``set_defaults(run=run_sparse_bench)``."""
    parser = subparsers.add_parser("sparse", help="SECOND-style backbone on a KITTI scan vs spconv: time, GFLOP/s, "
                                                  "rulebook share, peak memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", default=None, help="point file (default: KITTI frame 000000 from $IRREGCONV_DATA)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats per case (default: 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default: 2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.set_defaults(run=run_sparse_bench)
    return parser


#: the name ``irregconv.cli`` looks up in every benchmark module
add_parser = add_sparse_bench_parser

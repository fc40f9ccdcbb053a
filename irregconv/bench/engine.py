"""``irregconv bench engine``: rulebook build and gather-scatter throughput on a real LiDAR scan.

Voxelizes the scan (default: KITTI ``kitti_training_000000.bin`` from ``$IRREGCONV_DATA/lidar``, else a
synthetic scene) at 0.05 x 0.05 x 0.1 m in [0, -40, -3] .. [70.4, 40, 1], then prints medians of:
the hash table + 3x3x3 submanifold rulebook build, the operator at C = 16, 32, 64 (forward, and forward +
backward) with the fused native kernel and with the three-pass path it replaces, the operator's GFLOP/s
(2 x pairs x C_in x C_out per forward) next to this machine's sgemm rate measured in the same run, and the
ratio against the targets of the engine issue.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from .. import allocator
from .timing import format_table, median_time, sgemm_gflops

POINT_RANGE = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
VOXEL_SIZE = (0.05, 0.05, 0.1)


def default_scan() -> Path | None:
    from ..data import data_root
    path = data_root() / "lidar" / "kitti_training_000000.bin"
    return path if path.exists() else None


def load_voxels(scan: str | None, seed: int = 0):
    """Voxelized scan as a SparseTensor (the synthetic scene generator when no scan is available)."""
    from ..data import read_points, voxelize
    path = Path(scan) if scan else default_scan()
    if path is not None:
        points, source = read_points(path), str(path)
    else:
        from ..data import generate_scene
        points, source = generate_scene(seed=seed).points, "synthetic scene (no scan found)"
    return voxelize(points, VOXEL_SIZE, POINT_RANGE).to_sparse_tensor(), source


def run(args: argparse.Namespace) -> None:
    from ..functional.sparse_conv import subm_rulebook
    from ..engine import gather_scatter
    from ..engine.backends import native
    from ..rulebook import KernelRegion
    from ..tensor import Sites

    torch.set_num_threads(args.threads)
    x, source = load_voxels(args.scan)
    region = KernelRegion.cube(3, 3)
    print(f"scan: {source}\nvoxels: {x.num_sites}, grid {x.spatial_shape}, threads: {args.threads}\n"
          f"{allocator.describe()}")

    def build():
        fresh = Sites(x.coords, x.spatial_shape, x.batch_size)
        return subm_rulebook(fresh, region, (1, 1, 1))
    build_time = median_time(build, repeat=args.repeat)
    rulebook = build()
    print(f"3x3x3 submanifold rulebook: {rulebook.num_pairs} pairs, built in {build_time * 1e3:.2f} ms "
          f"(median of {args.repeat}; target <= 5 ms)")

    sgemm = sgemm_gflops()
    rows = []
    for c in (16, 32, 64):
        feats = torch.randn(x.num_sites, c)
        weight = torch.randn(27, c, c) / c ** 0.5
        flops = 2.0 * rulebook.num_pairs * c * c
        feats_g, weight_g = feats.clone().requires_grad_(), weight.clone().requires_grad_()
        for path in ("native", "three-pass"):
            if path == "native" and not native.AVAILABLE:
                continue
            with native.disabled() if path == "three-pass" else contextlib.nullcontext():
                forward = median_time(lambda: gather_scatter(feats, weight, rulebook), repeat=args.repeat)
                train = median_time(lambda: gather_scatter(feats_g, weight_g, rulebook).sum().backward(),
                                    repeat=args.repeat)
            rate = flops / forward / 1e9
            rows.append([c, path, forward * 1e3, train * 1e3, rate, rate / sgemm])
    print(format_table(["C", "kernel", "forward ms", "fwd+bwd ms", "GFLOP/s", "of sgemm"], rows))
    print(f"sgemm (torch.mm 2048^3, same run): {sgemm:.0f} GFLOP/s; target: operator >= 50% of sgemm at C >= 32\n"
          f"native: the fused gather-GEMM-scatter kernel (engine/backends/native, "
          f"{'built' if native.AVAILABLE else 'NOT built: no C++ compiler at install'}); three-pass: gather, one "
          f"GEMM per offset, deterministic scatter (its fallback)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("engine", help="rulebook build time and gather-scatter GFLOP/s on a LiDAR scan")
    parser.add_argument("--scan", default=None, help="point file (default: KITTI frame 000000 from $IRREGCONV_DATA)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=9)
    parser.set_defaults(run=run)

"""Voxelize a LiDAR scan and run the SECOND sparse backbone on it: voxel statistics and timing.

    python examples/voxelize_and_run.py --scan $IRREGCONV_DATA/lidar/kitti_training_000000.bin
    python examples/voxelize_and_run.py                      # a synthetic 64-beam scene, no data needed

Defaults are KITTI's detection grid (0.05 x 0.05 x 0.1 m voxels in x [0, 70.4], y [-40, 40], z [-3, 1]), which
gives the backbone its usual (41, 1600, 1408) input grid. Every convolution of the backbone is a gather ->
GEMM -> scatter over a rulebook; the submanifold layers of a stage share one rulebook.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from irregconv.data import generate_scene, read_points, voxelize
from irregconv.models.second import SECONDBackbone8x


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", default=None, help="point file (.bin, .pcd.bin, .pcd, .ply, .npy); default: a "
                                                     "synthetic scene")
    parser.add_argument("--voxel-size", type=float, nargs=3, default=(0.05, 0.05, 0.1), metavar=("DX", "DY", "DZ"))
    parser.add_argument("--range", type=float, nargs=6, default=(0.0, -40.0, -3.0, 70.4, 40.0, 1.0),
                        metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"), help="point range in metres")
    parser.add_argument("--repeat", type=int, default=3, help="timed forward passes (default: 3)")
    args = parser.parse_args(argv)

    points = read_points(args.scan)[:, :4] if args.scan else generate_scene(seed=0).points
    source = args.scan or "synthetic scene (seed 0)"
    start = time.perf_counter()
    voxels = voxelize(points, args.voxel_size, args.range)
    voxelize_ms = 1e3 * (time.perf_counter() - start)
    z, y, x = voxels.spatial_shape
    counts = voxels.num_points.double()
    print(f"{source}: {len(points):,} points")
    print(f"voxelize: {voxels.num_voxels:,} voxels on grid (Z, Y, X) = {voxels.spatial_shape} in {voxelize_ms:.1f} ms; "
          f"{100.0 * voxels.num_voxels / (z * y * x):.3f} % of the grid occupied")
    print(f"  points per voxel: mean {counts.mean():.2f}, median {counts.median():.0f}, max {int(counts.max())}; "
          f"dropped: {voxels.dropped_out_of_range:,} out of range, {voxels.dropped_nonfinite:,} non-finite")

    torch.manual_seed(0)
    backbone = SECONDBackbone8x(points.shape[1]).eval()
    x_in = voxels.to_sparse_tensor()
    print("backbone stages (each: conv -> BatchNorm1d -> ReLU blocks):")
    with torch.no_grad():
        current = x_in
        for name, stage in backbone.named_children():
            current = stage(current)
            print(f"  {name:10s} {current.num_sites:8,} sites x {current.num_channels:3d} channels on "
                  f"{current.spatial_shape}")
        times = []
        for _ in range(max(args.repeat, 1)):
            fresh = voxels.to_sparse_tensor()      # new sites: rulebooks are built again, as for a new scan
            start = time.perf_counter()
            out = backbone(fresh)
            times.append(time.perf_counter() - start)
    print(f"forward (rulebooks included): median {1e3 * statistics.median(times):.0f} ms over {len(times)} runs "
          f"({torch.get_num_threads()} threads); output {out.num_sites:,} sites on {out.spatial_shape}, "
          f"BEV map {tuple(out.dense().flatten(1, 2).shape)}")


if __name__ == "__main__":
    main()

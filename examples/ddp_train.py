"""Data-parallel training of the sparse detector with torch.distributed (DistributedDataParallel).

    torchrun --nproc_per_node 2 examples/ddp_train.py --steps 20            # 2 processes on this machine
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        examples/ddp_train.py                                                # 4 machines x 8 GPUs
    python examples/ddp_train.py --steps 20                                 # 1 process, no torch.distributed

The backend is gloo on the CPU and nccl on GPUs (one GPU per process, ``LOCAL_RANK``). Step ``s`` trains on
the global batch of synthetic scenes with seeds ``s * B .. s * B + B - 1``; each process generates and
voxelizes only its shard (scene ``i`` goes to rank ``i % world_size``), runs the SECOND backbone and the
BEV head on it, and DDP averages the gradients. The loss normaliser (the number of objects) is summed over
the processes too, so that the averaged gradient is the gradient of the whole batch: with ``--batch-norm
none`` (no cross-scene statistics) N processes follow the same parameters as one process on the whole
batch, up to float rounding. ``--batch-norm local`` keeps per-process batch statistics, as most detector
code bases do.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from irregconv.apps.detector_training import augment, batch_loss, labelled_scans
from irregconv.io import save_atomic
from irregconv.models.detector import CenterPointDetector, DetectorConfig


def shard(step: int, global_batch: int, rank: int, world_size: int):
    """Seeds of the scenes of ``step`` that process ``rank`` of ``world_size`` trains on."""
    return [seed for seed in range(step * global_batch, (step + 1) * global_batch) if seed % world_size == rank]


def train(config: DetectorConfig, steps: int, global_batch: int, lr: float, seed: int, device: torch.device,
          rank: int = 0, world_size: int = 1, log=print, optimizer_name: str = "adamw") -> CenterPointDetector:
    """Train ``CenterPointDetector(config)`` for ``steps`` steps; with ``world_size > 1`` the default process
    group must be initialised. Returns the (unwrapped) model; every process ends with the same parameters."""
    if global_batch % world_size:
        raise ValueError(f"ddp_train: the global batch ({global_batch}) must divide by the number of processes "
                         f"({world_size})")
    torch.manual_seed(seed)                     # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = CenterPointDetector(config).to(device).train()
    network = model
    if world_size > 1:
        network = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        # oneDNN returns the 1 x 1 head convolutions' weight gradients in channels-last strides; DDP copies them
        # into its buckets, correctly, and warns about the copy at every step
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

    def normalise_count(count: int) -> float:
        total = torch.tensor(float(count), device=device)
        if world_size > 1:
            dist.all_reduce(total)
        return max(total.item(), 1.0) / world_size

    if optimizer_name == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    start = time.perf_counter()
    for step in range(steps):
        seeds = shard(step, global_batch, rank, world_size)
        scans = [augment(scan, np.random.default_rng(seed + 10_000 * step))
                 for seed, scan in zip(seeds, labelled_scans(seeds, config))]
        loss, _ = batch_loss(model, scans, normalise_count=normalise_count, network=network)
        optimizer.zero_grad()
        loss.backward()                         # DDP all-reduces (averages) the gradients here
        optimizer.step()
        batch_total = loss.detach() / world_size   # the processes' losses sum to the whole batch's loss
        if world_size > 1:
            dist.all_reduce(batch_total)
        log(f"step {step + 1}/{steps}  loss {batch_total.item():.4f}  "
            f"{(step + 1) * global_batch / (time.perf_counter() - start):.1f} scenes/s over {world_size} process(es)")
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4, help="global batch: scenes per step over all processes")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw",
                        help="sgd (momentum 0.9) moves every weight in proportion to its gradient; AdamW scales "
                             "tiny gradients up to a full step, float32 rounding of them too")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-norm", choices=("local", "none"), default="local")
    parser.add_argument("--voxel-size", type=float, nargs=3, default=DetectorConfig.voxel_size)
    parser.add_argument("--range", type=float, nargs=6, default=DetectorConfig.point_range)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--save", default=None, help="rank 0 saves the final state dict here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = torch.cuda.is_available() if args.device is None else args.device == "cuda"
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")   # address, port, rank from torchrun's env
    config = DetectorConfig(point_range=tuple(args.range), voxel_size=tuple(args.voxel_size),
                            batch_norm=args.batch_norm != "none")
    model = train(config, args.steps, args.batch, args.lr, args.seed, device, rank, world_size,
                  log=print if rank == 0 else (lambda message: None), optimizer_name=args.optimizer)
    if rank == 0 and args.save:
        save_atomic({k: v.cpu() for k, v in model.state_dict().items()}, args.save)   # whole or not at all
        print(f"saved {args.save}")
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

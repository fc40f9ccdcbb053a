"""A sparse backbone written against the spconv 2.x API, run on irregconv by changing one import, with a
checkpoint saved by spconv itself.

    python examples/spconv_drop_in.py                  # spconv installed: compare with spconv on this scene
    python examples/spconv_drop_in.py --checkpoint ck.pt   # load a state dict saved from the spconv version

``SparseBackbone`` below is code as it reads in a detector written for spconv (OpenPCDet style:
``SparseConvTensor``, ``SubMConv3d`` / ``SparseConv3d`` with ``indice_key``, ``SparseSequential`` with
``BatchNorm1d``). The one line that differs between the spconv and the irregconv version is the import:

    import spconv.pytorch as spconv            # spconv
    from irregconv.compat import spconv        # irregconv

The parameters keep spconv's names and weight layout ``[C_out, kD, kH, kW, C_in]``, so a spconv state dict
loads with ``load_state_dict`` unchanged. With spconv installed and no ``--checkpoint``, the script runs
itself once with ``--use-spconv`` (the other import) to save spconv's weights and output, then loads those
weights here and compares the outputs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

if "--use-spconv" in sys.argv:
    import spconv.pytorch as spconv
else:
    from irregconv.compat import spconv

from irregconv.data import generate_scene, voxelize  # noqa: E402  (after the switchable import on purpose)
from irregconv.io import save_atomic  # noqa: E402

VOXEL_SIZE = (0.1, 0.1, 0.2)
POINT_RANGE = (0.0, -16.0, -3.0, 32.0, 16.0, 2.0)


class SparseBackbone(nn.Module):
    """SubM -> strided conv -> SubM -> strided conv -> SubM -> height conv, each followed by BN and ReLU."""

    def __init__(self, in_channels: int = 4):
        super().__init__()

        def block(conv, channels):
            return spconv.SparseSequential(conv, nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01), nn.ReLU())

        self.net = spconv.SparseSequential(
            block(spconv.SubMConv3d(in_channels, 16, 3, padding=1, bias=False, indice_key="subm1"), 16),
            block(spconv.SparseConv3d(16, 32, 3, stride=2, padding=1, bias=False, indice_key="spconv2"), 32),
            block(spconv.SubMConv3d(32, 32, 3, padding=1, bias=False, indice_key="subm2"), 32),
            block(spconv.SparseConv3d(32, 64, 3, stride=2, padding=1, bias=False, indice_key="spconv3"), 64),
            block(spconv.SubMConv3d(64, 64, 3, padding=1, bias=False, indice_key="subm3"), 64),
            spconv.SparseConv3d(64, 64, (3, 1, 1), stride=(2, 1, 1), bias=False, indice_key="spconv_down2"),
        )

    def forward(self, features, indices, spatial_shape, batch_size):
        x = spconv.SparseConvTensor(features, indices, spatial_shape, batch_size)
        return self.net(x).dense()


def scene_voxels(seed: int):
    """Features ``[N, 4]`` and int32 indices ``[N, 4]`` ``(b, z, y, x)`` of a synthetic scene."""
    voxels = voxelize(generate_scene(seed).points, VOXEL_SIZE, POINT_RANGE)
    return voxels.feats, voxels.coords.int(), list(voxels.spatial_shape), voxels.batch_size


def save_spconv_reference(folder: Path, seed: int) -> None:
    """(Runs with real spconv) random weights and batch-norm statistics, saved with the output."""
    torch.set_num_threads(1)   # spconv's CPU kernels are deterministic with one thread only
    torch.manual_seed(seed)
    model = SparseBackbone()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.1, 0.1)
    model.eval()
    with torch.no_grad():
        output = model(*scene_voxels(seed))
    save_atomic(model.state_dict(), folder / "spconv_state.pt")
    save_atomic(output, folder / "spconv_output.pt")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="state dict saved from the spconv version of SparseBackbone")
    parser.add_argument("--seed", type=int, default=0, help="scene and weight seed (default: 0)")
    parser.add_argument("--use-spconv", metavar="FOLDER", default=None,
                        help="(internal) run with spconv itself and save its weights and output to FOLDER")
    args = parser.parse_args(argv)
    if args.use_spconv:
        save_spconv_reference(Path(args.use_spconv), args.seed)
        return

    model = SparseBackbone().eval()
    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        checkpoint = args.checkpoint
        if checkpoint is None:
            try:
                import spconv.pytorch  # noqa: F401
            except ImportError:
                print("spconv is not installed: saving this model's own state dict (spconv's format) as the "
                      "checkpoint to load; no output comparison")
                checkpoint = Path(tmp) / "state.pt"
                save_atomic(SparseBackbone().state_dict(), checkpoint)
            else:
                subprocess.run([sys.executable, __file__, "--use-spconv", tmp, "--seed", str(args.seed)], check=True)
                checkpoint = Path(tmp) / "spconv_state.pt"
                reference = torch.load(Path(tmp) / "spconv_output.pt", weights_only=True)
                print(f"spconv saved its state dict ({len(torch.load(checkpoint, weights_only=True))} tensors) and "
                      f"its output on scene {args.seed}")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        weight = state["net.0.0.weight"]
        print(f"loaded {checkpoint}: first conv weight {list(weight.shape)} ([C_out, kD, kH, kW, C_in], unchanged)")
        features, indices, spatial_shape, batch_size = scene_voxels(args.seed)
        with torch.no_grad():
            output = model(features, indices, spatial_shape, batch_size)
        print(f"irregconv: {len(features):,} voxels on {spatial_shape} -> dense output {list(output.shape)}")
        if reference is not None:
            error = (output - reference).abs().max().item()
            scale = reference.abs().max().item()
            print(f"max |irregconv - spconv| = {error:.2e} (outputs up to {scale:.2f})")
            if error > 1e-4 * max(scale, 1.0):
                raise SystemExit("outputs differ from spconv's")


if __name__ == "__main__":
    main()

"""Two DDP processes (gloo, 127.0.0.1) follow the same parameters as one process on the combined batch."""
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from irregconv.models.detector import CenterPointDetector, DetectorConfig

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ddp_train.py"
SMALL = ["--voxel-size", "0.2", "0.2", "0.2", "--range", "0", "-8", "-3", "16", "8", "2", "--batch-norm", "none",
         "--steps", "3", "--batch", "4", "--seed", "0", "--threads", "1", "--device", "cpu",
         # SGD: parameters follow the averaged gradients linearly. Under AdamW a gradient near zero is scaled up
         # to a full lr-sized step, so float32 rounding of the gradient sum (2 x 2 scenes vs 4) showed up as 1e-5
         "--optimizer", "sgd", "--lr", "0.05"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command):
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_on_the_whole_batch(tmp_path):
    single = _run([sys.executable, str(SCRIPT), *SMALL, "--save", str(tmp_path / "single.pt")])
    double = _run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                   "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(SCRIPT), *SMALL,
                   "--save", str(tmp_path / "ddp.pt")])
    assert "over 2 process(es)" in double and "over 1 process(es)" in single
    one, two = torch.load(tmp_path / "single.pt"), torch.load(tmp_path / "ddp.pt")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    # the whole batch's loss, summed over the processes, is the single process's loss
    losses = [[float(line.split("loss ")[1].split()[0]) for line in log.splitlines() if line.startswith("step")]
              for log in (single, double)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.manual_seed(0)
    initial = CenterPointDetector(DetectorConfig(point_range=(0, -8, -3, 16, 8, 2), voxel_size=(0.2, 0.2, 0.2),
                                                 batch_norm=False)).state_dict()
    assert max((one[k] - initial[k]).abs().max().item() for k in one) > 1e-3   # training moved the weights

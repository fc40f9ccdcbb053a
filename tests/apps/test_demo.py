import re
import subprocess
import sys

import pytest
import torch

from irregconv.apps.demo import FULL, QUICK
from irregconv.apps.detector_training import load_checkpoint


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "irregconv", "demo", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    ap = float(re.search(r"BEV AP@0\.5 \(Car, 40 recall points\) on 16 held-out scenes: (\S+)", out.stdout).group(1))
    accuracy = float(re.search(r"test accuracy (\S+) \(epoch", out.stdout).group(1))
    # the quick run trains a sixth as long as the full one (which reaches AP >= 0.7); it must already detect
    assert ap > 0.3 and accuracy > 0.7
    assert re.search(r"trained 60 steps x 4 scenes in \d+ s \([\d.]+ scenes/s", out.stdout)
    assert re.search(r"total time \d+ s", out.stdout)
    assert "detector [" in out.stderr                       # the progress bar
    for name in ("detector.pt", "detection_bev.png", "voxel_features_bev.png", "detector_training.png",
                 "gcn_training.png"):
        assert (tmp_path / name).stat().st_size > 10000, name
        assert str(tmp_path / name) in out.stdout
    assert str(tmp_path / "detector.pt.json") in out.stdout
    model = load_checkpoint(tmp_path / "detector.pt")
    assert sum(p.numel() for p in model.parameters()) > 0 and not model.training
    assert torch.isfinite(next(model.parameters())).all()


def test_quick_is_smaller_than_full():
    for field in ("train_scenes", "test_scenes", "steps"):
        assert getattr(QUICK, field) < getattr(FULL, field)

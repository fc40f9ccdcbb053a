import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "irregconv", "demo", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BEV AP@0.5 (Car)" in out.stdout and "test accuracy" in out.stdout
    assert '"point_range"' in (tmp_path / "detector.pt.json").read_text()
    for name in ("detector.pt", "detection_bev.png", "voxel_features_bev.png", "detector_training.png",
                 "gcn_training.png"):
        assert (tmp_path / name).stat().st_size > 1000, name

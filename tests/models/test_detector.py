import numpy as np
import torch

from irregconv.apps.detector_training import (LabelledScan, evaluate_detector, labelled_scans, load_checkpoint,
                                              save_checkpoint, train_detector)
from irregconv.models.detector import CenterPointDetector, DetectorConfig, build_targets, decode

SMALL = DetectorConfig(channels=(8, 8, 16), bev_channels=16)


def test_shapes_and_targets_round_trip():
    model = CenterPointDetector(SMALL)
    scans = labelled_scans([0, 1], SMALL)
    heatmap, regression = model(model.voxelize([s.points for s in scans]))
    assert heatmap.shape == (2, 1, 50, 50) and regression.shape == (2, 8, 50, 50)
    # decoding the targets themselves (as logits) gives back the boxes (yaw modulo pi)
    heat, reg, mask, count = build_targets(SMALL, [s.boxes for s in scans])
    assert count == sum(len(s.boxes) for s in scans) and int(mask.sum()) == count
    logits = torch.logit(heat.clamp(1e-6, 1 - 1e-6))
    for (boxes, scores), scan in zip(decode(SMALL, logits, reg, score_threshold=0.99), scans):
        assert len(boxes) == len(scan.boxes)
        order = np.lexsort((scan.boxes[:, 1], scan.boxes[:, 0]))
        mine = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]
        np.testing.assert_allclose(mine[:, :6], scan.boxes[order, :6], atol=1e-4)
        np.testing.assert_allclose(np.cos(2 * mine[:, 6]), np.cos(2 * scan.boxes[order, 6]), atol=1e-4)


def test_training_reduces_loss_and_is_deterministic(tmp_path):
    scans = labelled_scans(range(6), SMALL)
    runs = []
    for _ in range(2):
        model = CenterPointDetector(SMALL)
        torch.manual_seed(0)
        model = CenterPointDetector(SMALL)
        runs.append((train_detector(model, scans, steps=6, batch_size=2, seed=1, progress=False), model))
    assert runs[0][0] == runs[1][0]                       # same bits, run to run
    assert np.mean(runs[0][0][-2:]) < runs[0][0][0]
    model = runs[0][1]
    path = save_checkpoint(model, tmp_path / "det.pt")
    loaded = load_checkpoint(path)
    ap1, _ = evaluate_detector(model, scans[:2])
    ap2, _ = evaluate_detector(loaded, scans[:2])
    assert ap1 == ap2


def test_checkpoint_errors(tmp_path):
    import pytest
    model = CenterPointDetector(SMALL)
    path = save_checkpoint(model, tmp_path / "det.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a torch checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_checkpoint(tmp_path / "nothing.pt")

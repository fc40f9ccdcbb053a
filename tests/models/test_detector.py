import json

import numpy as np
import pytest
import torch
from torch import nn

from irregconv.apps.detector_training import (LabelledScan, augment, evaluate_detector, labelled_scans, load_checkpoint,
                                              save_checkpoint, train_detector)
from irregconv.data.boxes import bev_iou
from irregconv.models.detector import (REGRESSION_CHANNELS, CenterPointDetector, DetectorConfig, build_targets,
                                       decode, detection_loss, rotated_nms)
from irregconv.testing import DEVICES

#: 16 m x 16 m at 0.2 m: a 25 x 80 x 80 grid, a 10 x 10 BEV map of 1.6 m cells
SMALL = DetectorConfig(point_range=(0.0, -8.0, -3.0, 16.0, 8.0, 2.0), voxel_size=(0.2, 0.2, 0.2), neck_channels=8)
TWO_CLASSES = DetectorConfig(point_range=SMALL.point_range, voxel_size=SMALL.voxel_size, neck_channels=8,
                             class_names=("Car", "Pedestrian"))


def _scan(rng, num_points=400, config=SMALL):
    lo, hi = np.array(config.point_range[:3]), np.array(config.point_range[3:])
    xyz = rng.uniform(lo, hi, size=(num_points, 3))
    return np.concatenate([xyz, rng.uniform(0, 1, (num_points, 1))], axis=1).astype(np.float32)


def _boxes(rng, count, config=SMALL):
    """Boxes inside the range with centres in BEV cells 4 apart (6.4 m), so that they do not overlap."""
    h, w = config.bev_shape
    lattice = np.array([i * w + j for i in range(0, h, 4) for j in range(0, w, 4)])
    cells = rng.choice(lattice, count, replace=False)
    cx, cy = config.bev_cell
    x = config.point_range[0] + (cells % w + rng.uniform(0.05, 0.95, count)) * cx
    y = config.point_range[1] + (cells // w + rng.uniform(0.05, 0.95, count)) * cy
    size = rng.uniform([3.5, 1.6, 1.4], [5.0, 2.1, 1.8], (count, 3))
    return np.column_stack([x, y, rng.uniform(-1.5, -0.5, count), size, rng.uniform(-np.pi, np.pi, count)])


def test_default_geometry():
    config = DetectorConfig()
    assert config.grid == (25, 320, 320) and config.bev_shape == (40, 40) and config.bev_depth == 1
    assert config.bev_cell == pytest.approx((0.8, 0.8))


@pytest.mark.parametrize("config", [SMALL, DetectorConfig(point_range=(0, -6.4, -3, 12.8, 6.4, 1.1),
                                                          voxel_size=(0.1, 0.1, 0.1))])
def test_backbone_output_matches_config_geometry(config):
    model = CenterPointDetector(config)
    voxels = model.voxelize([_scan(np.random.default_rng(0), config=config)])
    out = model.backbone(voxels)
    assert out.spatial_shape == (config.bev_depth, *config.bev_shape)
    heatmap, regression = model(voxels)
    assert heatmap.shape == (1, config.num_classes, *config.bev_shape)
    assert regression.shape == (1, REGRESSION_CHANNELS, *config.bev_shape)


@pytest.mark.parametrize("kwargs, match", [
    (dict(voxel_size=(0.15, 0.15, 0.2)), "multiples of 8"),
    (dict(point_range=(0, -16, -3, 32, 16, -1)), "too few for the backbone"),
    (dict(voxel_size=(0.1, -0.1, 0.2)), "voxel_size"),
    (dict(class_names=()), "class_names"),
    (dict(neck_channels=0), "neck_channels"),
    (dict(gaussian_radius=1.5), "gaussian_radius"),
])
def test_config_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=f"DetectorConfig.*{match}"):
        DetectorConfig(**kwargs)


def test_config_json_round_trip_and_unknown_keys():
    values = json.loads(json.dumps(TWO_CLASSES.to_dict()))
    assert DetectorConfig.from_dict(values) == TWO_CLASSES
    with pytest.raises(ValueError, match="unknown keys \\['voxel'\\]"):
        DetectorConfig.from_dict({**values, "voxel": 0.1})


def test_bad_inputs_raise():
    model = CenterPointDetector(SMALL)
    with pytest.raises(ValueError, match="voxelize: scans\\[0\\].*4 columns"):
        model.voxelize([np.zeros((5, 3), np.float32)])
    other = CenterPointDetector(DetectorConfig(point_range=(0, -8, -3, 16, 8, 2), voxel_size=(0.1, 0.1, 0.2)))
    with pytest.raises(ValueError, match="grid"):
        model(other.voxelize([_scan(np.random.default_rng(0))]))
    with pytest.raises(TypeError, match="SparseTensor"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="labels\\[0\\]"):
        build_targets(SMALL, [np.zeros((1, 7)) + 1], [np.array([1])])
    with pytest.raises(ValueError, match="non-positive size"):
        build_targets(SMALL, [np.array([[1.0, 0, 0, 0, 1, 1, 0]])])


def test_targets_gaussian_blob_and_encoding():
    config = SMALL
    box = np.array([[4.0, 1.0, -1.0, 4.4, 1.8, 1.5, 0.3]])
    targets = build_targets(config, [box, np.zeros((0, 7))])
    ix, iy = int(4.0 // 1.6), int((1.0 + 8.0) // 1.6)
    heat = targets.heatmap[0, 0]
    assert heat[iy, ix] == 1 and int((heat == 1).sum()) == 1 and targets.num_objects == 1
    sigma = (2 * config.gaussian_radius + 1) / 6
    torch.testing.assert_close(heat[iy + 1, ix + 2], torch.tensor(np.exp(-5 / (2 * sigma ** 2)), dtype=torch.float32))
    assert heat[iy, ix + config.gaussian_radius + 1] == 0
    expected = [4.0 / 1.6 - ix, 9.0 / 1.6 - iy, -1.0, np.log(4.4), np.log(1.8), np.log(1.5), np.sin(0.6), np.cos(0.6)]
    torch.testing.assert_close(targets.regression[0, :, iy, ix], torch.tensor(expected, dtype=torch.float32))
    assert targets.mask.sum() == 1 and targets.heatmap[1].sum() == 0
    outside = build_targets(config, [np.array([[30.0, 0, -1, 4, 2, 1.5, 0]])])
    assert outside.num_objects == 0 and outside.heatmap.sum() == 0


@pytest.mark.parametrize("nms", ["maxpool", "rotated"])
@pytest.mark.parametrize("seed", [0, 1])
def test_decoding_the_targets_gives_back_the_boxes(nms, seed):
    rng = np.random.default_rng(seed)
    boxes = [_boxes(rng, 6, TWO_CLASSES), _boxes(rng, 3, TWO_CLASSES)]
    labels = [rng.integers(0, 2, 6), rng.integers(0, 2, 3)]
    targets = build_targets(TWO_CLASSES, boxes, labels)
    logits = torch.logit(targets.heatmap.double().clamp(1e-9, 1 - 1e-9))
    for found, want, want_labels in zip(decode(TWO_CLASSES, logits, targets.regression, score_threshold=0.99, nms=nms),
                                        boxes, labels):
        assert len(found.boxes) == len(want)
        iou = bev_iou(found.boxes, want)
        match = iou.argmax(axis=1)
        np.testing.assert_allclose(iou.max(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(found.boxes[:, :6], want[match, :6], atol=1e-5)
        np.testing.assert_allclose(np.cos(2 * found.boxes[:, 6]), np.cos(2 * want[match, 6]), atol=1e-5)
        np.testing.assert_array_equal(found.labels, want_labels[match])


def test_decode_threshold_max_objects_and_errors():
    heat = torch.full((1, 1, 10, 10), -10.0)
    heat[0, 0, 2, 3], heat[0, 0, 7, 7], heat[0, 0, 7, 8] = 3.0, 2.0, 1.0   # (7, 8) is not a 3x3 peak
    reg = torch.zeros(1, 8, 10, 10)
    reg[0, 3] = np.log(4.0)                                              # 4 m x 1 m boxes along x
    found = decode(SMALL, heat, reg, score_threshold=0.5)[0]
    np.testing.assert_allclose(found.scores, torch.sigmoid(torch.tensor([3.0, 2.0])).double().numpy())
    np.testing.assert_allclose(found.boxes[:, :2], [[3 * 1.6, -8 + 2 * 1.6], [7 * 1.6, -8 + 7 * 1.6]])
    assert len(decode(SMALL, heat, reg, score_threshold=0.5, max_objects=1)[0].boxes) == 1
    assert len(decode(SMALL, heat, reg, score_threshold=0.5, nms="rotated")[0].boxes) == 2   # (7, 8) overlaps (7, 7)
    with pytest.raises(ValueError, match="nms must be one of"):
        decode(SMALL, heat, reg, nms="soft")
    with pytest.raises(ValueError, match="decode: expected heatmap"):
        decode(SMALL, heat[:, :, :5], reg)


def _greedy_nms_properties(boxes, scores, keep, threshold):
    iou = bev_iou(boxes, boxes)
    kept = set(keep.tolist())
    assert list(keep) == sorted(keep, key=lambda i: -scores[i])
    for i in kept:                                   # kept boxes do not suppress each other
        assert all(iou[i, j] <= threshold for j in kept if j != i)
    for i in set(range(len(boxes))) - kept:          # every dropped box is covered by a better kept one
        assert any(iou[i, j] > threshold and scores[j] > scores[i] for j in kept)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.5])
def test_rotated_nms_is_greedy_nms(seed, threshold):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 8, (30, 2))
    boxes = np.column_stack([centres, np.zeros(30), rng.uniform(1, 4, (30, 2)), np.ones(30),
                             rng.uniform(-np.pi, np.pi, 30)])
    scores = rng.permutation(30) / 30.0
    keep = rotated_nms(boxes, scores, threshold)
    _greedy_nms_properties(boxes, scores, keep, threshold)


def test_rotated_nms_edge_cases():
    box = np.array([[0, 0, 0, 4, 2, 1.5, 0.2]])
    np.testing.assert_array_equal(rotated_nms(np.repeat(box, 3, 0), [0.5, 0.9, 0.9], 0.5), [1])
    assert rotated_nms(np.zeros((0, 7)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="iou_threshold"):
        rotated_nms(box, [1.0], 1.5)
    with pytest.raises(ValueError, match="1 boxes but 2 scores"):
        rotated_nms(box, [1.0, 2.0], 0.5)


def _reference_loss(logits, regression, targets, weight=2.0):
    """The focal + L1 loss written out element by element in float64."""
    p = torch.sigmoid(logits.double())
    y = targets.heatmap.double()
    focal = 0.0
    for value, target in zip(p.flatten().tolist(), y.flatten().tolist()):
        if target == 1:
            focal -= (1 - value) ** 2 * np.log(value)
        else:
            focal -= (1 - target) ** 4 * value ** 2 * np.log(1 - value)
    l1 = 0.0
    for b, i, j in targets.mask.nonzero().tolist():
        l1 += (regression[b, :, i, j].double() - targets.regression[b, :, i, j].double()).abs().sum().item()
    n = max(targets.num_objects, 1)
    return (focal + weight * l1) / n


def test_loss_matches_elementwise_reference_and_gradcheck():
    rng = np.random.default_rng(0)
    targets = build_targets(SMALL, [_boxes(rng, 3), _boxes(rng, 1)])
    logits = torch.randn(2, 1, 10, 10, dtype=torch.float64) * 3
    regression = torch.randn(2, 8, 10, 10, dtype=torch.float64)
    loss, parts = detection_loss(logits, regression, targets)
    torch.testing.assert_close(loss, torch.tensor(_reference_loss(logits, regression, targets), dtype=torch.float64),
                               rtol=1e-7, atol=1e-9)
    assert loss.item() == pytest.approx(parts["heatmap"] + 2 * parts["regression"])
    half, _ = detection_loss(logits, regression, targets, normaliser=2 * targets.num_objects)
    torch.testing.assert_close(half, loss / 2)
    perfect, parts = detection_loss(logits, targets.regression.double(), targets)
    assert parts["regression"] == 0
    inputs = (logits[:, :, :4, :4].clone().requires_grad_(), regression[:, :, :4, :4].clone().requires_grad_())
    small = build_targets(DetectorConfig(point_range=(0, -3.2, -3, 6.4, 3.2, 2), voxel_size=(0.2, 0.2, 0.2)),
                          [np.array([[2.0, 0.5, -1, 4, 2, 1.5, 0.3]]), np.zeros((0, 7))])
    assert torch.autograd.gradcheck(lambda a, b: detection_loss(a, b, small)[0], inputs)


def test_without_batch_norm_scenes_do_not_interact():
    config = DetectorConfig(point_range=SMALL.point_range, voxel_size=SMALL.voxel_size, neck_channels=8,
                            batch_norm=False)
    model = CenterPointDetector(config).train()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    rng = np.random.default_rng(0)
    a, b = _scan(rng), _scan(rng)
    together = model(model.voxelize([a, b]))
    alone = model(model.voxelize([a]))
    for joint, single in zip(together, alone):
        torch.testing.assert_close(joint[:1], single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_forward_backward_on_device(device):
    model = CenterPointDetector(SMALL).to(device)
    rng = np.random.default_rng(0)
    scans = [_scan(rng), _scan(rng)]
    heatmap, regression = model(model.voxelize(scans))
    assert heatmap.device.type == device
    loss, _ = detection_loss(heatmap, regression, build_targets(SMALL, [_boxes(rng, 2), _boxes(rng, 1)]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_augment_moves_boxes_with_points():
    rng = np.random.default_rng(0)
    boxes = _boxes(rng, 3, SMALL).astype(np.float32)
    # points on the box centres follow the boxes through mirror, rotation and scaling
    scan = LabelledScan(np.column_stack([boxes[:, :3], np.zeros(3)]).astype(np.float32), boxes, np.zeros(3, np.int64))
    for seed in range(4):
        moved = augment(scan, np.random.default_rng(seed))
        np.testing.assert_allclose(moved.points[:, :3], moved.boxes[:, :3], atol=1e-5)
        np.testing.assert_allclose(moved.boxes[:, 3] / moved.boxes[:, 4], boxes[:, 3] / boxes[:, 4], rtol=1e-5)


def test_labelled_scans_keep_visible_objects_in_range():
    scans = labelled_scans(range(3), TWO_CLASSES)
    for scan in scans:
        assert scan.points.shape[1] == 4 and len(scan.boxes) == len(scan.labels)
        assert ((scan.boxes[:, 0] >= 0) & (scan.boxes[:, 0] < 16) & (np.abs(scan.boxes[:, 1]) <= 8)).all()
    wide = labelled_scans(range(3), DetectorConfig(class_names=("Pedestrian", "Car")))
    assert {0, 1} == set(np.concatenate([s.labels for s in wide]).tolist())
    with pytest.raises(ValueError, match="Truck"):
        labelled_scans([0], DetectorConfig(class_names=("Truck",)))


def _train(scans, steps=4):
    torch.manual_seed(0)
    model = CenterPointDetector(SMALL)
    return model, train_detector(model, scans, steps=steps, batch_size=2, lr=1e-2, seed=1, progress=False)


def test_training_is_deterministic_and_checkpoints_round_trip(tmp_path):
    scans = labelled_scans(range(4), SMALL)
    model, losses = _train(scans)
    again, losses_again = _train(scans)
    assert losses == losses_again
    for p, q in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)
    path = save_checkpoint(model, tmp_path / "sub" / "det.pt")
    assert json.loads((tmp_path / "sub" / "det.pt.json").read_text())["voxel_size"] == [0.2, 0.2, 0.2]
    loaded = load_checkpoint(path)
    assert not loaded.training
    ap, predictions = evaluate_detector(model, scans[:2], score_threshold=0.0)
    ap_loaded, predictions_loaded = evaluate_detector(loaded, scans[:2], score_threshold=0.0)
    assert ap == ap_loaded
    for p, q in zip(predictions, predictions_loaded):
        np.testing.assert_array_equal(p.boxes, q.boxes)


def test_training_reduces_the_loss():
    scans = labelled_scans(range(2), SMALL)
    _, losses = _train(scans, steps=6)
    assert np.mean(losses[-2:]) < losses[0]


def test_checkpoint_errors(tmp_path):
    path = save_checkpoint(CenterPointDetector(SMALL), tmp_path / "det.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a torch checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_checkpoint(tmp_path / "nothing.pt")
    path.write_bytes(data)
    (tmp_path / "det.pt.json").write_text(json.dumps({**SMALL.to_dict(), "neck_channels": 16}))
    with pytest.raises(ValueError, match="do not fit its config"):
        load_checkpoint(path)
    (tmp_path / "det.pt.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid detector config"):
        load_checkpoint(path)

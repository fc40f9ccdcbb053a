import numpy as np
import pytest

from irregconv.data.boxes import (average_precision, bev_corners, bev_iou, points_in_boxes, precision_recall,
                                 quad_intersection_area)


def test_iou_axis_aligned_and_rotated():
    a = np.array([[0, 0, 0, 4, 2, 1, 0.0]])
    b = np.array([[1, 0, 0, 4, 2, 1, 0], [0, 0, 0, 2, 4, 1, np.pi / 2], [0, 0, 0, 4, 2, 1, np.pi / 2],
                  [10, 0, 0, 4, 2, 1, 0]])
    np.testing.assert_allclose(bev_iou(a, b), [[6 / 10, 1.0, 4 / 12, 0.0]], atol=1e-12)
    sq = np.array([[0, 0, 0, 2, 2, 1, 0.0]])
    diamond = np.array([[0, 0, 0, 2, 2, 1, np.pi / 4]])  # overlap = regular octagon, area 8(sqrt2 - 1)
    inter = 8 * (np.sqrt(2) - 1)
    np.testing.assert_allclose(bev_iou(sq, diamond), [[inter / (8 - inter)]], rtol=1e-9)


def test_corners_counter_clockwise():
    c = bev_corners(np.array([[1, 2, 0, 4, 2, 1, 0.0]]))[0]
    np.testing.assert_allclose(c, [[3, 3], [-1, 3], [-1, 1], [3, 1]])


def test_average_precision():
    gt = [np.array([[0, 0, 0, 4, 2, 1, 0.0], [10, 0, 0, 4, 2, 1, 0]])]
    assert average_precision(gt, [np.array([0.9, 0.8])], gt) == 1.0
    # one hit ranked below a false positive: precision 1/2 at recall 1/2, recall 1 never reached
    pred = [np.array([[50, 0, 0, 4, 2, 1, 0.0], [0, 0, 0, 4, 2, 1, 0]])]
    assert average_precision(pred, [np.array([0.9, 0.8])], gt) == pytest.approx(0.5 * 20 / 40)
    # a duplicate detection of one object is a false positive
    dup = [np.array([[0, 0, 0, 4, 2, 1, 0.0], [0.1, 0, 0, 4, 2, 1, 0]])]
    assert average_precision(dup, [np.array([0.9, 0.8])], gt) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no ground-truth"):
        average_precision([np.zeros((0, 7))], [np.zeros(0)], [np.zeros((0, 7))])


def _random_boxes(rng, n, spread=3.0):
    return np.concatenate([rng.uniform(-spread, spread, (n, 2)), rng.uniform(-1, 1, (n, 1)),
                           rng.uniform(0.3, 5, (n, 3)), rng.uniform(-np.pi, np.pi, (n, 1))], axis=1)


def _grid_intersection(a, b, cells=300):
    """Intersection area of two BEV boxes by counting the centres of a fine grid inside both, and the
    grid's cell size."""
    corners = np.concatenate([bev_corners(a[None])[0], bev_corners(b[None])[0]])
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    dx, dy = (x1 - x0) / cells, (y1 - y0) / cells
    x, y = np.meshgrid(x0 + dx * (np.arange(cells) + 0.5), y0 + dy * (np.arange(cells) + 0.5))
    grid = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    flat = np.stack([a, b]).copy()
    flat[:, 2], flat[:, 5] = 0, 1
    return points_in_boxes(grid, flat).all(axis=1).sum() * dx * dy, max(dx, dy)


def test_intersection_against_a_grid_oracle():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 20, spread=1.5), _random_boxes(rng, 20, spread=1.5)
    areas = quad_intersection_area(bev_corners(a), bev_corners(b))
    assert (areas > 0).sum() >= 15
    for k in range(len(a)):
        expected, cell = _grid_intersection(a[k], b[k])
        # a grid count errs by at most the cells along the intersection's boundary (boundary x cell);
        # the errors of those cells mostly cancel: 0.003 x boundary x cell at most on these pairs
        boundary = 2 * (a[k, 3] + a[k, 4] + b[k, 3] + b[k, 4])
        assert abs(areas[k] - expected) <= 0.02 * boundary * cell, k


def test_iou_invariances():
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 25)
    iou = bev_iou(a, b)
    assert iou.shape == (30, 25) and (iou >= 0).all() and (iou <= 1 + 1e-12).all() and (iou > 0).any()
    np.testing.assert_allclose(bev_iou(b, a), iou.T, rtol=1e-9, atol=1e-12)
    flipped = b.copy()
    flipped[:, 6] += np.pi                       # a box turned by 180 degrees covers the same area
    np.testing.assert_allclose(bev_iou(a, flipped), iou, rtol=1e-9, atol=1e-12)
    angle, shift = 0.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def move(boxes):
        out = boxes.copy()
        out[:, :2] = boxes[:, :2] @ rot.T + shift
        out[:, 6] += angle
        return out
    np.testing.assert_allclose(bev_iou(move(a), move(b)), iou, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.diag(bev_iou(a, a)), 1.0, rtol=1e-12)
    lifted = b.copy()
    lifted[:, 2] += 10                           # BEV ignores height
    np.testing.assert_allclose(bev_iou(a, lifted), iou, rtol=1e-12)


def test_iou_special_cases():
    big = np.array([[0, 0, 0, 4, 4, 1, 0.3]])
    small = np.array([[0.2, -0.1, 0, 1, 0.5, 1, 1.1]])             # fully inside
    np.testing.assert_allclose(bev_iou(big, small), [[0.5 / 16]], rtol=1e-12)
    touching = np.array([[2, 0, 0, 2, 2, 1, 0.0]])                 # shares the edge x = 1 with the square
    assert bev_iou(np.array([[0, 0, 0, 2, 2, 1, 0.0]]), touching)[0, 0] == pytest.approx(0, abs=1e-12)
    cross = np.array([[0, 0, 0, 4, 1, 1, 0.0], [0, 0, 0, 4, 1, 1, np.pi / 2]])   # a plus sign: overlap 1
    np.testing.assert_allclose(bev_iou(cross[:1], cross[1:]), [[1 / 7]], rtol=1e-12)
    assert bev_iou(np.zeros((0, 7)), big).shape == (0, 1)
    assert bev_iou(big, []).shape == (1, 0)
    with pytest.raises(ValueError, match=r"bev_iou: boxes_b must be boxes \[M, 7\]"):
        bev_iou(big, np.zeros((2, 5)))


def test_points_in_boxes():
    box = np.array([[10, 5, 0, 4, 2, 1.5, np.pi / 2]])             # heading +y: 4 m along y, 2 m along x
    points = np.array([[10, 6.9, 0], [10, 7.1, 0], [10.9, 5, 0.7], [11.1, 5, 0], [10, 5, 0.8], [10, 3, -0.75]])
    assert points_in_boxes(points, box)[:, 0].tolist() == [True, False, True, False, False, True]
    with pytest.raises(ValueError, match=r"points must be \[N, >= 3\]"):
        points_in_boxes(np.zeros((3, 2)), box)


def _scene_boxes(xs):
    return np.array([[x, 0, 0, 4, 2, 1.5, 0.0] for x in xs]).reshape(-1, 7)


def test_average_precision_hand_computed():
    gt = [_scene_boxes([0, 10, 20]), _scene_boxes([0])]
    # ranked: TP, FP, TP, FP, TP over 4 objects: precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/4 .. 3/4
    pred = [_scene_boxes([0, 50, 10, 60]), _scene_boxes([0])]
    scores = [np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.5])]
    precision, recall = precision_recall(pred, scores, gt)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    np.testing.assert_allclose(recall, [1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4])
    # interpolated: 1 up to recall 1/4, 2/3 up to 1/2, 3/5 up to 3/4, then 0
    assert average_precision(pred, scores, gt) == pytest.approx((10 * 1 + 10 * 2 / 3 + 10 * 3 / 5) / 40)
    assert average_precision(pred, scores, gt, recall_points=4) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)


def test_average_precision_thresholds_and_edge_cases():
    gt = [_scene_boxes([0])]
    shifted = [_scene_boxes([1])]                                  # IoU 3/5
    assert average_precision(shifted, [np.array([1.0])], gt, iou_threshold=0.5) == 1.0
    assert average_precision(shifted, [np.array([1.0])], gt, iou_threshold=0.7) == 0.0
    assert average_precision([np.zeros((0, 7))], [np.zeros(0)], gt) == 0.0       # nothing detected
    # detections in a scene without objects are false positives
    two = [_scene_boxes([0]), np.zeros((0, 7))]
    assert average_precision([_scene_boxes([0]), _scene_boxes([5])], [np.array([0.5]), np.array([0.9])],
                             two) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one entry per scene"):
        average_precision(gt, [], gt)
    with pytest.raises(ValueError, match="scene 0 has 1 boxes but 2 scores"):
        average_precision(gt, [np.array([0.1, 0.2])], gt)
    with pytest.raises(ValueError, match=r"iou_threshold must be in \(0, 1\]"):
        average_precision(gt, [np.array([0.1])], gt, iou_threshold=0)
    with pytest.raises(ValueError, match="recall_points must be a positive int"):
        average_precision(gt, [np.array([0.1])], gt, recall_points=0)

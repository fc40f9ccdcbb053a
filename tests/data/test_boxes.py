import numpy as np
import pytest

from irregconv.data.boxes import average_precision, bev_corners, bev_iou


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

"""functional.dense_conv: weight layout vs the testing oracle, full-grid rulebooks (shapes, transposed
output padding, engine vs the reference loop), dense_conv vs F.conv*, and the two alternative
formulations vs F.conv2d / F.conv_transpose2d with unequal factors per axis."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.engine.reference import gather_scatter_reference
from irregconv.functional.dense_conv import (dense_conv, dense_conv_rulebook, engine_weight,
                                             pixel_shuffle_conv_transpose2d, space_to_batch_conv2d)
from irregconv.testing import weight_from_torch


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("groups,kernel", [(1, (3, 2)), (2, (3, 3)), (4, (1, 2, 3))])
def test_engine_weight_matches_oracle(transposed, groups, kernel):
    torch.manual_seed(0)
    weight = torch.randn(8, 8 // groups, *kernel, dtype=torch.float64)
    ours = engine_weight(weight, groups, transposed)
    oracle = weight_from_torch(weight, groups, transposed=transposed)
    torch.testing.assert_close(ours.squeeze(1) if groups == 1 else ours, oracle, rtol=0, atol=0)


@pytest.mark.parametrize("transposed", [False, True])
def test_rulebook_shapes_and_reference(transposed):
    torch.manual_seed(1)
    kernel, stride, padding, dilation, output_padding = (3, 2), (2, 3), (1, 0), (1, 2), (1, 2)
    rb = dense_conv_rulebook((4, 5), 2, kernel, stride, padding, dilation, transposed,
                             output_padding if transposed else None)
    if transposed:
        expected = tuple((n - 1) * s - 2 * p + d * (k - 1) + o + 1 for n, k, s, p, d, o in
                         zip((4, 5), kernel, stride, padding, dilation, output_padding))
    else:
        expected = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                         zip((4, 5), kernel, stride, padding, dilation))
    assert rb.geometry.out_spatial_shape == expected
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    weight = torch.randn(3, 4, *kernel, dtype=torch.float64) if transposed else torch.randn(4, 3, *kernel,
                                                                                           dtype=torch.float64)
    out = dense_conv(x, weight, None, rb, 1, transposed)
    if transposed:
        ref = F.conv_transpose2d(x, weight, None, stride, padding, output_padding, 1, dilation)
    else:
        ref = F.conv2d(x, weight, None, stride, padding, dilation)
    torch.testing.assert_close(out, ref, rtol=1e-7, atol=1e-9)
    rows = x.movedim(1, -1).reshape(-1, 3)
    loop = gather_scatter_reference(rows, engine_weight(weight, 1, transposed).squeeze(1), rb)
    torch.testing.assert_close(out.movedim(1, -1).reshape(-1, 4), loop, rtol=1e-7, atol=1e-9)


def test_space_to_batch_with_unequal_dilations():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    weight, bias = torch.randn(6, 2, 3, 2, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(space_to_batch_conv2d(x, weight, bias, (3, 2), groups=2),
                               F.conv2d(x, weight, bias, 1, 0, (3, 2), 2), rtol=1e-7, atol=1e-9)


def test_pixel_shuffle_with_unequal_strides():
    torch.manual_seed(3)
    x, weight = torch.randn(2, 4, 3, 5, dtype=torch.float64), torch.randn(4, 3, 5, 4, dtype=torch.float64)
    out = pixel_shuffle_conv_transpose2d(x, weight, None, (3, 2), (2, 1), (2, 1), groups=2)
    ref = F.conv_transpose2d(x, weight, None, (3, 2), (2, 1), (2, 1), 2)
    torch.testing.assert_close(out, ref, rtol=1e-7, atol=1e-9)

"""ACBlock2d: parity with F.conv2d + F.batch_norm (train and eval; outputs and gradients), fuse()
equal in eval mode, gradcheck, shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import ACBlock2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _reference(block, x, batch_norm):
    """The three branches written with ``torch.nn.functional``: square, 1 x k and k x 1 kernels."""
    p, s, g = block.kernel_size[0] // 2, block.stride, block.groups
    square = F.conv2d(x, block.square.weight, None, s, (p, p), 1, g)
    horizontal = F.conv2d(x, block.horizontal.weight, None, s, (0, p), 1, g)
    vertical = F.conv2d(x, block.vertical.weight, None, s, (p, 0), 1, g)
    train = block.training
    return (batch_norm(square, block.square_bn, train) + batch_norm(horizontal, block.horizontal_bn, train)
            + batch_norm(vertical, block.vertical_bn, train))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kernel_size,stride,groups", [(3, 1, 1), (5, 2, 2)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(train, kernel_size, stride, groups, device, batch_norm, randomise_batch_norms):
    block = randomise_batch_norms(ACBlock2d(4, 6, kernel_size, stride, groups)).to(device, torch.float64).train(train)
    x = torch.randn(2, 4, 7, 8, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = block(x), _reference(block, x, batch_norm)
    assert_close_with_grads(out, ref, [x, *block.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kernel_size,stride,groups", [(3, 1, 1), (5, 2, 2), (1, 1, 1)])
def test_fuse_equals_block_in_eval_mode(kernel_size, stride, groups, randomise_batch_norms):
    block = randomise_batch_norms(ACBlock2d(4, 6, kernel_size, stride, groups)).double().eval()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    fused = block.fuse()
    assert isinstance(fused, torch.nn.Conv2d) and fused.weight.shape == (6, 4 // groups, kernel_size, kernel_size)
    torch.testing.assert_close(fused(x), block(x), rtol=1e-7, atol=1e-9)


def test_gradcheck():
    block = ACBlock2d(2, 3).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


def test_shape_repr_and_counts():
    block = ACBlock2d(8, 16)
    assert block(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    assert ACBlock2d(8, 16, stride=2)(torch.randn(2, 8, 9, 7)).shape == (2, 16, 5, 4)
    assert repr(block).startswith("ACBlock2d(\n  8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)\n")
    assert block.num_parameters() == 16 * 8 * (9 + 3 + 3) + 3 * 2 * 16
    assert block.macs((8, 9, 7)) == 16 * 8 * 15 * 9 * 7
    assert block.macs((4, 8, 9, 7)) == 4 * block.macs((8, 9, 7))


@pytest.mark.parametrize("kwargs,error", [(dict(kernel_size=4), ValueError), (dict(groups=3), ValueError),
                                          (dict(stride=0), ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="ACBlock2d"):
        ACBlock2d(4, 6, **kwargs)


def test_bad_macs_input_size():
    with pytest.raises(ValueError, match="ACBlock2d.macs: input_size has 3 channels"):
        ACBlock2d(4, 6).macs((3, 8, 8))

"""DiverseBranchBlock2d: parity with a torch.nn.functional composition (train and eval; outputs
and gradients), fuse() equal in eval mode, gradcheck, shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import DiverseBranchBlock2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _reference(block, x, batch_norm):
    """The four branches with ``torch.nn.functional``; the composite branches pad first."""
    k, s, train = block.kernel_size[0], block.stride, block.training
    p = k // 2
    padded = F.pad(x, (p, p, p, p))
    kxk = batch_norm(F.conv2d(x, block.kxk.weight, None, s, p), block.kxk_bn, train)
    one = batch_norm(F.conv2d(x, block.one.weight, None, s), block.one_bn, train)
    avg = batch_norm(F.conv2d(padded, block.avg_1x1.weight), block.avg_1x1_bn, train)
    avg = batch_norm(F.avg_pool2d(avg, k, s), block.avg_bn, train)
    seq = batch_norm(F.conv2d(padded, block.seq_1x1.weight), block.seq_1x1_bn, train)
    seq = batch_norm(F.conv2d(seq, block.seq_kxk.weight, None, s), block.seq_kxk_bn, train)
    return kxk + one + avg + seq


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kernel_size,stride,internal", [(3, 1, None), (5, 2, 3)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(train, kernel_size, stride, internal, device, batch_norm, randomise_batch_norms):
    block = DiverseBranchBlock2d(4, 6, kernel_size, stride, internal_channels=internal)
    block = randomise_batch_norms(block).to(device, torch.float64).train(train)
    x = torch.randn(2, 4, 7, 8, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = block(x), _reference(block, x, batch_norm)
    assert_close_with_grads(out, ref, [x, *block.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kernel_size,stride,internal", [(3, 1, None), (5, 2, 3), (3, 2, 6)])
def test_fuse_equals_block_in_eval_mode(kernel_size, stride, internal, randomise_batch_norms):
    block = DiverseBranchBlock2d(4, 6, kernel_size, stride, internal_channels=internal)
    with torch.no_grad():  # move the identity-initialised 1x1 away from the identity
        block.seq_1x1.weight.add_(0.3 * torch.randn_like(block.seq_1x1.weight))
    block = randomise_batch_norms(block).double().eval()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    fused = block.fuse()
    assert isinstance(fused, torch.nn.Conv2d) and fused.weight.shape == (6, 4, kernel_size, kernel_size)
    torch.testing.assert_close(fused(x), block(x), rtol=1e-7, atol=1e-9)


def test_identity_initialised_inner_1x1():
    block = DiverseBranchBlock2d(4, 6)
    torch.testing.assert_close(block.seq_1x1.weight[:, :, 0, 0], torch.eye(4))


def test_gradcheck():
    block = DiverseBranchBlock2d(2, 3).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


def test_shape_repr_and_counts():
    block = DiverseBranchBlock2d(8, 16)
    assert block(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    assert DiverseBranchBlock2d(8, 16, stride=2)(torch.randn(2, 8, 9, 7)).shape == (2, 16, 5, 4)
    assert repr(block).startswith(
        "DiverseBranchBlock2d(\n  8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)\n")
    weights = 16 * 8 * 9 + 16 * 8 + 16 * 8 + 8 * 8 + 16 * 8 * 9
    assert block.num_parameters() == weights + 2 * (5 * 16 + 8)
    assert block.macs((8, 9, 7)) == 9 * 7 * (16 * 8 * 9 + 16 * 8 + 16 * 8 * 9) + 11 * 9 * (16 * 8 + 8 * 8)


@pytest.mark.parametrize("kwargs,error", [(dict(kernel_size=2), ValueError), (dict(internal_channels=0), ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="DiverseBranchBlock2d"):
        DiverseBranchBlock2d(4, 6, **kwargs)

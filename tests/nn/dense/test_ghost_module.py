"""GhostModule: parity with a torch.nn.functional composition (train and eval; outputs and
gradients), gradcheck, shapes and counts."""
import math

import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import GhostModule
from irregconv.testing import DEVICES, assert_close_with_grads


def _reference(ghost, x, batch_norm):
    """Primary conv -> BN -> ReLU, one depthwise conv per intrinsic map -> BN -> ReLU, concat, trim."""
    act = torch.relu if ghost.relu else (lambda t: t)
    conv, bn = ghost.primary[0], ghost.primary[1]
    intrinsic = act(batch_norm(F.conv2d(x, conv.weight, None, conv.stride, conv.padding), bn, ghost.training))
    dw, dw_bn = ghost.cheap[0], ghost.cheap[1]
    per_map = ghost.ratio - 1
    ghosts = torch.cat([F.conv2d(intrinsic[:, c:c + 1], dw.weight[c * per_map:(c + 1) * per_map], None, 1,
                                 ghost.dw_size // 2) for c in range(ghost.init_channels)], dim=1)
    ghosts = act(batch_norm(ghosts, dw_bn, ghost.training))
    return torch.cat([intrinsic, ghosts], dim=1)[:, :ghost.out_channels]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("out_channels,kernel_size,ratio,dw_size,stride,relu", [
    (6, 1, 2, 3, 1, True), (7, 3, 3, 5, 2, False), (5, 3, 2, 1, 1, True),
])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(train, out_channels, kernel_size, ratio, dw_size, stride, relu, device, batch_norm,
                                randomise_batch_norms):
    ghost = GhostModule(4, out_channels, kernel_size, ratio, dw_size, stride, relu)
    ghost = randomise_batch_norms(ghost).to(device, torch.float64).train(train)
    x = torch.randn(2, 4, 7, 8, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = ghost(x), _reference(ghost, x, batch_norm)
    assert_close_with_grads(out, ref, [x, *ghost.parameters()], rtol=1e-7, atol=1e-9)


def test_gradcheck():
    ghost = GhostModule(2, 3, 3).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ghost, (x,))


def test_shape_repr_and_counts():
    ghost = GhostModule(16, 32)
    assert ghost(torch.randn(2, 16, 9, 7)).shape == (2, 32, 9, 7)
    assert GhostModule(16, 30, kernel_size=3, ratio=4)(torch.randn(2, 16, 9, 7)).shape == (2, 30, 9, 7)
    assert GhostModule(16, 32, stride=2)(torch.randn(2, 16, 9, 7)).shape == (2, 32, 5, 4)
    assert repr(ghost).startswith("GhostModule(\n  16, 32, kernel_size=(1, 1), stride=(1, 1), ratio=2, dw_size=3\n")
    assert ghost.num_parameters() == 16 * 16 + 2 * 16 + 16 * 9 + 2 * 16
    assert ghost.macs((16, 9, 7)) == 9 * 7 * (16 * 16 + 16 * 9)
    init = math.ceil(30 / 4)
    assert GhostModule(16, 30, 3, ratio=4).macs((16, 9, 7)) == 9 * 7 * (init * 16 * 9 + 3 * init * 9)


@pytest.mark.parametrize("kwargs,error", [(dict(ratio=1), ValueError), (dict(dw_size=2), ValueError),
                                          (dict(kernel_size=0), ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="GhostModule"):
        GhostModule(4, 6, **kwargs)

"""spconv.pytorch.modules: SparseSequential, the feature-wise modules (SparseBatchNorm, SparseSyncBatchNorm,
SparseReLU, SparseIdentity), ToDense / RemoveGrid and the module tests, against spconv 2.3.8."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from irregconv.compat import spconv
from irregconv.testing import with_package

needs_spconv = with_package("spconv")


def test_sparse_sequential_containers(make_input):
    feats, coords, shape, batch = make_input()
    conv, relu = spconv.SubMConv3d(4, 4, 3), nn.ReLU()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    expected = relu(conv(x).features)
    for seq in (spconv.SparseSequential(conv, relu), spconv.SparseSequential(OrderedDict(c=conv, r=relu)),
                spconv.SparseSequential(c=conv, r=relu)):
        torch.testing.assert_close(seq(x).features, expected, rtol=0, atol=0)
    seq = spconv.SparseSequential(conv)
    seq.add(nn.BatchNorm1d(4))
    with pytest.raises(KeyError, match="SparseSequential.add: a module named '1' exists already"):
        seq.add(relu, "1")
    empty = spconv.SparseConvTensor(feats[:0], coords[:0], shape, batch)
    assert seq(empty).features.shape == (0, 4)  # the batch norm is skipped for zero rows, as in spconv

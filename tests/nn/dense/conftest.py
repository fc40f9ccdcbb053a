"""Fixtures shared by the dense-variant tests: batch norm as a plain function, and random batch-norm
statistics (so that eval-mode parity and fusion tests are not trivially the identity)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn


def _batch_norm(x, bn, training):
    """``bn(x)`` from its parameters; in training mode batch statistics without touching the running ones."""
    if training:
        return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _randomise(module):
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
    return module


@pytest.fixture
def batch_norm():
    return _batch_norm


@pytest.fixture
def randomise_batch_norms():
    return _randomise

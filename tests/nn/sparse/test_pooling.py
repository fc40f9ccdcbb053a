"""Sparse max / average pooling against dense torch on the densified input read at the output sites:
max pooling against ``F.max_pool{1,2,3}d`` of a grid filled with -inf (so inactive sites never win, and
all-negative features stay negative), average pooling against the sum over active inputs divided by their
count (both dense convolutions with all-ones kernels); outputs and feature gradients; global pooling per
batch item against a loop, including an empty item; gradcheck; shared rulebooks; repr and errors."""
import pytest
import torch
import torch.nn.functional as F

from irregconv import SparseTensor
from irregconv.nn import (SparseAvgPool1d, SparseAvgPool2d, SparseAvgPool3d, SparseConv3d, SparseGlobalPool,
                          SparseMaxPool1d, SparseMaxPool2d, SparseMaxPool3d)
from irregconv.testing import DEVICES, dense_conv, densify, reference_output_sites, values_at

MAX = {1: SparseMaxPool1d, 2: SparseMaxPool2d, 3: SparseMaxPool3d}
AVG = {1: SparseAvgPool1d, 2: SparseAvgPool2d, 3: SparseAvgPool3d}
MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
SHAPES = {1: (17,), 2: (7, 8), 3: (5, 6, 7)}


def _geometry(pool):
    """Stride, padding, dilation of ``pool`` as a dense op sees them (a submanifold window is centred)."""
    if pool.subm:
        return (1,) * pool.dims, tuple(k // 2 * d for k, d in zip(pool.kernel_size, pool.dilation)), pool.dilation
    return pool.stride, pool.padding, pool.dilation


def _out_coords(pool, x):
    if pool.subm:
        return x.coords
    return reference_output_sites(x.coords, x.spatial_shape, x.batch_size, pool.kernel_size, *_geometry(pool))


def _max_oracle(pool, x):
    out_coords = _out_coords(pool, x)

    def run(feats):
        grid = torch.full((x.batch_size, *x.spatial_shape, feats.size(1)), float("-inf"), dtype=feats.dtype,
                          device=feats.device)
        grid = grid.index_put(tuple(x.coords.long().t()), feats).movedim(-1, 1)
        stride, padding, dilation = _geometry(pool)
        # padded by hand: torch's max pooling refuses padding above half the kernel (dilated windows)
        grid = F.pad(grid, [p for pad in reversed(padding) for p in (pad, pad)], value=float("-inf"))
        return values_at(MAX_POOL[pool.dims](grid, pool.kernel_size, stride, 0, dilation), out_coords)
    return run


def _avg_oracle(pool, x):
    out_coords = _out_coords(pool, x)
    stride, padding, dilation = _geometry(pool)

    def window_sum(grid):
        ones = grid.new_ones((grid.size(1), 1, *pool.kernel_size))
        return dense_conv(grid, ones, stride, padding, dilation, groups=grid.size(1))

    def run(feats):
        count = window_sum(densify(torch.ones_like(feats[:, :1]), x.coords, x.spatial_shape, x.batch_size))
        total = window_sum(densify(feats, x.coords, x.spatial_shape, x.batch_size))
        return values_at(total, out_coords) / values_at(count, out_coords)
    return run


def _check(pool, x, oracle, check_parity, **tol):
    y = pool(x)
    torch.testing.assert_close(y.coords, _out_coords(pool, x).to(y.coords.device), rtol=0, atol=0)
    check_parity(pool, x, oracle(pool, x), **tol)
    return y


POOL_GEOMETRIES = [  # kernel_size, stride, padding, dilation
    (2, None, 0, 1), (3, 2, 1, 1), (3, 1, 1, 1), ((3, 1, 1), (2, 1, 1), (1, 0, 0), 1), (2, 1, 0, 1), (3, 2, 1, 2),
    ((2, 3, 2), (1, 3, 2), (1, 1, 0), (2, 1, 1)),
]


@pytest.mark.parametrize("kernel_size, stride, padding, dilation", POOL_GEOMETRIES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_3d_matches_dense(kernel_size, stride, padding, dilation, kind, sparse_input, check_parity):
    x = sparse_input()
    pool = (MAX if kind == "max" else AVG)[3](kernel_size, stride, padding, dilation)
    _check(pool, x, _max_oracle if kind == "max" else _avg_oracle, check_parity)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, None, 0), (3, 2, 1), (3, 1, 1)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_1d_2d_match_dense(dims, kernel_size, stride, padding, kind, sparse_input, check_parity):
    x = sparse_input(SHAPES[dims], num_sites=8 if dims == 1 else 20)
    pool = (MAX if kind == "max" else AVG)[dims](kernel_size, stride, padding)
    _check(pool, x, _max_oracle if kind == "max" else _avg_oracle, check_parity)


@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), ((3, 1, 1), 1), (3, 2), (5, 1)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_submanifold_pool_keeps_the_sites(kernel_size, dilation, kind, sparse_input, check_parity):
    x = sparse_input()
    pool = (MAX if kind == "max" else AVG)[3](kernel_size, dilation=dilation, subm=True)
    y = _check(pool, x, _max_oracle if kind == "max" else _avg_oracle, check_parity)
    assert y.sites is x.sites


@pytest.mark.parametrize("subm", [False, True])
def test_max_pool_is_exact_for_all_negative_features(subm, sparse_input, check_parity):
    # spconv starts its max at 0 and returns 0 here; the maximum over the active inputs is negative
    x = sparse_input()
    x = x.replace(-x.feats.abs() - 0.5)
    pool = SparseMaxPool3d(3, 2, 1, subm=subm)
    y = _check(pool, x, _max_oracle, check_parity)
    assert bool((y.feats < -0.5 + 1e-12).all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_float32_on_device(device, kind, sparse_input, check_parity):
    x = sparse_input(channels=8, num_sites=40, dtype=torch.float32, device=device)
    pool = (MAX if kind == "max" else AVG)[3](3, 2, 1)
    _check(pool, x, _max_oracle if kind == "max" else _avg_oracle, check_parity, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool", [SparseMaxPool3d(3, 2, 1), SparseAvgPool3d(2), SparseMaxPool3d(3, subm=True),
                                  SparseAvgPool3d(3, subm=True)], ids=repr)
def test_pool_gradcheck(pool, sparse_input, gradcheck_module):
    gradcheck_module(pool, sparse_input(channels=2, num_sites=8))


def test_pool_shares_sites_and_rulebook_with_a_conv_of_the_same_geometry(sparse_input):
    x = sparse_input()
    pooled = SparseMaxPool3d(3, 2, 1)(x)
    averaged = SparseAvgPool3d(3, 2, 1)(x)
    conv = SparseConv3d(3, 3, 3, stride=2, padding=1).double()(x)
    assert pooled.sites is averaged.sites is conv.sites and x.sites.cache.builds == 1
    SparseMaxPool3d(3, subm=True)(x)
    assert x.sites.cache.builds == 2


# ------------------------------------------------------------------------------------------- global pool


def _global_oracle(reduce, x):
    def run(feats):
        rows = []
        for b in range(x.batch_size):
            items = feats[x.coords[:, 0] == b]
            if items.size(0) == 0:
                rows.append(feats.new_zeros(feats.size(1)))
            else:
                rows.append(items.amax(0) if reduce == "max" else items.mean(0) if reduce == "mean" else items.sum(0))
        return torch.stack(rows)
    return run


@pytest.mark.parametrize("reduce", ["max", "mean", "sum"])
@pytest.mark.parametrize("device", DEVICES)
def test_global_pool_per_batch_item_with_an_empty_item(reduce, device, sparse_input, check_parity):
    x = sparse_input(batch_size=2, device=device)
    x = x.replace(x.feats - 3.0)                                  # negative maxima stay negative
    shifted = x.coords.clone()
    shifted[:, 0] = shifted[:, 0] * 2                             # items 0 and 2 hold sites, item 1 none
    x = SparseTensor(x.feats, shifted, x.spatial_shape, batch_size=3)
    pool = SparseGlobalPool(reduce)
    out = pool(x)
    assert out.shape == (3, 3) and not out[1].any()
    check_parity(pool, x, _global_oracle(reduce, x))


@pytest.mark.parametrize("reduce", ["max", "mean", "sum"])
def test_global_pool_gradcheck_and_cached_rulebook(reduce, sparse_input, gradcheck_module):
    x = sparse_input(channels=2, num_sites=5)
    gradcheck_module(SparseGlobalPool(reduce), x)
    builds = x.sites.cache.builds
    SparseGlobalPool("sum")(x.replace(x.feats * 2))
    assert x.sites.cache.builds == builds


def test_global_pool_of_an_empty_tensor():
    x = SparseTensor(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.int32), (3, 3, 3), batch_size=2)
    for reduce in ("max", "mean", "sum"):
        torch.testing.assert_close(SparseGlobalPool(reduce)(x), torch.zeros(2, 4), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------- repr, errors


def test_pool_repr():
    assert repr(SparseMaxPool3d(2)) == "SparseMaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2), padding=(0, 0, 0))"
    assert repr(SparseAvgPool2d(3, 1, 1, dilation=2, subm=True)) == \
        "SparseAvgPool2d(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(2, 2), subm=True)"
    assert repr(SparseGlobalPool()) == "SparseGlobalPool(reduce='max')"


def test_pool_bad_input_and_arguments(sparse_input):
    with pytest.raises(ValueError, match=r"SparseMaxPool3d: expects 3 spatial axes .* use the 2d variant"):
        SparseMaxPool3d(2)(sparse_input((4, 4)))
    with pytest.raises(TypeError, match="SparseAvgPool3d: input must be an irregconv.SparseTensor, got Tensor"):
        SparseAvgPool3d(2)(torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(TypeError, match="SparseGlobalPool: input must be an irregconv.SparseTensor, got Tensor"):
        SparseGlobalPool()(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="SparseGlobalPool: reduce must be 'max', 'mean' or 'sum', got 'min'"):
        SparseGlobalPool("min")
    with pytest.raises(TypeError, match=r"SparseMaxPool3d: kernel_size must be an int or a sequence of 3 ints"):
        SparseMaxPool3d(2.5)
    with pytest.raises(ValueError, match=r"SparseAvgPool3d: stride must be >= 1 on every axis, got 0"):
        SparseAvgPool3d(2, stride=0)

"""spconv.pytorch.pool: max, average and global pooling against spconv 2.3.8 (its CUDA-only average and global
pools through CPU ports of their kernels) and against dense torch, with float64 gradchecks."""
import pytest
import torch
import torch.nn.functional as F

import irregconv
from irregconv.compat import spconv
from irregconv.testing import assert_parity, densify, values_at, with_package

needs_spconv = with_package("spconv")


@needs_spconv
@pytest.mark.parametrize("args", [(3, 2, 1), (2,), ((3, 1, 1), (2, 1, 1))])
def test_max_pool_matches_spconv_for_nonnegative_features(args, real_spconv, run_spconv, sorted_rows, make_input):
    feats, coords, shape, batch = make_input()
    feats = feats.abs()  # spconv starts its maximum at 0, so only non-negative features agree
    theirs, ours = real_spconv().SparseMaxPool3d(*args), spconv.SparseMaxPool3d(*args)
    expected = run_spconv(theirs, feats, coords, shape, batch)
    got = ours(spconv.SparseConvTensor(feats, coords, shape, batch))
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert got.spatial_shape == expected.spatial_shape and torch.equal(got_idx, exp_idx)
    torch.testing.assert_close(got_feats, exp_feats, rtol=0, atol=0)


def test_max_pool_is_exact_for_negative_features(make_input):
    feats, coords, shape, batch = make_input()
    feats = -feats.abs() - 0.5
    out = spconv.SparseMaxPool3d(3, 2, 1)(spconv.SparseConvTensor(feats, coords, shape, batch))
    grid = densify(feats, coords, shape, batch)
    active = densify(torch.ones(coords.size(0), 1), coords, shape, batch) > 0
    grid = grid.masked_fill(~active, float("-inf"))
    expected = values_at(F.max_pool3d(grid, 3, 2, 1), out.indices)
    torch.testing.assert_close(out.features, expected, rtol=0, atol=0)


POOL_NAMES = ["SparseMaxPool", "SparseMaxPool1d", "SparseMaxPool2d", "SparseMaxPool3d", "SparseMaxPool4d",
              "SparseAvgPool", "SparseAvgPool1d", "SparseAvgPool2d", "SparseAvgPool3d",
              "SparseGlobalMaxOrAvgPool", "SparseGlobalMaxPool", "SparseGlobalAvgPool"]


@needs_spconv
def test_pooling_api_matches_spconv(real_spconv):
    """Every pooling class spconv.pytorch (and spconv.pytorch.pool) exports exists here, with its constructor."""
    import inspect
    real = real_spconv()
    exported = {n for n in dir(real) if "Pool" in n} | {n for n in dir(real.pool) if "Pool" in n and n[0] != "_"}
    assert exported == set(POOL_NAMES)
    for name in POOL_NAMES:
        ours, theirs = inspect.signature(getattr(spconv, name)), inspect.signature(getattr(real.pool, name))
        assert [(p.name, p.default) for p in ours.parameters.values()] == \
            [(p.name, p.default) for p in theirs.parameters.values()], name
        assert getattr(spconv.pool, name) is getattr(spconv, name) and name in spconv.__all__
    assert {c.__name__ for c in spconv.ALL_POOL_LAYERS} == {c.__name__ for c in real.pool.ALL_POOL_LAYERS}
    assert issubclass(spconv.SparseAvgPool3d, spconv.SparseAvgPool) and not issubclass(spconv.SparseAvgPool,
                                                                                          spconv.SparseMaxPool)
    assert spconv.SparseAvgPool3d(2).stride == [2, 2, 2] and spconv.SparseAvgPool(3, 2).stride == [1, 1, 1]
    assert spconv.SparseAvgPool3d(2, algo=spconv.ConvAlgo.Native).algo is spconv.ConvAlgo.MaskImplicitGemm


def _spconv_cuda_pooling_on_cpu(monkeypatch):
    """Let spconv's own SparseAvgPool / SparseGlobal*Pool ``forward`` run on its CPU build by replacing its three
    CUDA-only ops with ports: the implicit-GEMM pair table (``pair_fwd[k, out] = in or -1``) filled from spconv's
    CPU rulebook for the same geometry, the forward kernel of ``spconv/csrc/sparse/maxpool.py``
    (``forward_avgpool_implicit_gemm_kernel``: the sum of the valid inputs divided by their count, 0 for none)
    and ``global_pool_rearrange`` (each batch item's row numbers)."""
    import spconv.pytorch as real
    ops = real.ops

    def pairs(indices, batch_size, spatial_shape, algo, ksize, stride, padding, dilation, out_padding, subm=False,
              **_):
        assert not subm, "the port covers strided pooling (spconv's CPU subm rulebook leaves out the centre)"
        outids, table, counts = ops.get_indice_pairs(indices, batch_size, spatial_shape, real.ConvAlgo.Native, ksize,
                                                     stride, padding, dilation, out_padding, False)
        fwd = torch.full((table.size(1), outids.size(0)), -1, dtype=torch.int32)
        bwd = torch.full((table.size(1), indices.size(0)), -1, dtype=torch.int32)
        for k, n in enumerate(counts.tolist()):
            fwd[k, table[1, k, :n].long()] = table[0, k, :n]
            bwd[k, table[0, k, :n].long()] = table[1, k, :n]
        return outids, None, fwd, bwd, None, None, None, None, None

    def avgpool(features, pair_fwd, num_out, calc_count):
        valid = pair_fwd >= 0
        count = valid.sum(0)
        total = (features[pair_fwd.clamp(min=0).long()] * valid.unsqueeze(-1)).sum(0)
        out = torch.where(count[:, None] > 0, total / count.clamp(min=1)[:, None].to(features.dtype), 0)
        return out, count.int() if calc_count else torch.Tensor()

    def rearrange(coords, batch_size):
        out = torch.zeros(batch_size, coords.size(0), dtype=torch.int32)
        counts = torch.zeros(batch_size, dtype=torch.int32)
        for b in range(batch_size):
            rows = (coords[:, 0] == b).nonzero().flatten()
            out[b, :rows.numel()], counts[b] = rows, rows.numel()
        return out, counts

    monkeypatch.setattr(ops, "get_indice_pairs_implicit_gemm", pairs)
    monkeypatch.setattr(ops, "indice_avgpool_implicit_gemm", avgpool)
    monkeypatch.setattr(ops, "global_pool_rearrange", rearrange)
    return real


@needs_spconv
@pytest.mark.parametrize("name,args,shape", [
    ("SparseAvgPool3d", (3, 2, 1), (9, 10, 11)),
    ("SparseAvgPool3d", (2,), (9, 10, 11)),
    ("SparseAvgPool3d", ((3, 1, 1), (2, 1, 1)), (9, 10, 11)),
    ("SparseAvgPool3d", (3, 2, 0, 2), (9, 10, 11)),
    ("SparseAvgPool2d", ((3, 2), 2, 1), (13, 12)),
    ("SparseAvgPool1d", (3, 2, 1), (40,)),
])
def test_avg_pool_matches_spconv_forward(monkeypatch, name, args, shape, run_spconv, sorted_rows, make_input):
    """spconv's SparseAvgPool forward (its module code, with its CUDA-only ops ported, see above): same output
    sites and spatial shape, the mean over the active inputs of each window."""
    real = _spconv_cuda_pooling_on_cpu(monkeypatch)
    feats, coords, shape, batch = make_input(40 if len(shape) == 1 else 120, shape)
    expected = run_spconv(getattr(real, name)(*args), feats, coords.contiguous(), shape, batch)
    got = getattr(spconv, name)(*args)(spconv.SparseConvTensor(feats, coords, shape, batch))
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert got.spatial_shape == expected.spatial_shape and torch.equal(got_idx, exp_idx)
    torch.testing.assert_close(got_feats, exp_feats)
    # the same sites as spconv's max pool of that geometry, which its CPU build runs unpatched
    maxed = run_spconv(getattr(real, name.replace("Avg", "Max"))(*args), feats.abs(), coords.contiguous(), shape, batch)
    assert torch.equal(sorted_rows(maxed.features, maxed.indices, maxed.spatial_shape)[1], got_idx)


@needs_spconv
def test_global_pools_match_spconv_forward(monkeypatch, run_spconv, make_input):
    """spconv's own SparseGlobalMaxPool / SparseGlobalAvgPool forward (its batch rearrangement ported): the max
    equals; spconv's mean keeps channel 0 only (``torch.mean(x, dim=0)[0]``), which ours[:, 0] equals."""
    real = _spconv_cuda_pooling_on_cpu(monkeypatch)
    feats, coords, shape, batch = make_input(batch_size=3)
    feats = feats - 3.0  # all negative for the most part: no 0 floor anywhere
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    expected_max = run_spconv(real.SparseGlobalMaxPool(), feats, coords.contiguous(), shape, batch)
    torch.testing.assert_close(spconv.SparseGlobalMaxPool()(x), expected_max, rtol=0, atol=0)
    expected_mean = run_spconv(real.SparseGlobalAvgPool(), feats, coords.contiguous(), shape, batch)
    assert expected_mean.shape == (batch,)
    got_mean = spconv.SparseGlobalAvgPool()(x)
    assert got_mean.shape == (batch, feats.size(1))
    torch.testing.assert_close(got_mean[:, 0], expected_mean)
    per_item = torch.stack([feats[coords[:, 0] == b].mean(0) for b in range(batch)])
    torch.testing.assert_close(got_mean, per_item)


def _window_sums(grid, kernel, stride, padding, dilation):
    """Sum of each channel under every window (a depthwise conv with ones)."""
    ones = grid.new_ones(grid.size(1), 1, *kernel)
    return F.conv3d(grid, ones, stride=stride, padding=padding, dilation=dilation, groups=grid.size(1))


@pytest.mark.parametrize("reduce", ["avg", "max"])
@pytest.mark.parametrize("geometry", [((3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), False),
                                      ((2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), False),
                                      ((3, 1, 2), (2, 1, 2), (1, 0, 0), (1, 1, 1), False),
                                      ((3, 3, 3), (2, 2, 2), (0, 0, 0), (2, 1, 2), False),
                                      ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), True)])
def test_pools_match_dense_torch(reduce, geometry, sorted_rows, make_input):
    """Outputs, output sites and gradients against dense torch: the window sum over the active inputs divided by
    their count (avg), ``F.max_pool3d`` with -inf at inactive cells (max); strided outputs lie where the window
    holds an active input, submanifold outputs on the input sites."""
    kernel, stride, padding, dilation, subm = geometry
    feats, coords, shape, batch = make_input(60, (7, 8, 9), dtype=torch.float64)
    cls = spconv.SparseAvgPool if reduce == "avg" else spconv.SparseMaxPool
    pool = cls(3, kernel, stride, padding, dilation, subm=subm)
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    out = pool(x)
    occupancy = densify(torch.ones_like(feats[:, :1]), coords, shape, batch)
    counts = _window_sums(occupancy, kernel, stride, padding, dilation)
    if subm:
        assert torch.equal(out.indices, x.indices) and out.spatial_shape == shape
    else:
        assert out.spatial_shape == list(counts.shape[2:])
        assert torch.equal(sorted_rows(out.indices, out.indices, out.spatial_shape)[0],
                           (counts[:, 0] > 0).nonzero().int())

    def ours(feats):
        return pool(x.replace_feature(feats)).features

    def oracle(feats):
        grid = densify(feats, coords, shape, batch)
        if reduce == "avg":
            return values_at(_window_sums(grid, kernel, stride, padding, dilation) / counts.clamp(min=1), out.indices)
        grid = grid.masked_fill(occupancy == 0, float("-inf"))
        return values_at(F.max_pool3d(grid, kernel, stride, padding, dilation), out.indices)

    assert_parity(ours, oracle, [feats.clone().requires_grad_()], rtol=1e-12, atol=1e-12,
                  generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("make", [lambda: spconv.SparseAvgPool3d(3, 2, 1), lambda: spconv.SparseAvgPool3d(2),
                                  lambda: spconv.SparseAvgPool(3, 3, subm=True),
                                  lambda: spconv.SparseMaxPool3d(3, 2, 1),
                                  spconv.SparseGlobalAvgPool, spconv.SparseGlobalMaxPool])
def test_pool_gradcheck_float64(make, make_input):
    """Our backward (spconv's cannot run on the CPU, and its avg-pool backward multiplies by the count)."""
    feats, coords, shape, batch = make_input(8, (4, 4, 4), batch_size=2, channels=2, dtype=torch.float64)
    pool, x = make(), spconv.SparseConvTensor(feats, coords, shape, batch)

    def fn(feats):
        out = pool(x.replace_feature(feats))
        return out if isinstance(out, torch.Tensor) else out.features

    assert torch.autograd.gradcheck(fn, (feats.requires_grad_(),))


def test_avg_pool_gradient_divides_by_the_active_count(sorted_rows):
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 1], [0, 3, 3, 3]], dtype=torch.int32)
    feats = torch.tensor([[1.0], [2.0], [4.0]], requires_grad=True)
    out = spconv.SparseAvgPool3d(2)(spconv.SparseConvTensor(feats, coords, [4, 4, 4], 1))
    out_feats, out_idx = sorted_rows(out.features, out.indices, out.spatial_shape)
    assert out_idx.tolist() == [[0, 0, 0, 0], [0, 1, 1, 1]]
    assert out_feats.flatten().tolist() == [1.5, 4.0]  # by 2 and 1 active inputs, not by the volume 8
    out.features.sum().backward()
    assert feats.grad.flatten().tolist() == [0.5, 0.5, 1.0]


def test_global_pools_give_zeros_for_items_without_sites(make_input):
    feats, coords, shape, _ = make_input(batch_size=2)
    x = spconv.SparseConvTensor(feats - 5, coords, shape, 3)  # batch item 2 has no sites
    for pool in (spconv.SparseGlobalMaxPool(), spconv.SparseGlobalAvgPool()):
        out = pool(x)
        assert out.shape == (3, 4) and torch.equal(out[2], torch.zeros(4)) and (out[:2] < 0).all()


def test_avg_pool_key_is_inverted_by_an_inverse_conv(make_input):
    feats, coords, shape, batch = make_input()
    down = spconv.SparseAvgPool3d(3, 2, 1, indice_key="down")
    up = spconv.SparseInverseConv3d(4, 5, 3, "down")
    out = spconv.SparseSequential(down, up)(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert out.spatial_shape == shape and torch.equal(out.indices, coords) and out.features.shape == (coords.size(0), 5)


def test_voxel_counter_of_avg_pool(make_input):
    feats, coords, shape, batch = make_input()
    pool = spconv.SparseAvgPool3d(3, 2, 1, record_voxel_count=True)
    out = pool(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert int(getattr(pool, spconv.MAX_NUM_VOXELS)) == out.features.size(0)


def test_pool_bad_input(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    with pytest.raises(ValueError, match="SparseAvgPool2d: expects 2 spatial axes .* use the 3d variant"):
        spconv.SparseAvgPool2d(2)(x)
    with pytest.raises(TypeError, match="SparseAvgPool3d: input must be a SparseConvTensor"):
        spconv.SparseAvgPool3d(2)(irregconv.SparseTensor(feats, coords, shape, batch))
    with pytest.raises(ValueError, match="SparseAvgPool3d: kernel_size"):
        spconv.SparseAvgPool3d(0)
    with pytest.raises(ValueError, match="SparseAvgPool3d: kernel_size must have 3 entries"):
        spconv.SparseAvgPool3d((2, 2))
    with pytest.raises(TypeError, match="SparseGlobalMaxPool: input must be a SparseConvTensor .* got Tensor"):
        spconv.SparseGlobalMaxPool()(feats)
    with pytest.raises(TypeError, match="SparseGlobalMaxOrAvgPool: is_mean must be a bool .* got 'mean'"):
        spconv.SparseGlobalMaxOrAvgPool("mean")

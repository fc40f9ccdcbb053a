"""batch_norm_rows against torch.nn.functional.batch_norm: outputs, gradients (x, weight, bias), running
statistics; affine or not, batch or running statistics; float64 gradcheck of the hand-written backward."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.functional.batch_norm import batch_norm_rows

F64 = dict(rtol=1e-10, atol=1e-12)


def _inputs(affine, gen):
    x = torch.randn(37, 5, dtype=torch.float64, generator=gen) * 3 + 1
    weight = torch.randn(5, dtype=torch.float64, generator=gen) if affine else None
    bias = torch.randn(5, dtype=torch.float64, generator=gen) if affine else None
    return x, weight, bias


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training, with_running", [(True, True), (True, False), (False, True)])
def test_matches_torch_batch_norm_with_gradients(affine, training, with_running):
    gen = torch.Generator().manual_seed(0)
    x, weight, bias = _inputs(affine, gen)
    mean, var = torch.randn(5, dtype=torch.float64, generator=gen), torch.rand(5, dtype=torch.float64, generator=gen)
    ours_stats = (mean.clone(), var + 0.5) if with_running else (None, None)
    theirs_stats = tuple(None if t is None else t.clone() for t in ours_stats)
    ours_in = [None if t is None else t.clone().requires_grad_() for t in (x, weight, bias)]
    theirs_in = [None if t is None else t.clone().requires_grad_() for t in (x, weight, bias)]
    ours = batch_norm_rows(ours_in[0], *ours_stats, ours_in[1], ours_in[2], training, 0.1, 1e-5)
    theirs = F.batch_norm(theirs_in[0], *theirs_stats, theirs_in[1], theirs_in[2], training, 0.1, 1e-5)
    torch.testing.assert_close(ours, theirs, **F64)
    cotangent = torch.randn(ours.shape, dtype=torch.float64, generator=gen)
    leaves = [[t for t in inputs if t is not None] for inputs in (ours_in, theirs_in)]
    for g_ours, g_theirs in zip(torch.autograd.grad(ours, leaves[0], cotangent),
                                torch.autograd.grad(theirs, leaves[1], cotangent)):
        torch.testing.assert_close(g_ours, g_theirs, **F64)
    for ours_stat, theirs_stat in zip(ours_stats, theirs_stats):
        if ours_stat is not None:
            torch.testing.assert_close(ours_stat, theirs_stat, **F64)


@pytest.mark.parametrize("affine", [True, False])
def test_batch_statistics_gradcheck(affine):
    x, weight, bias = _inputs(affine, torch.Generator().manual_seed(1))
    leaves = [t.requires_grad_() for t in (x, weight, bias) if t is not None]
    torch.autograd.gradcheck(
        lambda *ls: batch_norm_rows(ls[0], None, None, ls[1] if affine else None, ls[2] if affine else None,
                                    True, 0.1, 1e-5), leaves)


def test_output_is_not_the_saved_normalised_rows():
    """An in-place op after the norm (ReLU(inplace=True)) must not corrupt what the backward reads."""
    x = torch.randn(10, 3, dtype=torch.float64).requires_grad_()
    out = batch_norm_rows(x, None, None, None, None, True, 0.1, 1e-5)
    expected = torch.autograd.grad(torch.relu(out).sum(), x, retain_graph=True)[0]
    torch.relu_(out)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0], expected, **F64)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("rows", [2, 37, 5000])
def test_float32_rows_take_the_native_statistics_and_match_the_float64_truth(affine, rows):
    """float32 CPU rows use the native column sums (in double); compared with torch's float64 batch norm, and
    the same bits for 1 and 2 threads and after an in-place ReLU on the output."""
    from irregconv.engine.backends import native
    from irregconv.testing import threads
    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 24, generator=gen) * 3 + 1
    weight, bias = (torch.randn(24, generator=gen), torch.randn(24, generator=gen)) if affine else (None, None)
    assert native.serves_rows(x) == native.AVAILABLE
    cotangent = torch.randn(rows, 24, generator=gen)

    def run(dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (x, weight, bias) if t is not None]
        mean, var = torch.zeros(24, dtype=dtype), torch.ones(24, dtype=dtype)
        out = batch_norm_rows(leaves[0], mean, var, *(leaves[1:] or [None, None]), True, 0.1, 1e-5)
        grads = torch.autograd.grad(torch.relu_(out), leaves, cotangent.to(dtype))
        return [out, mean, var, *grads]

    truth = run(torch.float64)
    with threads(1):
        first = run(torch.float32)
    for got, want in zip(first, truth):
        torch.testing.assert_close(got, want.float(), rtol=2e-5, atol=2e-4)
    with threads(2):
        assert all(torch.equal(a, b) for a, b in zip(run(torch.float32), first))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("training", [True, False])
def test_half_rows_are_normalised_in_float32(dtype, training):
    # the statistics of the half rows in float32 (as torch's batch norm keeps them under autocast), output rounded
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(300, 8, generator=gen) * 4 + 2).to(dtype)
    weight, bias = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    running = (torch.randn(8, generator=gen), torch.rand(8, generator=gen) + 0.5)
    ours_stats, want_stats = [t.clone() for t in running], [t.clone() for t in running]
    out = batch_norm_rows(x, *ours_stats, weight, bias, training, 0.1, 1e-5)
    want = batch_norm_rows(x.float(), *want_stats, weight, bias, training, 0.1, 1e-5)
    assert out.dtype == dtype and torch.equal(out, want.to(dtype))
    assert all(torch.equal(a, b) for a, b in zip(ours_stats, want_stats))
    with torch.autocast("cpu", dtype=dtype):
        autocast_out = batch_norm_rows(x.float(), *[t.clone() for t in running], weight, bias, training, 0.1, 1e-5)
    assert autocast_out.dtype == torch.float32 and torch.equal(autocast_out, batch_norm_rows(
        x.float(), *[t.clone() for t in running], weight, bias, training, 0.1, 1e-5))

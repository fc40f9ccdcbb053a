"""Dense-grid rulebook + gather_scatter equals F.conv1d/2d/3d (stride, padding, dilation, groups), for the
output and both gradients; pairs exact against brute force."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine import gather_scatter
from irregconv.rulebook import KernelRegion, build_dense_rulebook
from irregconv.testing import (DEVICES, assert_parity, assert_rulebook_invariants, dense_conv, random_coords,
                               reference_pairs, rulebook_triples, weight_from_torch)

F64 = dict(rtol=1e-7, atol=1e-9)


def _engine_conv(x, w, rb, groups):
    """Dense ``x [B, C, *S]`` through the engine: rows are grid sites in C order."""
    rows = x.movedim(1, -1).reshape(-1, x.size(1))
    out = gather_scatter(rows, weight_from_torch(w, groups), rb)
    return out.reshape(x.size(0), *rb.geometry.out_spatial_shape, -1).movedim(-1, 1)


@pytest.mark.parametrize("shape, kernel_size, stride, padding, dilation, groups", [
    ((7, 8), 3, 1, 1, 1, 1),
    ((7, 8), 3, 2, 0, 1, 2),
    ((7, 8), (3, 1), (2, 1), (0, 1), (1, 2), 1),
    ((9, 9), 5, 1, 2, 2, 1),
    ((7, 8), 2, 2, 1, 1, 4),
    ((5, 6, 7), 3, 1, 1, 1, 1),
    ((5, 6, 7), (3, 1, 1), (2, 1, 1), (0, 1, 1), 1, 2),
    ((6, 6, 6), 3, 2, 1, 2, 4),
    ((6, 7, 8), 1, 2, 0, 1, 1),
    ((11,), 3, 2, 1, 1, 1),
])
def test_dense_rulebook_matches_torch_conv(shape, kernel_size, stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(0)
    batch_size, c_in, c_out = 2, 4, 8
    rb = build_dense_rulebook(shape, batch_size, kernel_size, stride, padding, dilation)
    assert_rulebook_invariants(rb)
    x = torch.randn(batch_size, c_in, *shape, dtype=torch.float64, generator=gen).requires_grad_()
    ks = (kernel_size,) * len(shape) if isinstance(kernel_size, int) else kernel_size
    w = torch.randn(c_out, c_in // groups, *ks, dtype=torch.float64, generator=gen).requires_grad_()
    assert_parity(lambda x, w: _engine_conv(x, w, rb, groups),
                  lambda x, w: dense_conv(x, w, stride, padding, dilation, groups), [x, w], generator=gen, **F64)


@pytest.mark.parametrize("device", DEVICES)
def test_dense_rulebook_on_device(device):
    gen = torch.Generator().manual_seed(1)
    rb = build_dense_rulebook((5, 6, 7), 2, 3, 2, 1, 1, device=device)
    assert rb.device.type == torch.device(device).type
    x = torch.randn(2, 4, 5, 6, 7, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    w = torch.randn(6, 2, 3, 3, 3, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    assert_parity(lambda x, w: _engine_conv(x, w, rb, 2), lambda x, w: dense_conv(x, w, 2, 1, 1, 2), [x, w],
                  generator=gen, **F64)


def test_dense_rulebook_float32_and_identity():
    rb = build_dense_rulebook((6, 7, 8), 2, 3, 1, 1, 1)
    assert rb.identity_offset == 13
    assert build_dense_rulebook((6, 7, 8), 2, 3, 1, 2, 2).identity_offset == 13
    assert build_dense_rulebook((6, 7, 8), 2, 3, 2, 1, 1).identity_offset is None
    assert build_dense_rulebook((6, 7, 8), 2, 3, 1, 0, 1).identity_offset is None
    x, w, cotangent = torch.randn(2, 8, 6, 7, 8), torch.randn(8, 8, 3, 3, 3), torch.randn(2, 8, 6, 7, 8)

    def output_and_grads(conv, dtype):
        leaves = [x.to(dtype).requires_grad_(), w.to(dtype).requires_grad_()]
        out = conv(*leaves)
        return [out, *torch.autograd.grad(out, leaves, cotangent.to(dtype))]
    truth = output_and_grads(lambda x, w: F.conv3d(x, w, padding=1), torch.float64)
    ours = output_and_grads(lambda x, w: _engine_conv(x, w, rb, 1), torch.float32)
    torch_float32 = output_and_grads(lambda x, w: F.conv3d(x, w, padding=1), torch.float32)
    # float32 sums of 216 (output, grad x) and 672 (grad w) terms: within 2 ** -20 of the largest exact value
    # of the float64 truth, about what torch's own float32 conv3d reaches (its error is printed on failure)
    for name, got, reference, exact in zip(("output", "grad x", "grad w"), ours, torch_float32, truth):
        error, reference_error = (got.double() - exact).abs().max(), (reference.double() - exact).abs().max()
        assert error <= 2 ** -20 * exact.abs().max(), (name, float(error), float(reference_error), float(exact.abs().max()))


def test_dense_rulebook_errors():
    with pytest.raises(ValueError, match=r"build_dense_rulebook: kernel_size must have 2 entries"):
        build_dense_rulebook((4, 4), 1, (3, 3, 3))
    with pytest.raises(ValueError, match=r"build_dense_rulebook: padding must be >= 0 on every axis, got -1"):
        build_dense_rulebook((4, 4), 1, 3, padding=-1)
    with pytest.raises(ValueError, match=r"build_dense_rulebook: output size on spatial axis 0 would be"):
        build_dense_rulebook((2, 4), 1, 3)


@st.composite
def dense_cases(draw):
    dims = draw(st.integers(1, 3))
    axes = lambda lo, hi: tuple(draw(st.lists(st.integers(lo, hi), min_size=dims, max_size=dims)))  # noqa: E731
    shape, ks, stride, padding, dilation = axes(1, 6), axes(1, 3), axes(1, 3), axes(0, 2), axes(1, 2)
    batch_size = draw(st.integers(1, 2))
    return shape, batch_size, ks, stride, padding, dilation


@settings(max_examples=40, deadline=None)
@given(dense_cases())
def test_dense_pairs_are_exact(case):
    shape, batch_size, ks, stride, padding, dilation = case
    out_shape = tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                      for s, k, st, p, d in zip(shape, ks, stride, padding, dilation))
    if min(out_shape) <= 0:
        with pytest.raises(ValueError, match="output size on spatial axis"):
            build_dense_rulebook(shape, batch_size, ks, stride, padding, dilation)
        return
    rb = build_dense_rulebook(shape, batch_size, ks, stride, padding, dilation)
    assert_rulebook_invariants(rb)
    assert rb.geometry.out_spatial_shape == out_shape and rb.geometry.kind == "dense"
    # every grid site, in C order of (batch, *spatial), is the row order of the dense rulebook
    everything = 10 ** 6
    in_coords, out_coords = random_coords(everything, shape, batch_size), random_coords(everything, out_shape,
                                                                                       batch_size)
    assert rb.num_in == in_coords.size(0) and rb.num_out == out_coords.size(0)
    expected = reference_pairs(in_coords, out_coords, KernelRegion.cube(ks, len(ks)).taps, stride, padding, dilation)
    torch.testing.assert_close(rulebook_triples(rb), expected, rtol=0, atol=0)

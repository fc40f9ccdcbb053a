"""Generative transposed rulebook + gather_scatter against dense conv_transpose read at the new sites:
output, input gradient, weight gradient; output sites and pairs exact against brute force."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine import gather_scatter
from irregconv.rulebook import KernelRegion, build_transposed_rulebook, transposed_output_shape
from irregconv.testing import (DEVICES, assert_parity, assert_rulebook_invariants, conv_at_sites, dense_conv, densify,
                               draw_sites_and_region, random_coords, reference_output_sites, reference_pairs,
                               rulebook_triples, torch_rulebook_paths, values_at, weight_from_torch)

F64 = dict(rtol=1e-7, atol=1e-9)
F32 = dict(rtol=1e-4, atol=1e-5)
SHAPE_3D, SHAPE_2D = (5, 6, 7), (8, 9)


def _tuple(v, dims):
    return (v,) * dims if isinstance(v, int) else tuple(v)


def _check_transposed(shape, kernel_size, stride, padding, dilation, output_padding, groups, c_in=4, c_out=6,
                      batch_size=2, num_sites=30, dtype=torch.float64, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    dims = len(shape)
    coords = random_coords(num_sites, shape, batch_size, gen).to(device)
    region = KernelRegion.cube(kernel_size, dims)
    geometry = tuple(_tuple(v, dims) for v in (stride, padding, dilation, output_padding))
    rb, out_coords = build_transposed_rulebook(coords, shape, batch_size, region, *geometry)
    assert_rulebook_invariants(rb)
    assert rb.geometry.kind == "transposed" and rb.num_out == out_coords.size(0)
    expected_sites = reference_output_sites(coords, shape, batch_size, region.kernel_size, *geometry[:3],
                                            transposed=True, output_padding=geometry[3])
    torch.testing.assert_close(out_coords, expected_sites, rtol=0, atol=0)
    x = densify(torch.ones(coords.size(0), 1, device=device), coords, shape, batch_size)
    dense_out = dense_conv(x, torch.ones(1, 1, *region.kernel_size, device=device), *geometry[:3], transposed=True,
                           output_padding=geometry[3])
    assert rb.geometry.out_spatial_shape == tuple(dense_out.shape[2:])
    feats = torch.randn(coords.size(0), c_in, dtype=dtype, generator=gen).to(device).requires_grad_()
    shape_w = (region.volume, c_in, c_out) if groups == 1 else (region.volume, groups, c_in // groups, c_out // groups)
    weight = torch.randn(shape_w, dtype=dtype, generator=gen).to(device).requires_grad_()
    assert_parity(lambda f, w: gather_scatter(f, w, rb),
                  lambda f, w: conv_at_sites(f, coords, out_coords, w, shape, batch_size, region.kernel_size,
                                             *geometry[:3], transposed=True, output_padding=geometry[3]),
                  [feats, weight], generator=gen, **(F64 if dtype == torch.float64 else F32))


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1, 1), 5])
@pytest.mark.parametrize("stride", [1, 2, (2, 1, 1)])
@pytest.mark.parametrize("padding", [0, 1, (0, 1, 1)])
def test_transposed_3d_matches_conv_transpose(kernel_size, stride, padding):
    _check_transposed(SHAPE_3D, kernel_size, stride, padding, 1, 0, 1)


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("groups", [1, 2, "depthwise"])
@pytest.mark.parametrize("kernel_size, stride, padding, output_padding",
                         [(3, 2, 1, 1), (2, 2, 0, 0), ((3, 1, 1), (2, 1, 1), (0, 1, 1), (1, 0, 0))])
def test_transposed_3d_dilation_groups_output_padding(kernel_size, stride, padding, output_padding, dilation,
                                                      groups):
    if groups == "depthwise":
        _check_transposed(SHAPE_3D, kernel_size, stride, padding, dilation, output_padding, 4, c_in=4, c_out=4)
    else:
        _check_transposed(SHAPE_3D, kernel_size, stride, padding, dilation, output_padding, groups)


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1), 5])
@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding, dilation, output_padding, groups",
                         [(0, 1, 0, 1), (1, 2, 1, 2), ((0, 1), (2, 1), (1, 0), 1)])
def test_transposed_2d_matches_conv_transpose(kernel_size, stride, padding, dilation, output_padding, groups):
    _check_transposed(SHAPE_2D, kernel_size, stride, padding, dilation, output_padding, groups)


@pytest.mark.parametrize("device", DEVICES)
def test_transposed_on_device(device):
    _check_transposed(SHAPE_3D, 3, 2, 1, 1, 1, 1, device=device)
    _check_transposed(SHAPE_3D, (3, 1, 1), (2, 1, 1), (0, 1, 1), 2, (1, 0, 0), 2, device=device)
    _check_transposed(SHAPE_2D, 2, 2, 0, 1, 0, 1, device=device)


def test_transposed_float32():
    _check_transposed(SHAPE_3D, 3, 2, 1, 1, 1, 1, c_in=8, c_out=8, dtype=torch.float32, num_sites=80)


def test_transposed_region_matches_masked_conv_transpose():
    gen = torch.Generator().manual_seed(3)
    region = KernelRegion.cross(3, 3)
    coords = random_coords(40, SHAPE_3D, 2, gen)
    geometry = ((2, 1, 2), (1, 1, 0), (1, 2, 1))
    rb, out_coords = build_transposed_rulebook(coords, SHAPE_3D, 2, region, *geometry, (1, 0, 0))
    assert_rulebook_invariants(rb)
    torch.testing.assert_close(out_coords, reference_output_sites(coords, SHAPE_3D, 2, region.kernel_size, *geometry,
                                                                  taps=region.taps, transposed=True,
                                                                  output_padding=(1, 0, 0)), rtol=0, atol=0)
    mask = region.dense_mask()
    feats = torch.randn(coords.size(0), 4, dtype=torch.float64, generator=gen).requires_grad_()
    full = torch.randn(4, 5, *region.kernel_size, dtype=torch.float64, generator=gen).requires_grad_()

    def oracle(f, w):
        x = densify(f, coords, SHAPE_3D, 2)
        return values_at(dense_conv(x, w * mask, *geometry, transposed=True, output_padding=(1, 0, 0)), out_coords)

    assert_parity(lambda f, w: gather_scatter(f, weight_from_torch(w, 1, region.taps, transposed=True), rb), oracle,
                  [feats, full], generator=gen, **F64)


def test_transposed_empty_input():
    region = KernelRegion.cube(2, 3)
    rb, out_coords = build_transposed_rulebook(torch.zeros(0, 4, dtype=torch.int32), SHAPE_3D, 1, region,
                                               (2, 2, 2), (0, 0, 0), (1, 1, 1), (0, 0, 0))
    assert out_coords.shape == (0, 4) and rb.num_pairs == 0 and rb.geometry.out_spatial_shape == (10, 12, 14)
    feats = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 3, 2, dtype=torch.float64, requires_grad=True)
    out = gather_scatter(feats, weight, rb)
    assert out.shape == (0, 2)
    out.sum().backward()
    torch.testing.assert_close(weight.grad, torch.zeros_like(weight), rtol=0, atol=0)


def test_output_collapse_raises():
    with pytest.raises(ValueError, match=r"SparseConvTranspose: output size on spatial axis 0 would be -1"):
        build_transposed_rulebook(torch.zeros(1, 3, dtype=torch.int32), (1, 4), 1, KernelRegion.cube(1, 2),
                                  (1, 1), (1, 0), (1, 1), (0, 0))
    assert transposed_output_shape((4, 5), (3, 2), (2, 3), (1, 0), (1, 2), (1, 0)) == (8, 15)


@st.composite
def transposed_cases(draw):
    coords, shape, batch_size, region, axes = draw_sites_and_region(draw, max_extent=6, max_sites=25)
    stride, padding, dilation = axes(1, 3), axes(0, 2), axes(1, 2)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    return coords, shape, batch_size, region, stride, padding, dilation, output_padding


@settings(max_examples=40, deadline=None)
@given(transposed_cases())
def test_transposed_sites_and_pairs_are_exact(case):
    coords, shape, batch_size, region, stride, padding, dilation, output_padding = case
    geometry = (stride, padding, dilation, output_padding)
    try:
        transposed_output_shape(shape, region.kernel_size, *geometry)
    except ValueError:
        with pytest.raises(ValueError, match="output size on spatial axis"):
            build_transposed_rulebook(coords, shape, batch_size, region, *geometry)
        return
    rb, out_coords = build_transposed_rulebook(coords, shape, batch_size, region, *geometry)
    assert_rulebook_invariants(rb)
    torch.testing.assert_close(out_coords, reference_output_sites(
        coords, shape, batch_size, region.kernel_size, stride, padding, dilation, taps=region.taps, transposed=True,
        output_padding=output_padding), rtol=0, atol=0)
    # transposed: output site = input site * stride - padding + tap * dilation, i.e. the strided relation
    # with the roles of inputs and outputs swapped
    expected = torch.unique(reference_pairs(out_coords, coords, region.taps, stride, padding, dilation)[:, [0, 2, 1]],
                            dim=0)
    torch.testing.assert_close(rulebook_triples(rb), expected.reshape(-1, 3), rtol=0, atol=0)
    with torch_rulebook_paths():
        reference, reference_sites = build_transposed_rulebook(coords, shape, batch_size, region, *geometry)
    torch.testing.assert_close(reference_sites, out_coords, rtol=0, atol=0)
    torch.testing.assert_close(rulebook_triples(reference), rulebook_triples(rb), rtol=0, atol=0)

"""Strided rulebook (spconv's output sites) + gather_scatter against dense conv at the output sites, and
its transpose (the inverse conv) against conv_transpose at the input sites: output, input gradient,
weight gradient. Output sites and pairs exact against brute force."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine import gather_scatter
from irregconv.rulebook import KernelRegion, build_strided_rulebook, conv_output_shape
from irregconv.testing import (DEVICES, assert_parity, assert_rulebook_invariants, conv_at_sites, dense_conv, densify,
                               draw_sites_and_region, random_coords, reference_output_sites, reference_pairs,
                               rulebook_triples, torch_rulebook_paths, values_at, weight_from_torch)

F64 = dict(rtol=1e-7, atol=1e-9)
F32 = dict(rtol=1e-4, atol=1e-5)
SHAPE_3D, SHAPE_2D = (7, 8, 9), (10, 11)


def _tuple(v, dims):
    return (v,) * dims if isinstance(v, int) else tuple(v)


def _weight(volume, c_in, c_out, groups, dtype, gen):
    shape = (volume, c_in, c_out) if groups == 1 else (volume, groups, c_in // groups, c_out // groups)
    return torch.randn(shape, dtype=dtype, generator=gen)


def _restoring_padding(shape, kernel_size, stride, padding, dilation):
    """output_padding making conv_transpose's output grid equal to the strided conv's input grid."""
    out = conv_output_shape(shape, kernel_size, stride, padding, dilation)
    return tuple(s - ((o - 1) * st - 2 * p + d * (k - 1) + 1)
                 for s, o, k, st, p, d in zip(shape, out, kernel_size, stride, padding, dilation))


def _strided_case(shape, kernel_size, stride, padding, dilation, batch_size, num_sites, seed, device):
    gen = torch.Generator().manual_seed(seed)
    dims = len(shape)
    coords = random_coords(num_sites, shape, batch_size, gen).to(device)
    region = KernelRegion.cube(kernel_size, dims)
    geometry = tuple(_tuple(v, dims) for v in (stride, padding, dilation))
    rb, out_coords = build_strided_rulebook(coords, shape, batch_size, region, *geometry)
    assert_rulebook_invariants(rb)
    assert rb.geometry.kind == "strided" and rb.num_in == coords.size(0) and rb.num_out == out_coords.size(0)
    expected_sites = reference_output_sites(coords, shape, batch_size, region.kernel_size, *geometry)
    torch.testing.assert_close(out_coords, expected_sites, rtol=0, atol=0)
    return gen, coords, region, geometry, rb, out_coords


def _check_strided(shape, kernel_size, stride, padding, dilation, groups, c_in=4, c_out=6, batch_size=2,
                   num_sites=60, dtype=torch.float64, seed=0, device="cpu"):
    gen, coords, region, geometry, rb, out_coords = _strided_case(shape, kernel_size, stride, padding, dilation,
                                                                  batch_size, num_sites, seed, device)
    x = densify(torch.ones(coords.size(0), 1, device=device), coords, shape, batch_size)
    assert rb.geometry.out_spatial_shape == tuple(
        dense_conv(x, torch.ones(1, 1, *region.kernel_size, device=device), *geometry).shape[2:])
    feats = torch.randn(coords.size(0), c_in, dtype=dtype, generator=gen).to(device).requires_grad_()
    weight = _weight(region.volume, c_in, c_out, groups, dtype, gen).to(device).requires_grad_()
    tol = F64 if dtype == torch.float64 else F32
    assert_parity(lambda f, w: gather_scatter(f, w, rb),
                  lambda f, w: conv_at_sites(f, coords, out_coords, w, shape, batch_size, region.kernel_size,
                                             *geometry),
                  [feats, weight], generator=gen, **tol)
    # the inverse conv: the transpose maps the output sites back onto exactly the input sites; its dense
    # oracle is conv_transpose with the output_padding (< stride) that restores the input grid
    inverse = rb.transpose()
    assert_rulebook_invariants(inverse)
    assert inverse.geometry.kind == "inverse" and inverse.num_out == coords.size(0)
    assert inverse.geometry.out_spatial_shape == tuple(shape)
    feats_inv = torch.randn(out_coords.size(0), c_out, dtype=dtype, generator=gen).to(device).requires_grad_()
    weight_inv = _weight(region.volume, c_out, c_in, groups, dtype, gen).to(device).requires_grad_()
    assert_parity(lambda f, w: gather_scatter(f, w, inverse),
                  lambda f, w: conv_at_sites(f, out_coords, coords, w, rb.geometry.out_spatial_shape, batch_size,
                                             region.kernel_size, *geometry, transposed=True,
                                             output_padding=_restoring_padding(shape, region.kernel_size, *geometry)),
                  [feats_inv, weight_inv], generator=gen, **tol)


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1, 1), 5])
@pytest.mark.parametrize("stride", [1, 2, (2, 1, 1)])
@pytest.mark.parametrize("padding", [0, 1, (0, 1, 1)])
def test_strided_3d_matches_dense_conv(kernel_size, stride, padding):
    _check_strided(SHAPE_3D, kernel_size, stride, padding, 1, 1)


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("groups", [1, 2, "depthwise"])
@pytest.mark.parametrize("kernel_size, stride, padding", [(3, 2, 1), (2, 2, 0), ((3, 1, 1), (2, 1, 1), (0, 1, 1))])
def test_strided_3d_dilation_and_groups(kernel_size, stride, padding, dilation, groups):
    if groups == "depthwise":
        _check_strided(SHAPE_3D, kernel_size, stride, padding, dilation, 4, c_in=4, c_out=4)
    else:
        _check_strided(SHAPE_3D, kernel_size, stride, padding, dilation, groups)


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1), 5])
@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding, dilation, groups", [(0, 1, 1), (1, 2, 2), ((0, 1), (2, 1), 1)])
def test_strided_2d_matches_dense_conv(kernel_size, stride, padding, dilation, groups):
    _check_strided(SHAPE_2D, kernel_size, stride, padding, dilation, groups, num_sites=50)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_on_device(device):
    _check_strided(SHAPE_3D, 3, 2, 1, 1, 1, device=device)
    _check_strided(SHAPE_3D, (3, 1, 1), (2, 1, 1), (0, 1, 1), 2, 2, device=device)
    _check_strided(SHAPE_2D, 2, 2, 0, 1, 1, device=device)


def test_strided_float32():
    _check_strided(SHAPE_3D, 3, 2, 1, 1, 1, c_in=8, c_out=8, dtype=torch.float32, num_sites=200)


def test_strided_full_grid():
    _check_strided((4, 5, 6), 3, 2, 1, 1, 1, num_sites=10 ** 6, batch_size=1)


@pytest.mark.parametrize("make_region", [lambda: KernelRegion.cross(3, 3),
                                         lambda: KernelRegion.custom([[0, 0, 0], [1, 0, -1], [-1, 1, 1]])])
def test_strided_region_matches_masked_dense_conv(make_region):
    gen = torch.Generator().manual_seed(2)
    region = make_region()
    coords = random_coords(90, SHAPE_3D, 2, gen)
    geometry = ((2, 2, 1), (1, 0, 1), (1, 1, 2))
    rb, out_coords = build_strided_rulebook(coords, SHAPE_3D, 2, region, *geometry)
    assert_rulebook_invariants(rb)
    torch.testing.assert_close(
        out_coords, reference_output_sites(coords, SHAPE_3D, 2, region.kernel_size, *geometry, taps=region.taps),
        rtol=0, atol=0)
    mask = region.dense_mask()
    feats = torch.randn(coords.size(0), 4, dtype=torch.float64, generator=gen).requires_grad_()
    full = torch.randn(6, 4, *region.kernel_size, dtype=torch.float64, generator=gen).requires_grad_()

    def oracle(f, w):
        return values_at(dense_conv(densify(f, coords, SHAPE_3D, 2), w * mask, *geometry), out_coords)

    assert_parity(lambda f, w: gather_scatter(f, weight_from_torch(w, 1, region.taps), rb), oracle,
                  [feats, full], generator=gen, **F64)


def test_strided_empty_input():
    region = KernelRegion.cube(3, 3)
    rb, out_coords = build_strided_rulebook(torch.zeros(0, 4, dtype=torch.int32), SHAPE_3D, 2, region,
                                            (2, 2, 2), (1, 1, 1), (1, 1, 1))
    assert out_coords.shape == (0, 4) and rb.num_out == 0 and rb.num_pairs == 0
    assert_rulebook_invariants(rb)
    weight = torch.randn(27, 3, 5, dtype=torch.float64, requires_grad=True)
    feats = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    out = gather_scatter(feats, weight, rb)
    assert out.shape == (0, 5)
    out.sum().backward()
    torch.testing.assert_close(weight.grad, torch.zeros_like(weight), rtol=0, atol=0)
    inverse = gather_scatter(torch.zeros(0, 5, dtype=torch.float64), weight.transpose(1, 2), rb.transpose())
    assert inverse.shape == (0, 3)


def test_output_collapse_names_the_axis():
    with pytest.raises(ValueError, match=r"SparseConv: output size on spatial axis 1 would be 0 \(input 4, "
                                         r"kernel_size 5, stride 1, padding 0, dilation 1\)"):
        build_strided_rulebook(torch.zeros(1, 4, dtype=torch.int32), (9, 4, 9), 1, KernelRegion.cube(5, 3),
                               (1, 1, 1), (0, 0, 0), (1, 1, 1))
    assert conv_output_shape((9, 10), (3, 3), (2, 3), (1, 0), (1, 2)) == (5, 2)


@st.composite
def strided_cases(draw):
    coords, shape, batch_size, region, axes = draw_sites_and_region(draw, max_extent=8, max_sites=40)
    if draw(st.booleans()):  # unsorted sites take the builder's neighbour-map path instead of direct pairs
        shuffle = torch.Generator().manual_seed(draw(st.integers(0, 99)))
        coords = coords[torch.randperm(coords.size(0), generator=shuffle)]
    return coords, shape, batch_size, region, axes(1, 3), axes(0, 2), axes(1, 2)


@settings(max_examples=40, deadline=None)
@given(strided_cases())
def test_strided_sites_and_pairs_are_exact(case):
    coords, shape, batch_size, region, stride, padding, dilation = case
    try:
        conv_output_shape(shape, region.kernel_size, stride, padding, dilation)
    except ValueError:
        with pytest.raises(ValueError, match="output size on spatial axis"):
            build_strided_rulebook(coords, shape, batch_size, region, stride, padding, dilation)
        return
    rb, out_coords = build_strided_rulebook(coords, shape, batch_size, region, stride, padding, dilation)
    assert_rulebook_invariants(rb)
    expected_sites = reference_output_sites(coords, shape, batch_size, region.kernel_size, stride, padding,
                                            dilation, taps=region.taps)
    torch.testing.assert_close(out_coords, expected_sites, rtol=0, atol=0)
    expected = reference_pairs(coords, out_coords, region.taps, stride, padding, dilation)
    torch.testing.assert_close(rulebook_triples(rb), expected, rtol=0, atol=0)
    # every input site that some tap maps into the output grid is used; the transpose is the inverse
    inverse = rb.transpose()
    assert_rulebook_invariants(inverse)
    torch.testing.assert_close(rulebook_triples(inverse), torch.unique(expected[:, [0, 2, 1]], dim=0), rtol=0, atol=0)
    with torch_rulebook_paths():
        reference, reference_sites = build_strided_rulebook(coords, shape, batch_size, region, stride, padding,
                                                            dilation)
    torch.testing.assert_close(reference_sites, expected_sites, rtol=0, atol=0)
    torch.testing.assert_close(rulebook_triples(reference), expected, rtol=0, atol=0)

"""Submanifold rulebook + gather_scatter against a dense conv (padding (k // 2) * dilation) read at the
input sites: output, input gradient and weight gradient; exact pairs by brute force; symmetry."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine import gather_scatter
from irregconv.rulebook import KernelRegion, build_subm_rulebook
from irregconv.testing import (DEVICES, assert_parity, assert_rulebook_invariants, dense_conv, densify, random_coords,
                               reference_pairs, rulebook_triples, subm_conv_at_sites, torch_rulebook_paths,
                               values_at, weight_from_torch)

F64 = dict(rtol=1e-7, atol=1e-9)
F32 = dict(rtol=1e-4, atol=1e-5)
SHAPE_3D, SHAPE_2D = (6, 7, 8), (9, 11)


def _weight(volume, c_in, c_out, groups, dtype, gen):
    shape = (volume, c_in, c_out) if groups == 1 else (volume, groups, c_in // groups, c_out // groups)
    return torch.randn(shape, dtype=dtype, generator=gen)


def _check_subm(shape, kernel_size, dilation, groups, c_in=4, c_out=6, batch_size=2, num_sites=60,
                dtype=torch.float64, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    dims = len(shape)
    coords = random_coords(num_sites, shape, batch_size, gen).to(device)
    region = KernelRegion.cube(kernel_size, dims)
    dil = (dilation,) * dims if isinstance(dilation, int) else dilation
    rb = build_subm_rulebook(coords, shape, batch_size, region, dil)
    assert_rulebook_invariants(rb)
    feats = torch.randn(coords.size(0), c_in, dtype=dtype, generator=gen).to(device).requires_grad_()
    weight = _weight(region.volume, c_in, c_out, groups, dtype, gen).to(device).requires_grad_()
    assert_parity(lambda f, w: gather_scatter(f, w, rb),
                  lambda f, w: subm_conv_at_sites(f, coords, w, shape, batch_size, region.kernel_size, dil),
                  [feats, weight], generator=gen, **(F64 if dtype == torch.float64 else F32))


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1, 1), 5])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("groups", [1, 2, "depthwise"])
def test_subm_3d_matches_dense_conv(kernel_size, dilation, groups):
    if groups == "depthwise":
        _check_subm(SHAPE_3D, kernel_size, dilation, 4, c_in=4, c_out=4)
    else:
        _check_subm(SHAPE_3D, kernel_size, dilation, groups)


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1), 5, (2, 3)])
@pytest.mark.parametrize("dilation", [1, 2, (1, 2)])
@pytest.mark.parametrize("groups", [1, 2])
def test_subm_2d_matches_dense_conv(kernel_size, dilation, groups):
    _check_subm(SHAPE_2D, kernel_size, dilation, groups, num_sites=40)


@pytest.mark.parametrize("kernel_size", [2, (3, 2, 4)])
def test_subm_even_kernels(kernel_size):
    # even sizes have no centre symmetry: the builder looks every offset up
    _check_subm(SHAPE_3D, kernel_size, 1, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_subm_on_device(device):
    # on accelerators the rulebook comes from the pure-torch hash table and builders
    _check_subm(SHAPE_3D, 3, 1, 1, device=device)
    _check_subm(SHAPE_3D, (3, 1, 1), 2, 2, device=device)
    _check_subm(SHAPE_2D, 5, 1, 1, device=device)


def test_subm_float32():
    _check_subm(SHAPE_3D, 3, 1, 1, c_in=8, c_out=8, dtype=torch.float32, num_sites=150)


def test_subm_dense_grid_and_single_site():
    # every site active (no hole anywhere) and a lone site (only the centre offset has a pair)
    _check_subm((3, 4, 5), 3, 1, 1, num_sites=10 ** 6, batch_size=1)
    _check_subm((3, 4, 5), 3, 2, 2, num_sites=1, batch_size=3)


@pytest.mark.parametrize("make_region", [lambda: KernelRegion.cross(3, 3), lambda: KernelRegion.cross((5, 3, 1), 3),
                                         lambda: KernelRegion.custom([[0, 0, 0], [1, 0, 0], [0, -2, 1], [-1, 1, 1]]),
                                         lambda: KernelRegion.custom([[1, 0, 2], [-1, 0, -2], [0, 1, 0], [0, -1, 0]])])
@pytest.mark.parametrize("groups", [1, 2])
def test_subm_region_matches_masked_dense_conv(make_region, groups):
    gen = torch.Generator().manual_seed(1)
    region = make_region()
    coords = random_coords(80, SHAPE_3D, 2, gen)
    rb = build_subm_rulebook(coords, SHAPE_3D, 2, region, (1, 2, 1))
    assert_rulebook_invariants(rb)
    mask = region.dense_mask()
    padding = tuple((k // 2) * d for k, d in zip(region.kernel_size, (1, 2, 1)))
    feats = torch.randn(coords.size(0), 4, dtype=torch.float64, generator=gen).requires_grad_()
    # the parameter is a full torch-layout weight; the engine sees its region taps, the oracle its masked box
    full = torch.randn(6, 4 // groups, *region.kernel_size, dtype=torch.float64, generator=gen).requires_grad_()

    def oracle(f, w):
        x = densify(f, coords, SHAPE_3D, 2)
        return values_at(dense_conv(x, w * mask, 1, padding, (1, 2, 1), groups), coords)

    assert_parity(lambda f, w: gather_scatter(f, weight_from_torch(w, groups, region.taps), rb), oracle,
                  [feats, full], generator=gen, **F64)


def test_subm_empty_input():
    coords = torch.zeros(0, 4, dtype=torch.int32)
    region = KernelRegion.cube(3, 3)
    rb = build_subm_rulebook(coords, SHAPE_3D, 2, region, (1, 1, 1))
    assert rb.num_in == rb.num_out == rb.num_pairs == 0 and rb.kernel_volume == 27
    assert_rulebook_invariants(rb)
    feats = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(27, 3, 5, dtype=torch.float64, requires_grad=True)
    out = gather_scatter(feats, weight, rb)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert feats.grad.shape == (0, 3)
    torch.testing.assert_close(weight.grad, torch.zeros_like(weight), rtol=0, atol=0)


@st.composite
def custom_regions(draw, dims):
    """Custom regions, often symmetric (so the builder mirrors offsets), with or without the centre."""
    vectors = st.lists(st.integers(-2, 2), min_size=dims, max_size=dims).map(tuple)
    disp = set(draw(st.lists(vectors, min_size=1, max_size=6)))
    if draw(st.booleans()):
        disp |= {tuple(-v for v in d) for d in disp}
    if draw(st.booleans()):
        disp.discard((0,) * dims)
    return KernelRegion.custom(sorted(disp) or [(1,) * dims])


@st.composite
def subm_cases(draw):
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=dims, max_size=dims)))
    batch_size = draw(st.integers(1, 3))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    coords = random_coords(draw(st.integers(0, 40)), shape, batch_size, gen)
    if draw(st.booleans()):  # sites in any order, not only sorted by key (the CPU builder sorts them itself)
        coords = coords[torch.randperm(coords.size(0), generator=gen)]
    kind = draw(st.sampled_from(["cube", "cross", "custom"]))
    ks = tuple(draw(st.lists(st.integers(1, 5), min_size=dims, max_size=dims)))
    region = {"cube": KernelRegion.cube, "cross": KernelRegion.cross}[kind](ks, dims) if kind != "custom" else \
        draw(custom_regions(dims))
    dilation = tuple(draw(st.lists(st.integers(1, 3), min_size=dims, max_size=dims)))
    return coords, shape, batch_size, region, dilation


@settings(max_examples=50, deadline=None)
@given(subm_cases())
def test_subm_pairs_are_exact(case):
    coords, shape, batch_size, region, dilation = case
    rb = build_subm_rulebook(coords, shape, batch_size, region, dilation)
    assert_rulebook_invariants(rb)
    assert rb.geometry.kind == "subm" and rb.kernel_volume == region.volume
    padding = tuple((k // 2) * d for k, d in zip(region.kernel_size, dilation))
    expected = reference_pairs(coords, coords, region.taps, 1, padding, dilation)
    torch.testing.assert_close(rulebook_triples(rb), expected, rtol=0, atol=0)
    # the pure-torch paths (any device) build the same rulebook as the numba kernels
    with torch_rulebook_paths():
        reference = build_subm_rulebook(coords, shape, batch_size, region, dilation, backend="torch")
    torch.testing.assert_close(rulebook_triples(reference), expected, rtol=0, atol=0)
    assert reference.identity_offset == rb.identity_offset


@settings(max_examples=50, deadline=None)
@given(subm_cases())
def test_subm_symmetry_and_identity(case):
    coords, shape, batch_size, region, dilation = case
    rb = build_subm_rulebook(coords, shape, batch_size, region, dilation)
    mirror = region.mirror()
    if mirror is None:  # even kernel size somewhere, or an asymmetric custom region
        return
    n = coords.size(0)
    assert rb.identity_offset == region.centre_index()  # None for a region without its centre
    for k in range(region.volume):
        s, e = rb.offset_ptr[k], rb.offset_ptr[k + 1]
        m = int(mirror[k])
        sm, em = rb.offset_ptr[m], rb.offset_ptr[m + 1]
        # offset -k is offset k with inputs and outputs swapped
        forward = rb.out_idx[s:e] * max(n, 1) + rb.in_idx[s:e]
        backward = rb.in_idx[sm:em] * max(n, 1) + rb.out_idx[sm:em]
        torch.testing.assert_close(forward.sort().values, backward.sort().values, rtol=0, atol=0)
    transpose = rb.transpose()
    torch.testing.assert_close(rulebook_triples(transpose)[:, 0], rulebook_triples(rb)[:, 0], rtol=0, atol=0)

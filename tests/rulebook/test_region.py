"""KernelRegion: cube / cross / custom taps, C order, centre, mirror, dense mask, argument errors."""
import itertools

import pytest
import torch

from irregconv.rulebook import KernelRegion


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1, 1), (2, 3, 4), 5])
def test_cube_taps_in_c_order(kernel_size):
    region = KernelRegion.cube(kernel_size, 3)
    ks = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
    assert region.kernel_size == ks and region.kind == "cube" and region.dims == 3
    expected = torch.tensor(list(itertools.product(*[range(k) for k in ks])))
    torch.testing.assert_close(region.taps, expected, rtol=0, atol=0)
    # tap k is the flat C-order index of its position in the box (torch's weight[..., *tap])
    flat = torch.arange(region.volume).reshape(ks)
    torch.testing.assert_close(flat[tuple(region.taps.t())], torch.arange(region.volume), rtol=0, atol=0)
    assert bool(region.dense_mask().all()) and region.dense_mask().shape == ks


def test_cross_region():
    region = KernelRegion.cross(3, 3)
    assert region.volume == 7 and region.kind == "cross"
    disp = region.displacements((1, 1, 1))
    assert sorted(map(tuple, disp.tolist())) == sorted(
        [(0, 0, 0)] + [tuple(s * (a == i) for a in range(3)) for i in range(3) for s in (-1, 1)])
    mask = region.dense_mask()
    assert int(mask.sum()) == 7 and bool(mask[1, 1, 1]) and not bool(mask[0, 0, 0])
    assert KernelRegion.cross((5, 3), 2).volume == 4 + 2 + 1


def test_custom_region():
    region = KernelRegion.custom([[0, 0], [2, 0], [-1, 1]])
    assert region.kernel_size == (5, 3) and region.kind == "custom" and region.volume == 3
    torch.testing.assert_close(region.displacements((1, 1)), torch.tensor([[0, 0], [2, 0], [-1, 1]]), rtol=0, atol=0)
    torch.testing.assert_close(region.displacements((2, 3)), torch.tensor([[0, 0], [4, 0], [-2, 3]]), rtol=0, atol=0)
    assert region.centre_index() == 0
    assert region.mirror() is None  # (2, 0) has no (-2, 0)
    assert int(region.dense_mask().sum()) == 3 and bool(region.dense_mask()[4, 1])
    with pytest.raises(ValueError, match="KernelRegion.custom: displacements contains a repeated vector"):
        KernelRegion.custom([[0, 1], [0, 1]])
    with pytest.raises(ValueError, match=r"KernelRegion.custom: displacements must be a non-empty \[K, D\]"):
        KernelRegion.custom([])


@pytest.mark.parametrize("make", [lambda: KernelRegion.cube(3, 3), lambda: KernelRegion.cube((3, 1, 5), 3),
                                  lambda: KernelRegion.cross(5, 3), lambda: KernelRegion.cube(3, 2),
                                  lambda: KernelRegion.custom([[0, 0], [1, 2], [-1, -2]])])
def test_mirror_and_centre_of_symmetric_regions(make):
    region = make()
    mirror = region.mirror()
    disp = region.displacements((1,) * region.dims)
    torch.testing.assert_close(disp[mirror], -disp, rtol=0, atol=0)
    torch.testing.assert_close(mirror[mirror], torch.arange(region.volume), rtol=0, atol=0)
    centre = region.centre_index()
    assert bool((disp[centre] == 0).all()) and int(mirror[centre]) == centre


def test_even_kernels_have_no_mirror():
    assert KernelRegion.cube(2, 3).mirror() is None
    assert KernelRegion.cube((3, 2, 3), 3).mirror() is None


def test_regions_key_by_structure():
    assert KernelRegion.cube(3, 3).key == KernelRegion.cube((3, 3, 3), 3).key
    assert KernelRegion.cube(3, 3).key != KernelRegion.cross(3, 3).key
    assert KernelRegion.cube(3, 3).key != KernelRegion.cube(3, 2).key
    assert "cross" in repr(KernelRegion.cross(3, 3))


@pytest.mark.parametrize("bad, error, match", [
    (0, ValueError, "kernel_size must be >= 1 on every axis, got 0"),
    ((3, 3), ValueError, r"kernel_size must have 3 entries \(one per spatial axis\), got \(3, 3\)"),
    (True, TypeError, "kernel_size must be an int or a sequence of 3 ints, got True"),
    ("abc", TypeError, "KernelRegion: kernel_size must be an int or a sequence of 3 ints, got 'abc'"),
    ((3, 2.5, 3), TypeError, r"KernelRegion: kernel_size must be an int or a sequence of 3 ints, got \(3, 2.5, 3\)"),
    (2.0, TypeError, "kernel_size must be an int or a sequence of 3 ints, got 2.0"),
    (None, TypeError, "kernel_size must be an int or a sequence of 3 ints, got None"),
])
def test_bad_kernel_size(bad, error, match):
    with pytest.raises(error, match=match):
        KernelRegion.cube(bad, 3)


def test_integral_non_int_kernel_sizes_are_accepted():
    assert KernelRegion.cube((3, 3.0, torch.tensor(1)), 3).kernel_size == (3, 3, 1)

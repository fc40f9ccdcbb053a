"""functional.sparse_conv: every kind with raw engine weights (plain and grouped, with and without bias)
against the dense oracles (output and both gradients); the cached rulebook helpers return the same
rulebooks and sites on repeat, record the way back on strided output sites, and the inverse look-up
finds, disambiguates or refuses a strided parent with clear messages."""
import pytest
import torch

from irregconv import SparseTensor
from irregconv.functional import sparse_conv
from irregconv.functional.sparse_conv import (KINDS, inverse_rulebook, strided_rulebook, subm_rulebook,
                                              transposed_rulebook)
from irregconv.rulebook import KernelRegion
from irregconv.testing import (DEVICES, assert_parity, conv_at_sites, random_coords, reference_output_sites,
                               subm_conv_at_sites)

F64 = dict(rtol=1e-7, atol=1e-9)
SHAPE, BATCH = (5, 6, 7), 2
CUBE = KernelRegion.cube(3, 3)
ONES, TWOS = (1, 1, 1), (2, 2, 2)


def _input(channels=4, num_sites=20, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    coords = random_coords(num_sites, SHAPE, BATCH, gen)
    return SparseTensor(torch.randn(coords.size(0), channels, dtype=torch.float64, generator=gen).to(device),
                        coords.to(device), SHAPE, BATCH)


def _params(groups, bias, c_in=4, c_out=6, volume=27, device="cpu"):
    gen = torch.Generator().manual_seed(1)
    shape = (volume, c_in, c_out) if groups == 1 else (volume, groups, c_in // groups, c_out // groups)
    weight = torch.randn(shape, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    return [weight] + ([torch.randn(c_out, dtype=torch.float64, generator=gen).to(device).requires_grad_()]
                       if bias else [])


def _run(x, kind, **kwargs):
    def run(feats, weight, bias=None):
        return sparse_conv(x.replace(feats), weight, bias, CUBE, kind, TWOS, ONES, ONES, **kwargs).feats
    return run


def _with_bias(oracle):
    return lambda feats, weight, bias=None: oracle(feats, weight) + (0 if bias is None else bias)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_subm_and_strided_kinds_match_dense_conv(groups, bias, device):
    x = _input(device=device)
    leaves = [x.feats.clone().requires_grad_(), *_params(groups, bias, device=device)]
    # submanifold: stride and padding are ignored, outputs on the input sites
    subm = _with_bias(lambda f, w: subm_conv_at_sites(f, x.coords, w, SHAPE, BATCH, (3, 3, 3)))
    assert_parity(lambda f, w, b=None: sparse_conv(x.replace(f), w, b, CUBE, "subm", TWOS, ONES, ONES).feats,
                  subm, leaves, **F64)
    out = reference_output_sites(x.coords, SHAPE, BATCH, (3, 3, 3), 2, 1)
    strided = _with_bias(lambda f, w: conv_at_sites(f, x.coords, out, w, SHAPE, BATCH, (3, 3, 3), 2, 1))
    assert_parity(_run(x, "strided"), strided, leaves, **F64)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_transposed_and_inverse_kinds_match_conv_transpose(groups, bias):
    x = _input(num_sites=8)
    leaves = [x.feats.clone().requires_grad_(), *_params(groups, bias)]
    out = reference_output_sites(x.coords, SHAPE, BATCH, (3, 3, 3), 2, 1, transposed=True, output_padding=1)
    transposed = _with_bias(lambda f, w: conv_at_sites(f, x.coords, out, w, SHAPE, BATCH, (3, 3, 3), 2, 1,
                                                       transposed=True, output_padding=1))
    assert_parity(_run(x, "transposed", output_padding=ONES), transposed, leaves, **F64)
    # the inverse of the strided conv (grid 5x6x7 -> 3x3x4 -> back, output padding (0, 1, 0) restores it)
    down = sparse_conv(x, _params(1, False, c_out=4)[0].detach(), None, CUBE, "strided", TWOS, ONES, ONES)
    leaves[0] = down.feats.clone().requires_grad_()
    inverse = _with_bias(lambda f, w: conv_at_sites(f, down.coords, x.coords, w, down.spatial_shape, BATCH,
                                                    (3, 3, 3), 2, 1, transposed=True, output_padding=(0, 1, 0)))
    assert_parity(_run(down, "inverse"), inverse, leaves, **F64)
    assert sparse_conv(down, leaves[1], None, CUBE, "inverse", None, None, ONES).sites is x.sites


def test_unknown_kind_raises():
    x = _input()
    with pytest.raises(ValueError, match=r"sparse_conv: kind must be one of \('subm', 'strided', 'transposed', "
                                         r"'inverse'\), got 'dense'"):
        sparse_conv(x, torch.zeros(27, 4, 4, dtype=torch.float64), None, CUBE, "dense", ONES, ONES, ONES)
    assert KINDS == ("subm", "strided", "transposed", "inverse")


def test_cached_helpers_return_the_same_rulebooks_and_sites():
    x = _input()
    sites = x.sites
    assert subm_rulebook(sites, CUBE, ONES) is subm_rulebook(sites, CUBE, ONES) and sites.cache.builds == 1
    assert subm_rulebook(sites, CUBE, TWOS) is not subm_rulebook(sites, CUBE, ONES) and sites.cache.builds == 2
    rulebook, out = strided_rulebook(sites, CUBE, TWOS, ONES, ONES)
    again = strided_rulebook(sites, CUBE, TWOS, ONES, ONES)
    assert again[0] is rulebook and again[1] is out and sites.cache.builds == 3
    torch.testing.assert_close(out.coords, reference_output_sites(x.coords, SHAPE, BATCH, (3, 3, 3), 2, 1),
                               rtol=0, atol=0)
    assert out.spatial_shape == (3, 3, 4) and out.batch_size == BATCH and len(out.cache) == 0
    (key, (parent, back)), = out.parents.items()
    assert key == ("strided", CUBE.key, TWOS, ONES, ONES) and parent is sites and back is rulebook
    up, generated = transposed_rulebook(sites, CUBE, TWOS, ONES, ONES, ONES)
    assert transposed_rulebook(sites, CUBE, TWOS, ONES, ONES, ONES)[1] is generated and not generated.parents
    assert generated.spatial_shape == (10, 12, 14) and up.num_in == x.num_sites
    inverse, target = inverse_rulebook(out, CUBE)
    assert target is sites and inverse is rulebook.transpose() and inverse.num_out == x.num_sites


def test_inverse_rulebook_needs_a_matching_parent():
    x = _input()
    with pytest.raises(ValueError, match=r"MyConv: these sites were not produced by a strided sparse conv with "
                                         r"kernel_size=\(3, 3, 3\); .* produced by: no strided conv"):
        inverse_rulebook(x.sites, CUBE, owner="MyConv")
    _, first = strided_rulebook(x.sites, CUBE, TWOS, ONES, ONES)
    _, second = strided_rulebook(x.sites, CUBE, TWOS, (0, 0, 0), ONES)
    # two strided convs that happen to produce the same sites (here: the record of the second copied over)
    first.parents.update(second.parents)
    with pytest.raises(ValueError, match=r"sparse_conv: 2 strided convs with kernel_size=\(3, 3, 3\) produced these "
                                         r"sites; pass stride/padding/dilation to say which one to invert"):
        inverse_rulebook(first, CUBE, owner="sparse_conv")
    rulebook, parent = inverse_rulebook(first, CUBE, padding=(0, 0, 0))
    assert parent is x.sites and rulebook is second.parents[("strided", CUBE.key, TWOS, (0, 0, 0), ONES)][1].transpose()
    with pytest.raises(ValueError, match=r"\(stride=\(1, 1, 1\)\)"):
        inverse_rulebook(first, CUBE, stride=ONES)
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3, 3\)"):
        inverse_rulebook(first, KernelRegion.cross(3, 3))

"""The test oracles themselves: weight layouts, densify / values_at, brute-force pairs."""
import pytest
import torch

from irregconv.testing import (conv_at_sites, densify, krsc_to_torch, reference_output_sites, reference_pairs,
                               torch_to_krsc, values_at, weight_from_torch, weight_to_torch)


def test_weight_to_torch_is_the_documented_permutation():
    w = torch.randn(3 * 1 * 2, 4, 5, dtype=torch.float64)
    expected = w.reshape(3, 1, 2, 4, 5).permute(-1, -2, 0, 1, 2)
    torch.testing.assert_close(weight_to_torch(w, (3, 1, 2)), expected, rtol=0, atol=0)
    # tap k is the C-order flat index of the kernel position
    torch.testing.assert_close(weight_to_torch(w, (3, 1, 2))[:, :, 2, 0, 1], w[2 * 2 + 1].t(), rtol=0, atol=0)
    expected_t = w.reshape(3, 1, 2, 4, 5).permute(-2, -1, 0, 1, 2)
    torch.testing.assert_close(weight_to_torch(w, (3, 1, 2), transposed=True), expected_t, rtol=0, atol=0)


@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("transposed", [False, True])
def test_weight_layout_round_trip(groups, transposed):
    k = (3, 2)
    # conv [C_out, C_in/G, *k] or transposed [C_in, C_out/G, *k]
    w = torch.randn(6, 6 // groups, 3, 2, dtype=torch.float64)
    engine = weight_from_torch(w, groups, transposed=transposed)
    assert engine.shape == ((6, 6, 6) if groups == 1 else (6, groups, 6 // groups, 6 // groups))
    torch.testing.assert_close(weight_to_torch(engine, k, transposed=transposed), w, rtol=0, atol=0)


def test_grouped_weight_matches_channel_blocks():
    # engine [K, G, C_in/G, C_out/G]: output channel g * C_out/G + j reads input channels of block g
    w = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    x = torch.randn(5, 6, 1, dtype=torch.float64)
    out = torch.nn.functional.conv1d(x, weight_to_torch(w, (1,)), groups=2)[:, :, 0]
    expected = torch.cat([x[:, :3, 0] @ w[0, 0], x[:, 3:, 0] @ w[0, 1]], dim=1)
    torch.testing.assert_close(out, expected)


def test_taps_leave_zeros_elsewhere():
    taps = torch.tensor([[0, 1], [1, 1], [2, 0]])
    w = torch.randn(3, 2, 4, dtype=torch.float64)
    full = weight_to_torch(w, (3, 2), taps)
    mask = torch.zeros(3, 2, dtype=torch.bool)
    mask[tuple(taps.t())] = True
    assert bool((full[:, :, ~mask] == 0).all())
    torch.testing.assert_close(weight_from_torch(full, taps=taps), w, rtol=0, atol=0)


def test_krsc_round_trip():
    w = torch.randn(4, 3, 3, 3, 2)
    assert krsc_to_torch(w).shape == (4, 2, 3, 3, 3)
    torch.testing.assert_close(torch_to_krsc(krsc_to_torch(w)), w, rtol=0, atol=0)
    torch.testing.assert_close(krsc_to_torch(w)[1, 0, 2, 1, 0], w[1, 2, 1, 0, 0], rtol=0, atol=0)


def test_densify_and_values_at():
    coords = torch.tensor([[0, 1, 2], [1, 0, 0], [1, 3, 1]], dtype=torch.int32)
    feats = torch.randn(3, 2, dtype=torch.float64)
    grid = densify(feats, coords, (4, 3), 2)
    assert grid.shape == (2, 2, 4, 3)
    torch.testing.assert_close(grid[1, :, 3, 1], feats[2], rtol=0, atol=0)
    assert float(grid.abs().sum()) == pytest.approx(float(feats.abs().sum()))
    torch.testing.assert_close(values_at(grid, coords), feats, rtol=0, atol=0)


def test_one_by_one_conv_is_a_matmul():
    coords = torch.tensor([[0, 1, 2, 0], [0, 0, 0, 1], [1, 3, 1, 1]], dtype=torch.int32)
    feats = torch.randn(3, 2, dtype=torch.float64)
    w = torch.randn(1, 2, 5, dtype=torch.float64)
    out = conv_at_sites(feats, coords, coords, w, (4, 3, 2), 2, (1, 1, 1))
    torch.testing.assert_close(out, feats @ w[0])


def test_reference_pairs_and_sites_by_hand():
    # 1D, kernel 2, stride 2: input x feeds output o through tap t when x = 2 o + t
    coords = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 0]], dtype=torch.int32)
    out = reference_output_sites(coords, (5,), 2, (2,), stride=2)
    torch.testing.assert_close(out, torch.tensor([[0, 0], [0, 1], [1, 0]], dtype=torch.int32), rtol=0, atol=0)
    pairs = reference_pairs(coords, out, torch.tensor([[0], [1]]), stride=2)
    expected = torch.tensor([[0, 1, 1], [0, 2, 3], [1, 0, 0], [1, 1, 2]])  # (k, out, in)
    torch.testing.assert_close(pairs, expected, rtol=0, atol=0)

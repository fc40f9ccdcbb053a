"""SparseTensor: construction and validation, duplicate merging, dense round trips, immutability and
shared sites (the rulebook cache travels with replace())."""
import pytest
import torch

from irregconv import SparseTensor
from irregconv.hashing import pack_keys
from irregconv.testing import DEVICES, densify, random_coords


def test_construction_defaults_and_properties():
    coords = torch.tensor([[0, 1, 2, 0], [1, 3, 0, 4], [0, 0, 5, 1]])
    t = SparseTensor(torch.randn(3, 2), coords)
    assert t.coords.dtype == torch.int32 and t.spatial_shape == (4, 6, 5) and t.batch_size == 2
    assert (t.num_sites, t.num_channels, t.dims, t.device.type, t.dtype) == (3, 2, 3, "cpu", torch.float32)
    torch.testing.assert_close(t.coords, coords.int(), rtol=0, atol=0)  # input order kept
    torch.testing.assert_close(t.sites.keys, pack_keys(coords, (4, 6, 5), 2), rtol=0, atol=0)
    assert repr(t) == ("SparseTensor(num_sites=3, channels=2, spatial_shape=(4, 6, 5), batch_size=2, "
                       "dtype=torch.float32, device=cpu)")
    assert len(t.sites) == 3 and t.sites.table.lookup(t.sites.keys).tolist() == [0, 1, 2]


def test_empty_tensor():
    t = SparseTensor(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.int32), spatial_shape=(3, 4, 5), batch_size=2)
    assert t.num_sites == 0 and t.dense().shape == (2, 4, 3, 4, 5) and not t.dense().any()
    default = SparseTensor(torch.zeros(0, 1), torch.zeros(0, 3, dtype=torch.int32))
    assert default.spatial_shape == (1, 1) and default.batch_size == 1


@pytest.mark.parametrize("feats, coords, kwargs, error, match", [
    (torch.zeros(2, 1), [[0, 1], [0, 2]], {}, TypeError, "SparseTensor: coords must be an integer torch.Tensor"),
    (torch.zeros(2, 1), torch.zeros(2, 3), {}, TypeError,
     "SparseTensor: coords must be an integer tensor .* got torch.float32"),
    (torch.zeros(2, 1), torch.zeros(2, 1, dtype=torch.long), {}, ValueError, r"coords must have shape \[N, 1 \+ D\]"),
    (torch.zeros(2, 1), torch.tensor([[0, 1, -2], [0, 0, 0]]), {}, ValueError,
     "SparseTensor: coords column 2 has negative value -2"),
    (torch.zeros(2, 1), torch.tensor([[0, 1, 2], [0, 0, 7]]), {"spatial_shape": (4, 7)}, ValueError,
     r"spatial axis 1 \(column 2\) = 7, but spatial_shape\[1\] = 7"),
    (torch.zeros(2, 1), torch.tensor([[2, 1, 2], [0, 0, 0]]), {"batch_size": 2}, ValueError,
     r"batch index \(column 0\) = 2, but batch_size = 2"),
    (torch.zeros(2, 1), torch.tensor([[0, 1, 2], [0, 0, 0]]), {"spatial_shape": (4, 4, 4)}, ValueError,
     "spatial_shape .* has 3 axes but coords has 2 spatial columns"),
    ([[0.0], [1.0]], torch.zeros(2, 3, dtype=torch.long), {}, TypeError, "SparseTensor: feats must be a torch.Tensor"),
    (torch.zeros(2), torch.zeros(2, 3, dtype=torch.long), {}, ValueError, r"feats must have shape \[N, C\], got \[2\]"),
    (torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), {}, TypeError,
     "feats must be floating point, got torch.int64"),
    (torch.zeros(3, 1), torch.zeros(2, 3, dtype=torch.long), {}, ValueError, "feats has 3 rows but coords has 2"),
    (torch.zeros(2, 1), torch.tensor([[0, 1, 2], [0, 1, 2]]), {}, ValueError,
     r"coords has duplicate site \[0, 1, 2\] at rows \[0, 1\]"),
    (torch.zeros(1, 1), torch.tensor([[0, 2 ** 31, 2]]), {}, ValueError, "coords has value 2147483648, beyond int32"),
    (torch.zeros(2, 1), torch.tensor([[0, 1, 2], [0, 1, 2]]), {"merge": "sum_"}, ValueError,
     r"merge must be None or one of \('sum', 'mean', 'max'\), got 'sum_'"),
])
def test_bad_input(feats, coords, kwargs, error, match):
    with pytest.raises(error, match=match):
        SparseTensor(feats, coords, **kwargs)


@pytest.mark.parametrize("merge", ["sum", "mean", "max"])
def test_merge_duplicates(merge):
    gen = torch.Generator().manual_seed(0)
    sites = random_coords(6, (3, 4), 2, gen)
    pick = torch.randint(0, sites.size(0), (30,), generator=gen)
    coords, feats = sites[pick], torch.randn(30, 3, dtype=torch.float64, generator=gen)
    t = SparseTensor(feats, coords, spatial_shape=(3, 4), batch_size=2, merge=merge)
    assert t.num_sites == torch.unique(pick).numel()
    # merged sites come out in key order
    assert bool((t.sites.keys.diff() > 0).all())
    torch.testing.assert_close(t.sites.keys, pack_keys(t.coords, (3, 4), 2), rtol=0, atol=0)
    for row, site in enumerate(t.coords.tolist()):
        group = feats[(coords == torch.tensor(site, dtype=coords.dtype)).all(dim=1)]
        expected = {"sum": group.sum(0), "mean": group.mean(0), "max": group.max(0).values}[merge]
        torch.testing.assert_close(t.feats[row], expected)
    merged = lambda f: SparseTensor(f, coords, spatial_shape=(3, 4), batch_size=2, merge=merge).feats  # noqa: E731
    assert torch.autograd.gradcheck(merged, [feats[:, :2].clone().requires_grad_()])


def test_dense_matches_oracle_and_is_differentiable():
    gen = torch.Generator().manual_seed(1)
    coords = random_coords(20, (4, 5, 6), 2, gen)
    feats = torch.randn(coords.size(0), 3, dtype=torch.float64, generator=gen, requires_grad=True)
    t = SparseTensor(feats, coords, spatial_shape=(4, 5, 6), batch_size=2)
    torch.testing.assert_close(t.dense(), densify(feats, coords, (4, 5, 6), 2), rtol=0, atol=0)
    torch.testing.assert_close(t.dense(channels_first=False), t.dense().movedim(1, -1), rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda f: SparseTensor(f, coords, (4, 5, 6), 2).dense(), [feats])


def test_from_dense_round_trip():
    gen = torch.Generator().manual_seed(2)
    dense = torch.randn(2, 3, 4, 5, generator=gen) * (torch.rand(2, 1, 4, 5, generator=gen) < 0.3)
    t = SparseTensor.from_dense(dense)
    assert t.spatial_shape == (4, 5) and t.batch_size == 2
    torch.testing.assert_close(t.dense(), dense, rtol=0, atol=0)
    mask = torch.zeros(2, 4, 5, dtype=torch.bool)
    mask[1, 2, 3] = True
    masked = SparseTensor.from_dense(dense, mask)
    assert masked.coords.tolist() == [[1, 2, 3]]
    torch.testing.assert_close(masked.feats[0], dense[1, :, 2, 3], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"SparseTensor.from_dense: mask must have shape \[2, 4, 5\], got \[4, 5\]"):
        SparseTensor.from_dense(dense, mask[0])
    with pytest.raises(ValueError, match="SparseTensor.from_dense: dense must be"):
        SparseTensor.from_dense(torch.zeros(3, 4))


@pytest.mark.parametrize("device", DEVICES)
def test_to_device(device):
    coords = random_coords(10, (4, 4, 4), 2)
    t = SparseTensor(torch.randn(coords.size(0), 2), coords, spatial_shape=(4, 4, 4), batch_size=2)
    moved = t.to(device)
    assert moved.device.type == torch.device(device).type and moved.coords.device == moved.device
    assert (moved.spatial_shape, moved.batch_size) == (t.spatial_shape, t.batch_size)
    torch.testing.assert_close(moved.dense().cpu(), t.dense(), rtol=0, atol=0)
    # same device: same sites (and rulebooks); another device: its own sites and cache
    assert (moved.sites is t.sites) == (moved.device == t.device)


def test_replace_and_to_share_sites():
    coords = random_coords(10, (4, 4, 4), 1)
    t = SparseTensor(torch.randn(10, 2), coords, spatial_shape=(4, 4, 4))
    u = t.replace(torch.randn(10, 7))
    assert u.sites is t.sites and u.num_channels == 7 and t.num_channels == 2  # t unchanged
    d = t.to(torch.float64)
    assert d.sites is t.sites and d.dtype == torch.float64 and t.dtype == torch.float32
    assert t.to(torch.float32) is t and t.cpu() is t
    with pytest.raises(ValueError, match=r"SparseTensor.replace: feats must be \[N, C\] with N = 10 rows, got \[9"):
        t.replace(torch.randn(9, 2))
    with pytest.raises(ValueError, match=r"SparseTensor.from_sites: feats must be \[N, C\] with N = 10"):
        SparseTensor.from_sites(torch.randn(3, 2), t.sites)
    with pytest.raises(AttributeError):
        t.extra = 1  # __slots__: no stray attributes

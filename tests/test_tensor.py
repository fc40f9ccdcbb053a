"""SparseTensor: construction and validation, duplicate merging, dense round trips, immutability and
shared sites (the rulebook cache travels with replace()), torch.save / torch.load with weights_only=True
and pickling, and SparseTensor.cat."""
import pickle

import pytest
import torch

import irregconv.nn as icnn
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


# ------------------------------------------------------------------ immutable fields, save / load, cat

@pytest.mark.parametrize("name", ["feats", "sites", "coords", "spatial_shape", "batch_size", "extra"])
def test_fields_cannot_be_reassigned_or_deleted(name):
    t = SparseTensor(torch.randn(3, 2), torch.tensor([[0, 1, 2], [0, 3, 0], [1, 0, 0]]))
    before = (t.feats, t.sites)
    with pytest.raises(AttributeError, match=rf"SparseTensor is immutable: cannot set '{name}'; .*x\.replace\(feats="):
        setattr(t, name, torch.zeros(3, 2))
    with pytest.raises(AttributeError, match=f"SparseTensor is immutable: cannot delete '{name}'"):
        delattr(t, name)
    assert (t.feats, t.sites) == before


def _conv_output(t):
    torch.manual_seed(0)
    conv = icnn.SubMConv3d(t.num_channels, 4, 3).to(t.dtype)
    return conv(t).feats


def test_torch_save_load_round_trip_with_weights_only(tmp_path):
    """torch.load's default weights_only=True loads a SparseTensor (alone or inside a dict); the file holds
    features, coordinates, grid and batch size, not the rulebooks (rebuilt on first use, same outputs)."""
    coords = random_coords(40, (6, 7, 8), 2, torch.Generator().manual_seed(3))
    t = SparseTensor(torch.randn(coords.size(0), 3, dtype=torch.float64), coords, (6, 7, 8), 3)
    out = _conv_output(t)
    assert len(t.sites.cache) > 0
    torch.save({"scan": t, "label": 4}, tmp_path / "sample.pt")
    loaded = torch.load(tmp_path / "sample.pt")
    x = loaded["scan"]
    assert loaded["label"] == 4 and isinstance(x, SparseTensor) and x.sites is not t.sites
    assert (x.spatial_shape, x.batch_size, x.dtype, x.coords.dtype) == ((6, 7, 8), 3, torch.float64, torch.int32)
    torch.testing.assert_close(x.feats, t.feats, rtol=0, atol=0)
    torch.testing.assert_close(x.coords, t.coords, rtol=0, atol=0)
    assert len(x.sites.cache) == 0
    torch.testing.assert_close(_conv_output(x), out, rtol=0, atol=0)


class _ForgedSparseTensor:
    """Pickles as SparseTensor(feats, coords, ...) with the given arguments, as a hand-edited file would."""

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return SparseTensor, self.args


@pytest.mark.parametrize("coords, match", [
    (torch.tensor([[0, 1, 1], [0, 1, 1]]), r"coords has duplicate site \[0, 1, 1\]"),
    (torch.tensor([[0, 1, 1], [0, 9, 1]]), r"spatial axis 0 \(column 1\) = 9, but spatial_shape\[0\] = 4"),
])
def test_loaded_sites_are_checked_like_user_input(tmp_path, coords, match):
    torch.save(_ForgedSparseTensor(torch.zeros(2, 1), coords, (4, 4), 1), tmp_path / "forged.pt")
    with pytest.raises(ValueError, match=match):
        torch.load(tmp_path / "forged.pt")


def test_pickle_round_trip_rebuilds_sites():
    t = SparseTensor(torch.randn(2, 3), torch.tensor([[0, 0, 1], [0, 2, 2]]), (3, 3))
    u = pickle.loads(pickle.dumps(t))
    torch.testing.assert_close(u.dense(), t.dense(), rtol=0, atol=0)
    assert u.sites is not t.sites


def test_cat_joins_channels_on_shared_sites():
    coords = random_coords(30, (5, 5, 5), 2, torch.Generator().manual_seed(4))
    a = SparseTensor(torch.randn(coords.size(0), 2, dtype=torch.float64), coords, (5, 5, 5), 2)
    b = a.replace(torch.randn(coords.size(0), 3, dtype=torch.float64))
    c = SparseTensor(torch.randn(coords.size(0), 1, dtype=torch.float64), coords.clone(), (5, 5, 5), 2)  # equal coords
    joined = SparseTensor.cat([a, b, c])
    assert joined.sites is a.sites and joined.num_channels == 6
    torch.testing.assert_close(joined.feats, torch.cat([a.feats, b.feats, c.feats], dim=1), rtol=0, atol=0)
    assert SparseTensor.cat((a,)).num_channels == 2
    feats = [t.feats.clone().requires_grad_() for t in (a, b)]
    assert torch.autograd.gradcheck(lambda f, g: SparseTensor.cat([a.replace(f), b.replace(g)]).feats, feats)


def test_cat_refuses_tensors_on_other_sites():
    coords = torch.tensor([[0, 1, 1], [0, 2, 3], [1, 0, 0]])
    a = SparseTensor(torch.randn(3, 2), coords, (4, 4), 2)
    with pytest.raises(ValueError, match=r"SparseTensor.cat: tensors\[1\] has the sites of tensors\[0\] in another "
                                         r"row order"):
        SparseTensor.cat([a, SparseTensor(torch.randn(3, 2), coords.flip(0), (4, 4), 2)])
    with pytest.raises(ValueError, match=r"SparseTensor.cat: tensors\[1\] \(2 sites, spatial_shape \(4, 4\), batch_size "
                                         r"2\) is not on the sites of tensors\[0\] \(3 sites.*irregconv.data.collate"):
        SparseTensor.cat([a, SparseTensor(torch.randn(2, 2), coords[:2], (4, 4), 2)])
    with pytest.raises(ValueError, match=r"tensors\[1\] \(3 sites, spatial_shape \(5, 4\), batch_size 2\) is not"):
        SparseTensor.cat([a, SparseTensor(torch.randn(3, 2), coords, (5, 4), 2)])
    with pytest.raises(ValueError, match=r"tensors\[1\] has torch.float64 on cpu but tensors\[0\] torch.float32 on cpu"):
        SparseTensor.cat([a, a.to(torch.float64)])
    with pytest.raises(TypeError, match=r"tensors\[1\] must be a SparseTensor, got Tensor"):
        SparseTensor.cat([a, a.feats])
    with pytest.raises(TypeError, match="tensors must be a non-empty list or tuple of SparseTensor, got SparseTensor"):
        SparseTensor.cat(a)
    with pytest.raises(TypeError, match=r"got list \(empty\)"):
        SparseTensor.cat([])

"""irregconv.data.collate: SparseTensors of one scan each batched with the batch column renumbered, through a
real DataLoader (in-process and with worker processes), alone, in (tensor, target) tuples and in dicts;
a submanifold conv on the batch gives each scan's own output."""
import pytest
import torch
from torch.utils.data import DataLoader

import irregconv.nn as icnn
from irregconv import SparseTensor
from irregconv.data import collate, collate_sparse_tensors
from irregconv.testing import random_coords

SHAPE = (6, 7, 8)


def _scan(seed, batch_size=1, channels=3, shape=SHAPE):
    gen = torch.Generator().manual_seed(seed)
    coords = random_coords(10 + 5 * seed, shape, batch_size, gen)
    return SparseTensor(torch.randn(coords.size(0), channels, generator=gen), coords, shape, batch_size)


class Scans(torch.utils.data.Dataset):
    """Item i: one scan with ``batch_sizes[i]`` batch entries, as ``form`` (tensor, tuple or dict)."""

    def __init__(self, batch_sizes, form):
        self.batch_sizes, self.form = batch_sizes, form

    def __len__(self):
        return len(self.batch_sizes)

    def __getitem__(self, i):
        x = _scan(i, self.batch_sizes[i])
        return {"tensor": x, "tuple": (x, i), "dict": {"scan": x, "label": torch.tensor(i), "id": f"scan{i}"}}[self.form]


def _expected(items):
    """The batch written out by hand: coordinates of item i shifted by the batch sizes before it."""
    coords, shift = [], 0
    for x in items:
        c = x.coords.clone()
        c[:, 0] += shift
        coords.append(c)
        shift += x.batch_size
    return torch.cat([x.feats for x in items]), torch.cat(coords), shift


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("form", ["tensor", "tuple", "dict"])
def test_data_loader_batches(num_workers, form):
    sizes = [1, 2, 1, 1, 3]
    loader = DataLoader(Scans(sizes, form), batch_size=3, collate_fn=collate, num_workers=num_workers)
    batches = list(loader)
    assert len(batches) == 2
    for b, batch in enumerate(batches):
        ids = list(range(3 * b, min(3 * b + 3, len(sizes))))
        x = {"tensor": lambda: batch, "tuple": lambda: batch[0], "dict": lambda: batch["scan"]}[form]()
        feats, coords, batch_size = _expected([_scan(i, sizes[i]) for i in ids])
        assert isinstance(x, SparseTensor) and (x.spatial_shape, x.batch_size) == (SHAPE, batch_size)
        torch.testing.assert_close(x.feats, feats, rtol=0, atol=0)
        torch.testing.assert_close(x.coords, coords, rtol=0, atol=0)
        if form == "tuple":
            assert torch.equal(batch[1], torch.tensor(ids))
        if form == "dict":
            assert torch.equal(batch["label"], torch.tensor(ids)) and batch["id"] == [f"scan{i}" for i in ids]


def test_conv_on_the_batch_equals_each_scans_own_output():
    scans = [_scan(i, channels=2) for i in range(3)]
    batch = collate(scans)
    conv = icnn.SubMConv3d(2, 4, 3)
    with torch.no_grad():
        torch.testing.assert_close(conv(batch).feats, torch.cat([conv(x).feats for x in scans]))


def test_gradients_reach_each_scan():
    scans = [_scan(i, channels=2).to(torch.float64) for i in range(2)]
    feats = [x.feats.clone().requires_grad_() for x in scans]
    assert torch.autograd.gradcheck(
        lambda f, g: collate_sparse_tensors([scans[0].replace(f), scans[1].replace(g)]).dense(), feats)


@pytest.mark.parametrize("other, match", [
    (lambda: _scan(5, shape=(6, 7, 9)), r"item 1 has spatial_shape \(6, 7, 9\) but item 0 has \(6, 7, 8\); "
                                        r"voxelize every scan with the same point range"),
    (lambda: _scan(5, channels=4), "item 1 has num_channels 4 but item 0 has 3"),
    (lambda: _scan(5).to(torch.float64), "item 1 has dtype torch.float64 but item 0 has torch.float32"),
])
def test_mismatched_scans_are_refused(other, match):
    with pytest.raises(ValueError, match=f"collate_sparse_tensors: {match}"):
        collate([_scan(0), other()])


def test_bad_batches_are_refused():
    with pytest.raises(TypeError, match="collate_sparse_tensors: item 1 is a Tensor, not a SparseTensor"):
        collate_sparse_tensors([_scan(0), torch.zeros(2)])
    with pytest.raises(ValueError, match="collate_sparse_tensors: tensors is empty"):
        collate_sparse_tensors([])
    with pytest.raises(TypeError, match="collate_sparse_tensors: tensors must be a sequence of SparseTensor, got "
                                        "SparseTensor"):
        collate_sparse_tensors(_scan(0))
    with pytest.raises(ValueError, match="collate: batch is empty"):
        collate([])
    with pytest.raises(TypeError, match="collate: batch must be a sequence of samples .*got SparseTensor"):
        collate(_scan(0))
    big = SparseTensor(torch.zeros(1, 1), torch.zeros(1, 4, dtype=torch.int32), (2 ** 20, 2 ** 20, 2 ** 20), 2)
    with pytest.raises(ValueError, match=r"collate_sparse_tensors: key space batch_size x spatial_shape .* more than "
                                         r"2\*\*62"):
        collate([big] * 4)

"""RulebookCache: structural keys, builds counted, reuse through shared sites, fresh cache for new sites."""
import torch

from irregconv import SparseTensor
from irregconv.rulebook import KernelRegion, RulebookCache, build_subm_rulebook
from irregconv.testing import random_coords


def _subm_key(region, dilation):
    return ("subm", region.key, tuple(dilation))


def test_get_or_build_counts_builds():
    cache = RulebookCache()
    calls = []

    def build(tag):
        calls.append(tag)
        return object()

    first = cache.get_or_build(("a", 1), lambda: build("a"))
    assert cache.get_or_build(("a", 1), lambda: build("again")) is first
    second = cache.get_or_build(("a", 2), lambda: build("b"))
    assert second is not first and calls == ["a", "b"] and cache.builds == 2 and len(cache) == 2
    assert ("a", 1) in cache and ("c",) not in cache
    assert cache.get(("c",)) is None and cache.get(("c",), 5) == 5
    cache.put(("c",), 7)
    assert cache.get(("c",)) == 7 and cache.builds == 2  # put is not a build


def test_structural_keys_separate_geometries():
    t = SparseTensor(torch.randn(20, 3), random_coords(20, (5, 6, 7), 1), spatial_shape=(5, 6, 7))
    cache, sites = t.sites.cache, t.sites
    geometries = [(KernelRegion.cube(3, 3), (1, 1, 1)), (KernelRegion.cross(3, 3), (1, 1, 1)),
                  (KernelRegion.cube(3, 3), (2, 2, 2)), (KernelRegion.cube((3, 3, 1), 3), (1, 1, 1))]
    books = [cache.get_or_build(_subm_key(r, d), lambda r=r, d=d: build_subm_rulebook(
        sites.coords, sites.spatial_shape, sites.batch_size, r, d, table=sites.table)) for r, d in geometries]
    assert cache.builds == 4 and len({id(b) for b in books}) == 4
    # the same geometry written differently is the same key
    again = cache.get_or_build(_subm_key(KernelRegion.cube((3, 3, 3), 3), (1, 1, 1)), lambda: None)
    assert again is books[0] and cache.builds == 4


def test_replace_shares_the_cache_and_new_coords_do_not():
    coords = random_coords(15, (4, 5, 6), 2)
    t = SparseTensor(torch.randn(coords.size(0), 2), coords, spatial_shape=(4, 5, 6), batch_size=2)
    key = _subm_key(KernelRegion.cube(3, 3), (1, 1, 1))
    t.sites.cache.get_or_build(key, lambda: "built once")
    u = t.replace(torch.randn(coords.size(0), 5))
    assert u.sites is t.sites and u.sites.cache.get_or_build(key, lambda: "rebuilt") == "built once"
    assert t.sites.cache.builds == 1
    fresh = SparseTensor(u.feats, coords.clone(), spatial_shape=(4, 5, 6), batch_size=2)
    assert fresh.sites is not t.sites and len(fresh.sites.cache) == 0

"""Same bits every run and for 1 or 2 threads: rulebook builders and gather_scatter (output and gradients of
feats, weight and pair_scale) for every rulebook kind, at sizes where the threaded paths run."""
import numba
import pytest
import torch

from irregconv.engine import aggregate, gather_scatter
from irregconv.rulebook import KernelRegion, build_strided_rulebook, build_subm_rulebook, build_transposed_rulebook
from irregconv.testing import RULEBOOK_KINDS, random_coords, random_rulebook, rulebook_triples, threads


def _run(rb, inputs):
    feats, weight, scale = (x.detach().clone().requires_grad_() for x in inputs)
    out = gather_scatter(feats, weight, rb, scale)
    out.backward(torch.ones_like(out).cumsum(0) / out.size(0))  # a cotangent that differs per row
    return [out.detach(), feats.grad, weight.grad, scale.grad]


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
@pytest.mark.parametrize("weight_kind", ["dense", "depthwise"])
def test_gather_scatter_same_bits_across_runs_and_threads(kind, weight_kind):
    gen = torch.Generator().manual_seed(0)
    rb = random_rulebook(kind, gen, num_sites=600, spatial_shape=(12, 12, 12), batch_size=2)
    channels = 32
    assert int(rb.counts().max()) * channels >= 4096  # large enough for the multi-threaded row scatter
    shape = (rb.kernel_volume, channels, channels) if weight_kind == "dense" else (rb.kernel_volume, channels, 1, 1)
    inputs = [torch.randn(rb.num_in, channels, generator=gen), torch.randn(shape, generator=gen),
              torch.rand(rb.num_pairs, generator=gen)]
    with threads(2):
        runs = [_run(rb, inputs) for _ in range(3)]
    with threads(1):
        runs.append(_run(rb, inputs))
    names = ["output", "feats grad", "weight grad", "pair_scale grad"]
    for run in runs[1:]:
        for name, a, b in zip(names, runs[0], run):
            assert torch.equal(a, b), f"{kind}: {name} differs between runs or thread counts"


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_aggregate_same_bits_across_threads(reduce):
    gen = torch.Generator().manual_seed(1)
    rb = random_rulebook("graph", gen, num_sites=2000)
    messages = torch.randn(rb.num_pairs, 16, generator=gen)
    with threads(2):
        first = aggregate(messages, rb, reduce)
    with threads(1):
        assert torch.equal(aggregate(messages, rb, reduce), first)


def test_rulebook_builders_same_bits_across_threads():
    coords = random_coords(2500, (20, 20, 20), 2, torch.Generator().manual_seed(2))
    region, shape, ones, twos = KernelRegion.cube(3, 3), (20, 20, 20), (1, 1, 1), (2, 2, 2)

    def build_all():
        subm = build_subm_rulebook(coords, shape, 2, region, ones)
        strided, strided_sites = build_strided_rulebook(coords, shape, 2, region, twos, ones, ones)
        transposed, transposed_sites = build_transposed_rulebook(coords, shape, 2, region, twos, ones, ones, ones)
        return [rulebook_triples(subm), rulebook_triples(strided), strided_sites, rulebook_triples(transposed),
                transposed_sites]

    with threads(2):
        first = build_all()
        again = build_all()
    with threads(1):
        single = build_all()
    for a, b, c in zip(first, again, single):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_thread_count_is_restored():
    before = torch.get_num_threads(), numba.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    assert (torch.get_num_threads(), numba.get_num_threads()) == before

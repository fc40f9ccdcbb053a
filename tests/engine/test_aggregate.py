"""aggregate: sum / mean / max / min of per-pair messages against a naive loop, gradcheck, empty rows."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine import aggregate
from irregconv.rulebook import build_graph_rulebook
from irregconv.testing import DEVICES, RULEBOOK_KINDS, random_rulebook

F64 = dict(rtol=1e-7, atol=1e-9)
REDUCTIONS = ("sum", "mean", "max", "min")


def _naive(messages, rulebook, reduce):
    """Per output row, reduce the messages of every pair that targets it (any offset); 0 for rows without."""
    out = messages.new_zeros(rulebook.num_out, messages.size(1))
    rows = [[] for _ in range(rulebook.num_out)]
    for p, o in enumerate(rulebook.out_idx.tolist()):
        rows[o].append(messages[p])
    for o, got in enumerate(rows):
        if got:
            stacked = torch.stack(got)
            out[o] = {"sum": stacked.sum(0), "mean": stacked.mean(0), "max": stacked.max(0).values,
                      "min": stacked.min(0).values}[reduce]
    return out


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(RULEBOOK_KINDS), st.sampled_from(REDUCTIONS), st.integers(0, 2 ** 31 - 1),
       st.integers(0, 20))
def test_matches_naive_loop(kind, reduce, seed, num_sites):
    gen = torch.Generator().manual_seed(seed)
    rb = random_rulebook(kind, gen, num_sites=num_sites, spatial_shape=(3, 4, 5))
    messages = torch.randn(rb.num_pairs, 3, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(aggregate(messages, rb, reduce), _naive(messages, rb, reduce), **F64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_matches_naive_loop_on_device(device, reduce):
    gen = torch.Generator().manual_seed(7)
    for kind in RULEBOOK_KINDS:
        rb = random_rulebook(kind, gen, num_sites=15).to(device)
        messages = torch.randn(rb.num_pairs, 3, dtype=torch.float64, generator=gen).to(device)
        torch.testing.assert_close(aggregate(messages, rb, reduce), _naive(messages, rb, reduce), **F64)


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_gradcheck(kind, reduce):
    gen = torch.Generator().manual_seed(5)
    rb = random_rulebook(kind, gen, num_sites=3, spatial_shape=(2, 2, 3),
                         kernel_size=2 if kind == "transposed" else 3)
    # distinct values, far apart compared with gradcheck's step, so max/min never switch
    messages = (torch.randperm(rb.num_pairs * 2, generator=gen).reshape(-1, 2).to(torch.float64) / 10).requires_grad_()
    assert torch.autograd.gradcheck(lambda m: aggregate(m, rb, reduce), [messages])


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_rows_without_pairs_are_zero_and_get_no_gradient(reduce):
    # targets 0 and 2 receive edges; 1 and 3 none
    rb = build_graph_rulebook(torch.tensor([[0, 1, 3, 2], [0, 0, 2, 2]]), 4)
    messages = torch.tensor([[-3.0], [-1.0], [-5.0], [-2.0]], dtype=torch.float64, requires_grad=True)
    out = aggregate(messages, rb, reduce)
    expected = {"sum": [-4.0, 0, -7.0, 0], "mean": [-2.0, 0, -3.5, 0], "max": [-1.0, 0, -2.0, 0],
                "min": [-3.0, 0, -5.0, 0]}[reduce]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64).unsqueeze(1), rtol=0, atol=0)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(messages.grad).all()


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_empty(reduce):
    rb = build_graph_rulebook(torch.zeros(2, 0, dtype=torch.long), 3)
    messages = torch.zeros(0, 2, dtype=torch.float64, requires_grad=True)
    out = aggregate(messages, rb, reduce)
    torch.testing.assert_close(out, torch.zeros(3, 2, dtype=torch.float64), rtol=0, atol=0)
    out.sum().backward()
    assert messages.grad is None or messages.grad.shape == (0, 2)
    rb0 = build_graph_rulebook(torch.zeros(2, 0, dtype=torch.long), 0)
    assert aggregate(torch.zeros(0, 2), rb0, reduce).shape == (0, 2)


def test_bad_arguments():
    rb = build_graph_rulebook(torch.tensor([[0, 1], [1, 0]]), 2)
    with pytest.raises(ValueError, match=r"aggregate: reduce must be one of \('sum', 'mean', 'max', 'min'\), got 'p"):
        aggregate(torch.zeros(2, 1), rb, "prod")
    with pytest.raises(ValueError, match=r"aggregate: messages must be \[P, C\] with P = 2 \(one row per pair\), "
                                         r"got \[3, 1\]"):
        aggregate(torch.zeros(3, 1), rb)
    with pytest.raises(ValueError, match=r"got \[2\]"):
        aggregate(torch.zeros(2), rb)

"""The fused native gather-GEMM-scatter kernels: parity with the per-offset reference loop (outputs, input and
weight gradients) on every convolution rulebook kind and channel layout they serve, the same bits for 1 and 2
threads and as the three-pass path where both sum in the same order, errors instead of memory faults on
broken rulebooks, and the fallback when disabled."""
import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine import gather_scatter, gather_scatter_reference
from irregconv.engine.backends import native
from irregconv.rulebook import KernelRegion, Rulebook, build_graph_rulebook, build_subm_rulebook
from irregconv.testing import (assert_close_with_grads, assert_parity, random_coords, random_graph, random_rulebook,
                               threads)

CONV_KINDS = ("subm", "strided", "inverse", "transposed", "dense")
F32 = dict(rtol=1e-4, atol=1e-4)

needs_native = pytest.mark.skipif(not native.AVAILABLE, reason="the native kernel was not built (no C++ compiler at "
                                                                "install)")


def test_native_kernel_is_built_where_a_compiler_exists():
    """``pip install`` compiles it whenever g++ is on the PATH (setup.py marks it optional for other machines)."""
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler here: the engine runs its numba/torch path")
    assert native.AVAILABLE, "g++ is present but irregconv/engine/backends/native/_gather_gemm_scatter*.so is " \
                             "missing: reinstall with pip install -e ."


def _case(kind, seed, c_in, c_out, num_sites=40, kernel_size=3, spatial_shape=(5, 6, 7)):
    gen = torch.Generator().manual_seed(seed)
    rb = random_rulebook(kind, gen, num_sites=num_sites, spatial_shape=spatial_shape, batch_size=2,
                         kernel_size=kernel_size)
    feats = torch.randn(rb.num_in, c_in, generator=gen).requires_grad_()
    weight = (torch.randn(rb.kernel_volume, c_in, c_out, generator=gen) / c_in ** 0.5).requires_grad_()
    return rb, feats, weight


@needs_native
@pytest.mark.parametrize("kind", CONV_KINDS)
@pytest.mark.parametrize("c_in,c_out", [(1, 16), (4, 16), (16, 16), (3, 32), (32, 32), (17, 48), (64, 64),
                                        (32, 128), (64, 80)])
def test_matches_the_reference_loop(kind, c_in, c_out):
    rb, feats, weight = _case(kind, 0, c_in, c_out)
    assert native.serves(feats, weight, None, c_out)
    assert_close_with_grads(gather_scatter(feats, weight, rb), gather_scatter_reference(feats, weight, rb),
                            [feats, weight], **F32)


@needs_native
@settings(max_examples=30, deadline=None)
@given(st.sampled_from(CONV_KINDS), st.integers(0, 2 ** 31 - 1), st.integers(1, 20), st.sampled_from([16, 32, 64]),
       st.integers(0, 80), st.sampled_from([1, 2, 3]))
def test_matches_the_reference_loop_on_random_sites(kind, seed, c_in, c_out, num_sites, kernel_size):
    rb, feats, weight = _case(kind, seed, c_in, c_out, num_sites, kernel_size)
    assert_close_with_grads(gather_scatter(feats, weight, rb), gather_scatter_reference(feats, weight, rb),
                            [feats, weight], **F32)


@needs_native
@pytest.mark.parametrize("kind", CONV_KINDS)
def test_same_bits_for_one_and_two_threads_and_reruns(kind):
    # enough pairs that two threads really split the rows (the kernel keeps one thread below 4096 pairs)
    rb, feats, weight = _case(kind, 3, 16, 32, num_sites=3000, spatial_shape=(14, 15, 16))
    assert rb.num_pairs > 8192
    grad = torch.randn(rb.num_out, 32, generator=torch.Generator().manual_seed(4))

    def run():
        out = gather_scatter(feats, weight, rb)
        return (out, *torch.autograd.grad(out, [feats, weight], grad))

    with threads(1):
        first = run()
    with threads(2):
        results = [run() for _ in range(3)]
    for result in results:
        for got, want in zip(result, first):
            assert torch.equal(got, want)


@needs_native
def test_same_bits_as_the_three_pass_path_on_a_submanifold_layer():
    """Each output row sums one product per offset, in offset order, as the three passes do, so the two paths
    agree to rounding (on this machine's GEMM even to the bit: measured on KITTI, not asserted)."""
    rb, feats, weight = _case("subm", 5, 32, 32, num_sites=2000, spatial_shape=(14, 15, 16))
    with native.disabled():
        assert not native.serves(feats, weight, None, 32)
        three_pass = gather_scatter(feats, weight, rb)
    fused = gather_scatter(feats, weight, rb)
    torch.testing.assert_close(fused, three_pass, rtol=1e-6, atol=1e-6)


@needs_native
def test_submanifold_backward_uses_mirrored_offsets_not_a_transpose():
    rb, feats, weight = _case("subm", 6, 16, 16)
    assert "mirror" in rb._derived
    gather_scatter(feats, weight, rb).sum().backward()
    assert "transpose" not in rb._derived
    with native.disabled():
        feats_ref = feats.detach().clone().requires_grad_()
        gather_scatter(feats_ref, weight.detach(), rb).sum().backward()
    torch.testing.assert_close(feats.grad, feats_ref.grad, **F32)


@needs_native
def test_empty_and_pairless_rulebooks():
    region = KernelRegion.cube(3, 3)
    empty = build_subm_rulebook(torch.zeros(0, 4, dtype=torch.int32), (4, 4, 4), 1, region, (1, 1, 1))
    weight = torch.randn(27, 8, 16, requires_grad=True)
    feats = torch.zeros(0, 8, requires_grad=True)
    out = gather_scatter(feats, weight, empty)
    assert out.shape == (0, 16)
    out.sum().backward()
    assert torch.equal(weight.grad, torch.zeros_like(weight))
    lone = build_subm_rulebook(torch.tensor([[0, 1, 1, 1]], dtype=torch.int32), (4, 4, 4), 1, region, (1, 1, 1))
    feats = torch.randn(1, 8, requires_grad=True)
    assert_close_with_grads(gather_scatter(feats, weight, lone), gather_scatter_reference(feats, weight, lone),
                            [feats, weight], **F32)


def _broken(rb: Rulebook, **changes) -> Rulebook:
    return dataclasses.replace(rb, _derived={}, **changes)


@needs_native
@pytest.mark.parametrize("damage", ["input row too large", "negative input row", "output row too large",
                                    "outputs out of order", "offset_ptr short of the pairs"])
def test_broken_rulebooks_raise_instead_of_touching_foreign_memory(damage):
    coords = random_coords(600, (8, 8, 8), 1, torch.Generator().manual_seed(7))
    rb = build_subm_rulebook(coords, (8, 8, 8), 1, KernelRegion.cube(3, 3), (1, 1, 1))
    in_idx, out_idx, ptr = rb.in_idx.clone(), rb.out_idx.clone(), rb.offset_ptr.clone()
    k, s, e = max((t for t in rb.offset_slices() if t[0] != rb.identity_offset), key=lambda t: t[2] - t[1])
    if damage == "input row too large":
        in_idx[s] = rb.num_in + 1000
    elif damage == "negative input row":
        in_idx[e - 1] = -5
    elif damage == "output row too large":
        out_idx[e - 1] = rb.num_out + 3
    elif damage == "outputs out of order":
        # rows far apart land in different tiles of the kernel: a later pair pointing back is caught
        out_idx[s:e] = out_idx[s:e].flip(0)
    else:
        ptr[-1] -= 1
    broken = _broken(rb, in_idx=in_idx, out_idx=out_idx, offset_ptr=ptr)
    feats = torch.randn(rb.num_in, 8)
    weight = torch.randn(27, 8, 16)
    with pytest.raises(ValueError, match="offset_ptr must rise|break its invariants"):
        gather_scatter(feats, weight, broken)


@needs_native
@pytest.mark.parametrize("shuffled", [False, True])
def test_strided_backward_swaps_pairs_of_sorted_sites_and_transposes_others(shuffled):
    """On sorted sites each offset maps inputs monotonically, so the adjoint only swaps the index arrays; on
    shuffled sites it needs the sorted transpose. Both give the reference gradients."""
    from irregconv.rulebook import build_strided_rulebook
    gen = torch.Generator().manual_seed(8)
    coords = random_coords(300, (9, 10, 11), 2, gen)
    if shuffled:
        coords = coords[torch.randperm(coords.size(0), generator=gen)]
    rb = build_strided_rulebook(coords, (9, 10, 11), 2, KernelRegion.cube(3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1))[0]
    feats = torch.randn(rb.num_in, 16, generator=gen, requires_grad=True)
    weight = torch.randn(27, 16, 32, generator=gen, requires_grad=True)
    assert_close_with_grads(gather_scatter(feats, weight, rb), gather_scatter_reference(feats, weight, rb),
                            [feats, weight], **F32)
    assert ("transpose" in rb._derived) == shuffled


def _mostly_zero(n, c_in, gen, density=0.02):
    x = torch.randn(n, c_in, generator=gen)
    return x * (torch.rand(n, c_in, generator=gen) < density)


@needs_native
@pytest.mark.parametrize("n,c_in,c_out", [(1, 16, 16), (300, 1433, 16), (257, 100, 32), (1000, 70, 48)])
def test_nonzero_rows_matmul_and_its_csr_and_weight_grad(n, c_in, c_out):
    gen = torch.Generator().manual_seed(n)
    x = _mostly_zero(n, c_in, gen)
    x[0, -1] = float("nan")  # a NaN is a nonzero (it propagates), -0.0 a zero, as in a GEMM
    x[-1, 0] = -0.0
    weight = torch.randn(c_in, c_out, generator=gen)
    grad = torch.randn(n, c_out, generator=gen)
    out, (crow, cols, vals) = native.nonzero_rows_matmul(x, weight)
    torch.testing.assert_close(out, x @ weight, rtol=1e-5, atol=1e-5, equal_nan=True)
    expected = x.to_sparse_csr()
    assert torch.equal(crow, expected.crow_indices()) and torch.equal(cols.long(), expected.col_indices())
    assert torch.equal(vals, expected.values()) or torch.allclose(vals, expected.values(), equal_nan=True)
    finite = torch.nan_to_num(x, nan=0.0)
    _, csr = native.nonzero_rows_matmul(finite, weight)
    torch.testing.assert_close(native.csr_weight_grad(csr, c_in, grad), finite.t() @ grad, rtol=1e-5, atol=1e-4)


@needs_native
def test_mostly_zero_features_take_the_nonzero_path_through_the_engine_with_the_same_bits_per_thread_count():
    from irregconv.rulebook import build_graph_rulebook
    from irregconv.testing import random_graph
    gen = torch.Generator().manual_seed(9)
    x = _mostly_zero(700, 300, gen)
    weight = torch.randn(1, 300, 16, generator=gen, requires_grad=True)
    assert native.mostly_zero(x, weight[0]) and not native.mostly_zero(torch.randn(700, 300), weight[0])
    with pytest.MonkeyPatch.context() as patch:  # past the size cap the CSR buffers would reserve too much
        patch.setattr(native, "MAX_ENTRIES", x.numel() - 1)
        assert not native.mostly_zero(x, weight[0])
    rb = build_graph_rulebook(random_graph(700, 4000, gen), 700)
    scale = torch.rand(rb.num_pairs, generator=gen)
    feats = x.clone().requires_grad_()
    assert_close_with_grads(gather_scatter(feats, weight, rb, scale),
                            gather_scatter_reference(feats, weight, rb, scale), [feats, weight], **F32)
    grad = torch.randn(700, 16, generator=gen)

    def run():
        out = gather_scatter(x, weight, rb, scale)
        return out, torch.autograd.grad(out, weight, grad)[0]

    with threads(1):
        first = run()
    with threads(2):
        for _ in range(2):
            assert all(torch.equal(a, b) for a, b in zip(run(), first))


@needs_native
def test_bindings_refuse_a_wrong_argument_list_instead_of_calling_the_kernel():
    library = native._LIBRARY
    assert library.version() == native._VERSION
    with pytest.raises(TypeError, match=r"transpose takes 4 arguments \(3 given\)"):
        library.transpose(0, 1, 1)
    with pytest.raises(TypeError):  # an address must be an int (or None where the buffer is optional)
        library.transpose("0", 1, 1, 0)
    src, dst = torch.arange(6.0).reshape(2, 3), torch.empty(3, 2)
    assert library.transpose(src.data_ptr(), 2, 3, dst.data_ptr()) is None and torch.equal(dst, src.t())


def test_environment_switch_turns_the_kernels_off():
    code = "import irregconv.engine.backends.native as n; print(n.AVAILABLE)"
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "IRREGCONV_NATIVE": "0"},
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


_NO_NUMBA = """
import json, sys
if {hide_pyg}:
    sys.modules["torch_geometric"] = None  # PyG imports numba itself (torch_geometric.utils.ppr)
import torch
import irregconv
from irregconv.models.second import SECONDBackbone8x
from irregconv.nn import GCNConv
from irregconv.testing import random_coords, random_graph

gen = torch.Generator().manual_seed(0)
coords = random_coords(2000, (41, 64, 64), 2, generator=gen)
feats = torch.randn(coords.size(0), 4, generator=gen, requires_grad=True)
SECONDBackbone8x()(irregconv.SparseTensor(feats, coords, (41, 64, 64), 2)).feats.sum().backward()
GCNConv(8, 16)(torch.randn(30, 8, generator=gen), random_graph(30, 120, gen)).sum().backward()
print(json.dumps([sorted(name for name in sys.modules if name.split(".")[0] == "numba"),
                  sorted(name for name in sys.modules if name.startswith("irregconv") and "numba" in name)]))
"""


@needs_native
@pytest.mark.parametrize("hide_pyg", [True, False])
def test_numba_is_never_imported_when_the_native_kernels_serve(hide_pyg):
    """A SECOND-backbone forward and backward on a synthetic scene and a GCN step in a fresh process: no numba
    kernel module of irregconv loaded, and (PyG hidden: PyG imports numba on its own) numba not imported at all."""
    environment = {name: value for name, value in os.environ.items() if name != "IRREGCONV_NATIVE"}
    result = subprocess.run([sys.executable, "-c", _NO_NUMBA.format(hide_pyg=hide_pyg)], capture_output=True,
                            text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    numba_modules, kernel_modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert kernel_modules == ["irregconv._numba"]
    if hide_pyg:
        assert numba_modules == []


@needs_native
@pytest.mark.parametrize("channels", [1, 7, 15, 16, 17, 50, 64, 70, 128])
@pytest.mark.parametrize("accumulate", [True, False])
def test_csr_rows_add_matches_the_sparse_product_with_the_same_bits_per_thread_count(channels, accumulate):
    gen = torch.Generator().manual_seed(channels)
    adjacency = (torch.rand(300, 200, generator=gen) < 0.05) * torch.randn(300, 200, generator=gen)
    adjacency[7] = 0  # a row without entries
    adjacency[9, :40] = torch.randn(40, generator=gen)  # a long row: every partial sum in use
    adjacency[:, -1] = torch.randn(300, generator=gen)  # the last source row, whose partial vectors cross src's end
    csr = adjacency.to_sparse_csr()
    src = torch.randn(200, channels, generator=gen)
    start = torch.randn(300, channels, generator=gen)

    def run():
        out = start.clone() if accumulate else torch.full_like(start, float("nan"))
        return native.csr_rows_add(out, csr.crow_indices(), csr.col_indices(), csr.values(), src, accumulate=accumulate)

    with threads(1):
        first = run()
    torch.testing.assert_close(first, (start if accumulate else 0) + adjacency @ src, rtol=1e-5, atol=1e-5)
    with threads(2):
        assert torch.equal(run(), first)


@needs_native
def test_csr_rows_add_splits_skewed_rows_by_their_entries_without_missing_one():
    # hub rows first (a power-law graph, or the transposed bag-of-words matrix): the threads' row ranges are cut by
    # entries, not by row count; every row must still be written once, with the one-thread bits
    gen = torch.Generator().manual_seed(5)
    counts = (3000 / torch.arange(1, 401).float()).long()
    crow = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    col = torch.randint(0, 300, (int(crow[-1]),), generator=gen)
    values, src = torch.randn(col.numel(), generator=gen), torch.randn(300, 32, generator=gen)
    expected = torch.sparse_csr_tensor(crow, col, values, (400, 300)) @ src

    def run():
        return native.csr_rows_add(torch.full((400, 32), float("nan")), crow, col, values, src, accumulate=False)

    with threads(1):
        first = run()
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-4)
    with threads(2):
        assert torch.equal(run(), first)


@needs_native
@pytest.mark.parametrize("channels", [1, 7, 16, 64])
def test_csr_rows_prepared_reads_and_writes_transposed_views_in_place(channels):
    # a layer's weight.t() read as src (each thread transposes it for itself) or as the fused weight, and its
    # gradient written in the weight's own layout: the same bits as on contiguous rows, for 1 and 2 threads
    gen = torch.Generator().manual_seed(channels)
    csr = ((torch.rand(1100, 90, generator=gen) < 0.2) * torch.randn(1100, 90, generator=gen)).to_sparse_csr()
    operand = native.CsrOperand(csr.crow_indices(), csr.col_indices())
    src, bias = torch.randn(90, channels, generator=gen), torch.randn(channels, generator=gen)
    weight = torch.randn(channels, 5, generator=gen)
    rows = native.csr_rows_prepared(operand, torch.empty(1100, channels), csr.values(), src, bias)
    fused = native.csr_rows_prepared(operand, torch.empty(1100, 5), csr.values(), src, bias[:5] if channels >= 5
                                     else None, weight)
    for count in (1, 2):
        with threads(count):
            columns = torch.full((channels, 1100), float("nan")).t()
            assert torch.equal(native.csr_rows_prepared(operand, columns, csr.values(), src, bias), rows)
            from_view = native.csr_rows_prepared(operand, torch.empty(1100, channels), csr.values(),
                                                 src.t().contiguous().t(), bias)
            assert torch.equal(from_view, rows)
            fused_view = native.csr_rows_prepared(operand, torch.empty(1100, 5), csr.values(), src,
                                                  bias[:5] if channels >= 5 else None, weight.t().contiguous().t())
            assert torch.equal(fused_view, fused)
    with pytest.raises(ValueError, match="stored transposed only up to 64 channels"):
        native.csr_rows_prepared(operand, torch.empty(65, 1100).t(), csr.values(), torch.randn(90, 65))
    with pytest.raises(ValueError, match="out must be contiguous"):
        native.csr_rows_add(torch.empty(1100, 2 * channels)[:, ::2], csr.crow_indices(), csr.col_indices(),
                            csr.values(), src)


@needs_native
@pytest.mark.parametrize("channels", [7, 16])
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32, "mixed"])
def test_csr_rows_add_reads_values_through_an_order(channels, index_dtype):
    gen = torch.Generator().manual_seed(3)
    csr = ((torch.rand(50, 40, generator=gen) < 0.2) * 1.0).to_sparse_csr()
    order = torch.randperm(csr.values().numel(), generator=gen)
    values = torch.randn(order.numel(), generator=gen)
    src = torch.randn(40, channels, generator=gen)
    col_dtype = torch.int32 if index_dtype == "mixed" else index_dtype  # mixed: int32 columns, int64 order
    col, order_in = csr.col_indices().to(col_dtype), order if index_dtype == "mixed" else order.to(index_dtype)
    got = native.csr_rows_add(torch.zeros(50, channels), csr.crow_indices(), col, values, src, order_in)
    permuted = torch.sparse_csr_tensor(csr.crow_indices(), csr.col_indices(), values[order], csr.shape)
    torch.testing.assert_close(got, permuted @ src, rtol=1e-5, atol=1e-5)
    int64 = native.csr_rows_add(torch.zeros(50, channels), csr.crow_indices(), csr.col_indices(), values, src, order)
    assert torch.equal(got, int64)


def test_cached_graph_columns_are_int32_for_the_native_kernel():
    engine = importlib.import_module("irregconv.engine.gather_scatter")
    rb = build_graph_rulebook(random_graph(30, 90, generator=torch.Generator().manual_seed(0)), 30)
    crow, col = engine._csr(rb, 0, rb.num_pairs)
    assert crow.dtype == torch.int64 and torch.equal(col.long(), rb.in_idx)
    assert col.dtype == (torch.int32 if native.AVAILABLE else torch.int64)


@needs_native
def test_csr_rows_add_rejects_broken_rows():
    crow, col, values = torch.tensor([0, 2, 3]), torch.tensor([0, 5, 1]), torch.ones(3)
    src, out = torch.randn(4, 16), torch.zeros(2, 16)
    with pytest.raises(ValueError, match=r"every column must be in \[0, 4\)"):
        native.csr_rows_add(out, crow, col, values, src)
    with pytest.raises(ValueError, match="crow must rise from 0 to the 3 entries"):
        native.csr_rows_add(out, torch.tensor([0, 2, 2]), torch.tensor([0, 1, 1]), values, src)
    with pytest.raises(ValueError, match="crow must rise from 0"):
        native.csr_rows_add(torch.zeros(3, 16), torch.tensor([0, 3, 1, 3]), torch.tensor([0, 1, 1]), values, src)
    with pytest.raises(ValueError, match="crow must have 3 entries"):
        native.csr_rows_add(out, torch.tensor([0, 3]), torch.tensor([0, 1, 1]), values, src)
    with pytest.raises(ValueError, match=r"every entry needs a value \(2 given\)"):
        native.csr_rows_add(out, crow, torch.tensor([0, 1, 1]), values[:2], src)
    with pytest.raises(ValueError, match=r"every order entry in \[0, 3\)"):
        native.csr_rows_add(out, crow, torch.tensor([0, 1, 1]), values, src, order=torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match=r"every column must be in \[0, 4\)"):  # the same checks on int32
        native.csr_rows_add(out, crow, col.int(), values, src, order=torch.tensor([0, 1, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"every column must be in \[0, 4\)"):
        native.csr_rows_add(out, crow, torch.tensor([0, -1, 1], dtype=torch.int32), values, src)


@needs_native
@pytest.mark.parametrize("shape", [(16, 1433), (7, 16), (37, 19), (1, 5)])
def test_transposed_weights_are_copied_exactly(shape):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(shape[1]))
    rows = native.contiguous_rows(weight.t())
    assert rows.is_contiguous() and torch.equal(rows, weight.t())
    out = torch.empty(shape).t()  # a transposed view, as the gradient of a layer's weight.t()
    native.copy_rows_(out, weight.t().contiguous())
    assert torch.equal(out, weight.t())


@needs_native
@pytest.mark.parametrize("c_in, c_out", [(1, 1), (7, 16), (16, 7), (16, 16), (33, 20), (64, 64)])
def test_csr_rows_matmul_aggregates_and_transforms_in_one_pass(c_in, c_out):
    gen = torch.Generator().manual_seed(c_in * 100 + c_out)
    adjacency = (torch.rand(120, 90, generator=gen) < 0.08) * torch.randn(120, 90, generator=gen)
    adjacency[5] = 0  # a row without entries gets the bias alone
    csr = adjacency.to_sparse_csr()
    order = torch.randperm(csr.values().numel(), generator=gen)
    values = torch.empty_like(csr.values()).index_copy_(0, order, csr.values())  # values[order] == csr.values()
    src = torch.randn(90, c_in, generator=gen)
    weight, bias = torch.randn(c_in, c_out, generator=gen), torch.randn(c_out, generator=gen)

    def run():
        side = torch.full((120, c_in), float("nan"))
        out = native.csr_rows_matmul(torch.full((120, c_out), float("nan")), csr.crow_indices(), csr.col_indices(),
                                     values, src, weight, bias, order, side)
        return out, side

    with threads(1):
        out, side = run()
    torch.testing.assert_close(side, adjacency @ src, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, bias + (adjacency @ src) @ weight, rtol=1e-5, atol=1e-4)
    with threads(2):
        out2, side2 = run()
    assert torch.equal(out2, out) and torch.equal(side2, side)


@needs_native
def test_csr_rows_matmul_refuses_wide_rows_and_bad_shapes():
    csr = torch.eye(4).to_sparse_csr()
    with pytest.raises(ValueError, match=r"weight must be \[C, C_out\] = \[65, 3\] with C <= 64"):
        native.csr_rows_matmul(torch.empty(4, 3), csr.crow_indices(), csr.col_indices(), csr.values(),
                               torch.randn(4, 65), torch.randn(65, 3))
    with pytest.raises(ValueError, match="bias must have 3 entries"):
        native.csr_rows_matmul(torch.empty(4, 3), csr.crow_indices(), csr.col_indices(), csr.values(),
                               torch.randn(4, 2), torch.randn(2, 3), torch.randn(2))


@needs_native
@pytest.mark.parametrize("c_in, c_out", [(16, 7), (8, 24), (40, 40)])
def test_small_graph_layers_take_the_fused_kernel_with_the_reference_results_and_bits_per_thread_count(c_in, c_out):
    engine = importlib.import_module("irregconv.engine.gather_scatter")
    gen = torch.Generator().manual_seed(c_in)
    rb = build_graph_rulebook(random_graph(300, 1500, generator=gen), 300)
    feats = torch.randn(300, c_in, generator=gen).requires_grad_()
    weight = torch.randn(1, c_in, c_out, generator=gen).requires_grad_()
    scale, bias = torch.rand(rb.num_pairs, generator=gen), torch.randn(c_out, generator=gen).requires_grad_()
    assert engine._fused(feats, weight[0], rb) and engine._fused(torch.empty(300, c_out), weight[0].t(), rb)
    assert_parity(lambda f, w, b: gather_scatter(f, w, rb, scale, b),
                  lambda f, w, b: gather_scatter_reference(f, w, rb, scale) + b, (feats, weight, bias),
                  rtol=1e-4, atol=1e-4)

    def run():
        leaves = [t.detach().clone().requires_grad_() for t in (feats, weight, bias)]
        out = gather_scatter(leaves[0], leaves[1], rb, scale, leaves[2])
        out.backward(torch.ones_like(out))
        return [out] + [t.grad for t in leaves]

    with threads(1):
        first = run()
    with threads(2):
        assert all(torch.equal(a, b) for a, b in zip(run(), first))


@needs_native
@pytest.mark.parametrize("n, a, b", [(0, 3, 5), (1, 1, 1), (300, 16, 7), (1000, 33, 20), (5000, 7, 16)])
def test_rows_outer_gives_weight_and_bias_gradients_with_the_same_bits_per_thread_count(n, a, b):
    gen = torch.Generator().manual_seed(n + a + b)
    x, g = torch.randn(n, a, generator=gen), torch.randn(n, b, generator=gen)
    with threads(1):
        outer, sums = native.rows_outer(x, g, sums=True)
        sums_only = native.rows_outer(None, g, sums=True)
    torch.testing.assert_close(outer, (x.double().t() @ g.double()).float(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(sums, g.double().sum(0).float(), rtol=1e-5, atol=1e-4)
    assert sums_only[0] is None and torch.equal(sums_only[1], sums)
    assert native.rows_outer(x, g)[1] is None
    with threads(2):
        outer2, sums2 = native.rows_outer(x, g, sums=True)
    assert torch.equal(outer2, outer) and torch.equal(sums2, sums)
    # swapped operands sum the same products in the same order: a transposed layer weight's gradient needs no copy
    assert torch.equal(native.rows_outer(g, x)[0].t(), outer)

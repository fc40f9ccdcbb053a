"""gather_scatter: float64 gradcheck on every rulebook kind, parity with the per-offset reference loop
(outputs and gradients, hypothesis), the fast paths (identity offset, numba scatter, CSR products), errors."""
import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine import gather_scatter, gather_scatter_reference
from irregconv.engine.backends import native
from irregconv.rulebook import KernelRegion, build_graph_rulebook, build_subm_rulebook
from irregconv.testing import DEVICES, RULEBOOK_KINDS, assert_parity, random_coords, random_graph, random_rulebook

F64 = dict(rtol=1e-7, atol=1e-9)
F32 = dict(rtol=1e-4, atol=1e-5)
WEIGHTS = ("dense", "grouped", "depthwise", "none")


def _weight(kind, volume, channels, dtype=torch.float64, gen=None, c_out=None):
    """A weight for ``channels`` input channels: dense ``[K, C, C_out]``, grouped ``[K, 2, C/2, C_out/2]``,
    depthwise ``[K, C, 1, 1]`` or None."""
    c_out = channels + 2 if c_out is None else c_out
    shapes = {"dense": (volume, channels, c_out), "grouped": (volume, 2, channels // 2, c_out // 2),
              "depthwise": (volume, channels, 1, 1)}
    return None if kind == "none" else torch.randn(shapes[kind], dtype=dtype, generator=gen)


def _tiny(kind, seed):
    # a 2-tap-wide transposed kernel creates fewer new sites (gradcheck's cost grows with the output size)
    return random_rulebook(kind, torch.Generator().manual_seed(seed), num_sites=3, spatial_shape=(2, 2, 3),
                           batch_size=2, kernel_size=2 if kind == "transposed" else 3)


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
@pytest.mark.parametrize("weight_kind", WEIGHTS)
@pytest.mark.parametrize("scaled", [False, True])
def test_gradcheck_every_kind(kind, weight_kind, scaled):
    gen = torch.Generator().manual_seed(1)
    rb = _tiny(kind, 1)
    feats = torch.randn(rb.num_in, 2, dtype=torch.float64, generator=gen).requires_grad_()
    weight = _weight(weight_kind, rb.kernel_volume, 2, gen=gen)
    inputs = [feats]
    if weight is not None:
        inputs.append(weight.requires_grad_())
    if scaled:
        inputs.append(torch.rand(rb.num_pairs, dtype=torch.float64, generator=gen).requires_grad_())

    def fn(f, *rest):
        w = rest[0] if weight is not None else None
        return gather_scatter(f, w, rb, rest[-1] if scaled else None)

    assert torch.autograd.gradcheck(fn, inputs)


@st.composite
def engine_cases(draw):
    kind = draw(st.sampled_from(RULEBOOK_KINDS))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    rb = random_rulebook(kind, gen, num_sites=draw(st.integers(0, 30)), batch_size=draw(st.integers(1, 3)),
                         kernel_size=draw(st.sampled_from([1, 2, 3])))
    channels = 2 * draw(st.integers(1, 3))
    return rb, draw(st.sampled_from(WEIGHTS)), channels, draw(st.booleans()), gen


@settings(max_examples=40, deadline=None)
@given(engine_cases())
def test_engine_matches_reference(case):
    rb, weight_kind, channels, scaled, gen = case
    inputs = [torch.randn(rb.num_in, channels, dtype=torch.float64, generator=gen).requires_grad_()]
    weight = _weight(weight_kind, rb.kernel_volume, channels, gen=gen)
    if weight is not None:
        inputs.append(weight.requires_grad_())
    if scaled:
        inputs.append(torch.randn(rb.num_pairs, dtype=torch.float64, generator=gen).requires_grad_())

    def call(op):
        return lambda f, *rest: op(f, rest[0] if weight is not None else None, rb, rest[-1] if scaled else None)

    assert_parity(call(gather_scatter), call(gather_scatter_reference), inputs, generator=gen, **F64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
def test_engine_matches_reference_on_device(device, kind):
    gen = torch.Generator().manual_seed(6)
    rb = random_rulebook(kind, gen, num_sites=30).to(device)
    for weight_kind in WEIGHTS:
        for scaled in (False, True):
            weight = _weight(weight_kind, rb.kernel_volume, 4, gen=gen)
            inputs = [torch.randn(rb.num_in, 4, dtype=torch.float64, generator=gen).to(device).requires_grad_()]
            inputs += [] if weight is None else [weight.to(device).requires_grad_()]
            inputs += [torch.rand(rb.num_pairs, dtype=torch.float64, generator=gen).to(device).requires_grad_()
                       ] if scaled else []

            def call(op):
                return lambda f, *rest: op(f, rest[0] if weight is not None else None, rb,
                                           rest[-1] if scaled else None)

            assert_parity(call(gather_scatter), call(gather_scatter_reference), inputs, generator=gen, **F64)


@pytest.mark.parametrize("c_in, c_out", [(8, 24), (24, 8)])
def test_large_inputs_match_reference(c_in, c_out):
    # big enough for the multi-threaded row scatter and both CSR orders (transform first / aggregate first);
    # float64, so that sums over thousands of pairs are compared at float64 tolerances
    gen = torch.Generator().manual_seed(2)
    coords = random_coords(800, (12, 12, 12), 2, gen)
    subm = build_subm_rulebook(coords, (12, 12, 12), 2, KernelRegion.cube(3, 3), (1, 1, 1))
    assert int(subm.counts().min()) * 8 >= 4096  # every offset takes the threaded scatter (>= 4096 elements)
    graph = build_graph_rulebook(random_graph(1000, 6000, gen), 1000)
    for rb in (subm, subm.transpose(), graph):
        feats = torch.randn(rb.num_in, c_in, dtype=torch.float64, generator=gen).requires_grad_()
        weight = torch.randn(rb.kernel_volume, c_in, c_out, dtype=torch.float64, generator=gen).requires_grad_()
        scale = torch.rand(rb.num_pairs, dtype=torch.float64, generator=gen).requires_grad_()
        assert_parity(lambda f, w, s: gather_scatter(f, w, rb, s),
                      lambda f, w, s: gather_scatter_reference(f, w, rb, s), [feats, weight, scale], generator=gen,
                      **F64)
        assert_parity(lambda f, w: gather_scatter(f, w, rb), lambda f, w: gather_scatter_reference(f, w, rb),
                      [feats, weight], generator=gen, **F64)


@pytest.mark.parametrize("kind", ["subm", "strided", "graph"])
@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True),
                                   (False, True, True), (True, False, True)])
def test_gradients_of_any_subset_of_inputs(kind, needs):
    # backward computes only what is asked for; each subset must still give the reference's gradients
    gen = torch.Generator().manual_seed(8)
    rb = random_rulebook(kind, gen, num_sites=20)
    inputs = [torch.randn(rb.num_in, 4, dtype=torch.float64, generator=gen),
              torch.randn(rb.kernel_volume, 4, 3, dtype=torch.float64, generator=gen),
              torch.rand(rb.num_pairs, dtype=torch.float64, generator=gen)]
    inputs = [x.requires_grad_(need) for x, need in zip(inputs, needs)]
    assert_parity(lambda f, w, s: gather_scatter(f, w, rb, s), lambda f, w, s: gather_scatter_reference(f, w, rb, s),
                  inputs, generator=gen, **F64)


def test_identity_offset_is_a_plain_matmul():
    rb = random_rulebook("subm", torch.Generator().manual_seed(3), num_sites=40)
    assert rb.identity_offset is not None
    feats = torch.randn(rb.num_in, 3, dtype=torch.float64)
    weight = torch.zeros(rb.kernel_volume, 3, 4, dtype=torch.float64)
    weight[rb.identity_offset] = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(gather_scatter(feats, weight, rb), feats @ weight[rb.identity_offset], **F64)


def test_grouped_weight_with_one_group_and_non_contiguous_feats():
    gen = torch.Generator().manual_seed(4)
    rb = random_rulebook("strided", gen, num_sites=20)
    feats = torch.randn(3, rb.num_in, dtype=torch.float64, generator=gen).t().requires_grad_()
    weight = torch.randn(rb.kernel_volume, 1, 3, 5, dtype=torch.float64, generator=gen).requires_grad_()
    assert not feats.is_contiguous()
    assert_parity(lambda f, w: gather_scatter(f, w, rb), lambda f, w: gather_scatter_reference(f, w[:, 0], rb),
                  [feats, weight], generator=gen, **F64)


def test_rulebook_without_pairs_gives_zeros():
    rb = build_graph_rulebook(torch.zeros(2, 0, dtype=torch.long), 4)
    feats = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True)
    out = gather_scatter(feats, weight, rb)
    torch.testing.assert_close(out, torch.zeros(4, 2, dtype=torch.float64), rtol=0, atol=0)
    out.sum().backward()
    torch.testing.assert_close(feats.grad, torch.zeros_like(feats), rtol=0, atol=0)
    torch.testing.assert_close(weight.grad, torch.zeros_like(weight), rtol=0, atol=0)


def test_no_double_backward():
    rb = _tiny("subm", 0)
    feats = torch.randn(rb.num_in, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(rb.kernel_volume, 2, 2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gather_scatter(feats, weight, rb).pow(2).sum(), feats, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|marked with @once_differentiable"):
        grad.sum().backward()


def test_bad_arguments():
    rb = _tiny("subm", 0)
    n, k = rb.num_in, rb.kernel_volume
    feats = torch.randn(n, 4)
    w = torch.randn(k, 4, 3)
    cases = [
        ((feats, w, "rb"), TypeError, "gather_scatter: rulebook must be an irregconv.rulebook.Rulebook, got str"),
        ((feats[0], w, rb), ValueError, r"gather_scatter: feats must be a \[N_in, C_in\] tensor, got \[4\]"),
        ((feats.long(), w, rb), TypeError, "gather_scatter: feats must be floating point, got torch.int64"),
        ((feats[1:], w, rb), ValueError, f"feats has {n - 1} rows but the rulebook expects num_in = {n}"),
        ((feats, w[1:], rb), ValueError,
         rf"weight must be \[K, C_in, C_out\] or .* with K = {k}, got \[{k - 1}, 4, 3\]"),
        ((feats, torch.randn(k, 3, 3), rb), ValueError, "expects C_in = 3 input channels, but feats has 4"),
        ((feats, torch.randn(k, 2, 3, 1), rb), ValueError, "expects C_in = 6 input channels, but feats has 4"),
        ((feats, w.double(), rb), ValueError,
         r"weight \(torch.float64, cpu\) must match feats \(torch.float32, cpu\)"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            gather_scatter(*args)
    with pytest.raises(ValueError, match=rf"pair_scale must have shape \[P\] = \[{rb.num_pairs}\], got \[3\]"):
        gather_scatter(feats, w, rb, torch.ones(3))


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
def test_bias_is_added_to_every_output_row_with_its_gradient(kind):
    gen = torch.Generator().manual_seed(4)
    rb = _tiny(kind, 4)
    feats = torch.randn(rb.num_in, 2, dtype=torch.float64, generator=gen).requires_grad_()
    weight = torch.randn(rb.kernel_volume, 2, 3, dtype=torch.float64, generator=gen).requires_grad_()
    bias = torch.randn(3, dtype=torch.float64, generator=gen).requires_grad_()
    assert_parity(lambda f, w, b: gather_scatter(f, w, rb, None, b),
                  lambda f, w, b: gather_scatter_reference(f, w, rb) + b, (feats, weight, bias), **F64)
    assert torch.autograd.gradcheck(lambda f, w, b: gather_scatter(f, w, rb, None, b), (feats, weight, bias))


@pytest.mark.parametrize("layout", [torch.sparse_csr, torch.sparse_coo, torch.sparse_csc])
@pytest.mark.parametrize("c_out", [3, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_feats_are_multiplied_through_their_nonzeros(layout, c_out, dtype):
    gen = torch.Generator().manual_seed(5)
    edge_index = random_graph(30, 90, generator=gen)
    rb = build_graph_rulebook(edge_index, 30)
    dense = torch.randn(30, 20, dtype=dtype, generator=gen) * (torch.rand(30, 20, generator=gen) < 0.2)
    sparse = dense.to_sparse(layout=layout)
    weight = torch.randn(1, 20, c_out, dtype=dtype, generator=gen).requires_grad_()
    scale = torch.rand(rb.num_pairs, dtype=dtype, generator=gen).requires_grad_()
    bias = torch.randn(c_out, dtype=dtype, generator=gen).requires_grad_()
    tolerance = F64 if dtype == torch.float64 else F32
    assert_parity(lambda w, s, b: gather_scatter(sparse, w, rb, s, b),
                  lambda w, s, b: gather_scatter_reference(dense, w, rb, s) + b, (weight, scale, bias), **tolerance)
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(lambda w, s, b: gather_scatter(sparse, w, rb, s, b), (weight, scale, bias))


def test_sparse_feats_take_a_transposed_layer_weight_and_give_its_gradient_in_its_layout():
    gen = torch.Generator().manual_seed(6)
    rb = build_graph_rulebook(random_graph(40, 120, generator=gen), 40)
    dense = torch.randn(40, 33, generator=gen) * (torch.rand(40, 33, generator=gen) < 0.1)
    lin_weight = torch.randn(16, 33, generator=gen).requires_grad_()  # as nn.Linear stores it: [C_out, C_in]
    out = gather_scatter(dense.to_sparse_csr(), lin_weight.t().unsqueeze(0), rb)
    expected_weight = lin_weight.detach().clone().requires_grad_()
    expected = gather_scatter_reference(dense, expected_weight.t().unsqueeze(0), rb)
    torch.testing.assert_close(out, expected, **F32)
    grad = torch.randn(out.shape, generator=gen)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(lin_weight.grad, expected_weight.grad, **F32)
    assert lin_weight.grad.is_contiguous()


def test_sparse_feats_bad_uses_raise_clear_errors():
    gen = torch.Generator().manual_seed(7)
    graph = build_graph_rulebook(random_graph(10, 20, generator=gen), 10)
    sparse = torch.eye(10).to_sparse_csr()
    with pytest.raises(TypeError, match="rulebook must be an irregconv.rulebook.Rulebook, got str"):
        gather_scatter(sparse, torch.randn(1, 10, 2), "graph")
    with pytest.raises(TypeError, match="sparse feats .* need a graph rulebook .* and a weight"):
        gather_scatter(sparse, None, graph)
    with pytest.raises(TypeError, match="an injective \\(convolution\\) rulebook"):
        rb = _tiny("subm", 0)
        gather_scatter(torch.eye(rb.num_in).to_sparse_csr(), torch.randn(rb.kernel_volume, rb.num_in, 2), rb)
    with pytest.raises(ValueError, match="use irregconv.functional.sparse_matmul"):
        gather_scatter(torch.eye(10).to_sparse_coo().requires_grad_(), torch.randn(1, 10, 2), graph)


def test_bias_bad_shapes_raise_clear_errors():
    rb = _tiny("subm", 0)
    feats, weight = torch.randn(rb.num_in, 4), torch.randn(rb.kernel_volume, 4, 3)
    with pytest.raises(ValueError, match=r"bias must have shape \[C_out\] = \[3\], got \[4\]"):
        gather_scatter(feats, weight, rb, None, torch.zeros(4))
    with pytest.raises(ValueError, match=r"bias \(torch.float64, cpu\) must match feats \(torch.float32, cpu\)"):
        gather_scatter(feats, weight, rb, None, torch.zeros(3, dtype=torch.float64))


def test_sparse_feats_with_int32_indices_give_the_same_result():
    gen = torch.Generator().manual_seed(8)
    rb = build_graph_rulebook(random_graph(20, 60, generator=gen), 20)
    dense = torch.randn(20, 9, generator=gen) * (torch.rand(20, 9, generator=gen) < 0.3)
    csr = dense.to_sparse_csr()
    narrow = torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape)
    weight = torch.randn(1, 9, 16, generator=gen)
    torch.testing.assert_close(gather_scatter(narrow, weight, rb), gather_scatter_reference(dense, weight, rb), **F32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_feats_seen_again_give_the_same_weight_gradient_bits_and_new_values_are_not_stale(dtype):
    # the second backward with the same unchanged values reads a copy in the transposed order (the first reads
    # through the order): the same bits; values changed in place must not reuse that copy
    engine = importlib.import_module("irregconv.engine.gather_scatter")
    gen = torch.Generator().manual_seed(9)
    rb = build_graph_rulebook(random_graph(40, 120, generator=gen), 40)
    dense = torch.randn(40, 33, dtype=dtype, generator=gen) * (torch.rand(40, 33, generator=gen) < 0.1)
    sparse = dense.to_sparse_csr()
    weight = torch.randn(1, 33, 16, dtype=dtype, generator=gen)
    grad = torch.randn(40, 16, dtype=dtype, generator=gen)

    def weight_grad():
        w = weight.clone().requires_grad_()
        gather_scatter(sparse, w, rb).backward(grad)
        return w.grad

    grads = [weight_grad() for _ in range(3)]
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])
    assert engine._SPARSE_FEATURES.transposed_values(sparse)[1] is None  # the copy, not the order, is read now
    w = weight.clone().requires_grad_()
    gather_scatter_reference(dense, w, rb).backward(grad)
    torch.testing.assert_close(grads[0], w.grad, **(F64 if dtype == torch.float64 else F32))
    sparse.values().mul_(2)  # in place: a new version, so the copy is not reused
    torch.testing.assert_close(weight_grad(), 2 * grads[0], **(F64 if dtype == torch.float64 else F32))


@pytest.mark.parametrize("features", ["sparse", "dense"])
def test_native_graph_path_gives_the_general_paths_bits(features):
    # the prepared native path (one-offset graph, float32 CPU, scales without gradient) runs the general path's
    # kernels on operands prepared once: the same bits for outputs and gradients, on the first call and later ones
    engine = importlib.import_module("irregconv.engine.gather_scatter")
    gen = torch.Generator().manual_seed(10)
    rb = build_graph_rulebook(random_graph(60, 240, generator=gen), 60)
    dense = torch.randn(60, 40, generator=gen) * (torch.rand(60, 40, generator=gen) < 0.1)
    feats = dense.to_sparse_csr() if features == "sparse" else dense[:, :16].contiguous()
    weight = torch.randn(1, feats.size(1), 7, generator=gen)
    bias, scale = torch.randn(7, generator=gen), torch.rand(rb.num_pairs, generator=gen)
    grad = torch.randn(60, 7, generator=gen)

    def run(scale_grad: bool):
        leaves = [weight.clone().requires_grad_(), bias.clone().requires_grad_()]
        x = feats if features == "sparse" else feats.clone().requires_grad_()
        out = gather_scatter(x, leaves[0], rb, scale.clone().requires_grad_(scale_grad), leaves[1])
        out.backward(grad)
        return [out] + [t.grad for t in leaves] + ([] if features == "sparse" else [x.grad])

    if native.AVAILABLE:
        assert engine._native_graph(feats, weight, scale, rb, scale_needs_grad=False)
        assert not engine._native_graph(feats, weight, scale, rb, scale_needs_grad=True)
    general = run(scale_grad=True)
    for _ in range(3):
        assert all(torch.equal(a, b) for a, b in zip(run(scale_grad=False), general))


HALF = (torch.bfloat16, torch.float16)


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("scaled", [False, True])
def test_half_rows_are_summed_in_float32_and_rounded_once(kind, dtype, scaled):
    # the oracle: the float32 engine on the same (half) values, its output rounded to the half dtype once
    gen = torch.Generator().manual_seed(7)
    rb = random_rulebook(kind, gen, num_sites=20)
    feats = torch.randn(rb.num_in, 6, generator=gen).to(dtype).requires_grad_()
    weight = torch.randn(rb.kernel_volume, 6, 16, generator=gen).to(dtype).requires_grad_()
    scale = torch.rand(rb.num_pairs, generator=gen) if scaled else None
    out = gather_scatter(feats, weight, rb, scale)
    assert out.dtype == dtype
    feats32, weight32 = (t.detach().float().requires_grad_() for t in (feats, weight))
    expected = gather_scatter(feats32, weight32, rb, scale)
    assert torch.equal(out, expected.to(dtype))
    grad = torch.randn(out.shape, generator=gen).to(dtype)
    got = torch.autograd.grad(out, [feats, weight], grad)
    want = torch.autograd.grad(expected, [feats32, weight32], grad.float())
    assert all(g.dtype == dtype and torch.equal(g, w.to(dtype)) for g, w in zip(got, want))


@pytest.mark.parametrize("kind", ["subm", "strided", "graph"])
@pytest.mark.parametrize("dtype", HALF)
def test_autocast_rounds_inputs_and_output_to_its_dtype(kind, dtype):
    # as torch's conv under autocast: float32 inputs and weight rounded to the autocast dtype, output of that dtype
    gen = torch.Generator().manual_seed(8)
    rb = random_rulebook(kind, gen, num_sites=20)
    feats, weight = torch.randn(rb.num_in, 5, generator=gen), torch.randn(rb.kernel_volume, 5, 32, generator=gen)
    bias = torch.randn(32, generator=gen)
    with torch.autocast("cpu", dtype=dtype):
        out = gather_scatter(feats, weight, rb, bias=bias)
    expected = gather_scatter(*(t.to(dtype).float() for t in (feats, weight)), rb, bias=bias.to(dtype).float())
    assert out.dtype == dtype and torch.equal(out, expected.to(dtype))

"""Module-level properties with hypothesis (random coordinate sets, kernel geometries, batch sizes, graphs).

The rulebook-level properties (invariants, symmetry, transpose involution, hash round trips) live in
tests/rulebook and tests/hashing; here whole modules are checked, in float64 and for outputs AND gradients:

* every sparse convolution (submanifold, strided, transposed, inverse) equals a dense
  ``torch.nn.functional`` convolution of the densified input at the active output sites, and produces
  exactly the sites the dense occupancy reaches;
* inverse = transpose: an inverse convolution equals ``conv_transpose`` of the strided output, read at the
  strided convolution's input sites, and its rulebook is the strided rulebook transposed;
* engine == reference: each module's output equals the plain per-offset loop
  (:func:`irregconv.engine.reference.gather_scatter_reference`) on the module's own rulebook;
* max / average pooling equal dense pooling over the active inputs;
* GCNConv equals the dense normalised adjacency on random graphs with self-loops and isolated nodes.
"""
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import irregconv.nn as icnn
from irregconv import SparseTensor
from irregconv.engine.reference import gather_scatter_reference
from irregconv.functional.sparse_conv import inverse_rulebook, strided_rulebook, subm_rulebook, transposed_rulebook
from irregconv.rulebook import conv_output_shape, transposed_output_shape
from irregconv.testing import (assert_parity, dense_conv, densify, random_coords, random_graph, reference_output_sites,
                               rulebook_triples, subm_conv_at_sites, values_at, weight_to_torch)

EXAMPLES = 25
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXACT = dict(rtol=1e-7, atol=1e-9)


@st.composite
def sparse_inputs(draw, min_extent: int = 1):
    """A float64 SparseTensor on a random grid (1-3 spatial axes), batch size 1-3, 1-20 sites per item."""
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(min_extent, 7), min_size=dims, max_size=dims)))
    batch = draw(st.integers(1, 3))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    coords = random_coords(draw(st.integers(1, 20)), shape, batch, gen)
    channels = draw(st.integers(1, 3))
    feats = torch.randn(coords.size(0), channels, dtype=torch.float64, generator=gen, requires_grad=True)
    return SparseTensor(feats, coords, shape, batch)


@st.composite
def geometries(draw, dims: int):
    """``(kernel_size, stride, padding, dilation)`` tuples of ``dims`` entries."""
    axes = lambda low, high: tuple(draw(st.lists(st.integers(low, high), min_size=dims, max_size=dims)))  # noqa: E731
    return axes(1, 3), axes(1, 3), axes(0, 2), axes(1, 2)


def _module(kind: str, dims: int, c_in: int, geometry, c_out: int = 2, **kwargs):
    kernel, stride, padding, dilation = geometry
    torch.manual_seed(0)
    if kind == "subm":
        module = getattr(icnn, f"SubMConv{dims}d")(c_in, c_out, kernel, dilation=dilation, **kwargs)
    elif kind == "strided":
        module = getattr(icnn, f"SparseConv{dims}d")(c_in, c_out, kernel, stride, padding, dilation, **kwargs)
    else:
        module = getattr(icnn, f"SparseConvTranspose{dims}d")(c_in, c_out, kernel, stride, padding, dilation,
                                                              **kwargs)
    return module.double()


def _with_weight(module, sites):
    """``(feats, weight) -> output feats`` of ``module`` on ``sites``, differentiable in both."""
    return lambda f, w: torch.func.functional_call(module, {"weight": w}, (SparseTensor.from_sites(f, sites),)).feats


def _feasible(x: SparseTensor, kind: str, geometry) -> bool:
    kernel, stride, padding, dilation = geometry
    try:
        if kind == "strided":
            conv_output_shape(x.spatial_shape, kernel, stride, padding, dilation)
        elif kind == "transposed":
            transposed_output_shape(x.spatial_shape, kernel, stride, padding, dilation, (0,) * x.dims)
    except ValueError:
        return False
    return True


@PROPERTY
@given(st.data(), st.sampled_from(["subm", "strided", "transposed"]), st.booleans())
def test_sparse_conv_equals_the_dense_oracle_at_active_sites(data, kind, grouped):
    x = data.draw(sparse_inputs())
    geometry = data.draw(geometries(x.dims))
    assume(_feasible(x, kind, geometry))
    groups = x.num_channels if grouped else 1    # grouped: depthwise with 2 outputs per channel
    kernel, stride, padding, dilation = geometry
    module = _module(kind, x.dims, x.num_channels, geometry, c_out=2 * groups, groups=groups, bias=False)
    out = module(x)
    transposed = kind == "transposed"
    if kind == "subm":
        sites, shape = x.coords, x.spatial_shape
    elif transposed:
        sites = reference_output_sites(x.coords, x.spatial_shape, x.batch_size, kernel, stride, padding, dilation,
                                       transposed=True)
        shape = transposed_output_shape(x.spatial_shape, kernel, stride, padding, dilation, (0,) * x.dims)
    else:
        sites = reference_output_sites(x.coords, x.spatial_shape, x.batch_size, kernel, stride, padding, dilation)
        shape = conv_output_shape(x.spatial_shape, kernel, stride, padding, dilation)
    assert torch.equal(out.coords, sites) and out.spatial_shape == shape

    def oracle(f, w):
        if kind == "subm":
            return subm_conv_at_sites(f, x.coords, w, x.spatial_shape, x.batch_size, kernel, dilation)
        # as testing.conv_at_sites, with a contiguous torch weight: torch's conv_transpose backward refuses
        # the permuted view for some degenerate kernels ("grad_weight needs to be contiguous")
        torch_weight = weight_to_torch(w, kernel, transposed=transposed).contiguous()
        dense = dense_conv(densify(f, x.coords, x.spatial_shape, x.batch_size), torch_weight, stride, padding,
                           dilation, groups, transposed)
        return values_at(dense, sites)

    assert_parity(_with_weight(module, x.sites), oracle, [x.feats, module.weight.detach().requires_grad_()],
                  **EXACT)


@PROPERTY
@given(st.data())
def test_inverse_conv_is_the_transpose_of_the_strided_conv(data):
    x = data.draw(sparse_inputs(min_extent=2))
    kernel, stride, padding, dilation = data.draw(geometries(x.dims))
    assume(_feasible(x, "strided", (kernel, stride, padding, dilation)))
    torch.manual_seed(0)
    down = getattr(icnn, f"SparseConv{x.dims}d")(x.num_channels, 2, kernel, stride, padding, dilation).double()
    inverse = getattr(icnn, f"SparseInverseConv{x.dims}d")(2, 3, kernel, bias=False).double()
    y = down(x)
    out = inverse(y)
    assert torch.equal(out.coords, x.coords) and out.spatial_shape == x.spatial_shape
    forward_rb, _ = strided_rulebook(x.sites, down.region, stride, padding, dilation)
    inverse_rb, _ = inverse_rulebook(y.sites, inverse.region)
    assert torch.equal(rulebook_triples(inverse_rb).sort(dim=0).values,
                       rulebook_triples(forward_rb.transpose()).sort(dim=0).values)

    def oracle(f, w):  # conv_transpose of the densified strided output, read at the strided conv's input sites
        grid = densify(f, y.coords, y.spatial_shape, y.batch_size)
        w_t = w.reshape(*kernel, 2, 3).permute(-2, -1, *range(x.dims)).contiguous()      # [C_in, C_out, *k]
        # the floor in the conv output size drops up to stride - 1 trailing input positions: output_padding
        # restores the input grid (those positions do receive taps)
        extra = tuple(s - ((n - 1) * st - 2 * p + d * (k - 1) + 1) for s, n, k, st, p, d in
                      zip(x.spatial_shape, y.spatial_shape, kernel, stride, padding, dilation))
        full = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[x.dims](
            grid, w_t, None, stride, padding, extra, 1, dilation)
        return values_at(full, x.coords)

    assert_parity(_with_weight(inverse, y.sites), oracle,
                  [y.feats.detach().requires_grad_(), inverse.weight.detach().requires_grad_()], **EXACT)


@PROPERTY
@given(st.data(), st.sampled_from(["subm", "strided", "transposed", "inverse"]))
def test_module_equals_the_reference_loop_on_its_own_rulebook(data, kind):
    x = data.draw(sparse_inputs(min_extent=2))
    geometry = data.draw(geometries(x.dims))
    kernel, stride, padding, dilation = geometry
    assume(_feasible(x, "strided" if kind == "inverse" else kind, geometry))
    if kind == "inverse":
        down = _module("strided", x.dims, x.num_channels, geometry)(x)
        x = SparseTensor.from_sites(down.feats.detach(), down.sites)
        torch.manual_seed(0)
        module = getattr(icnn, f"SparseInverseConv{x.dims}d")(2, 2, kernel).double()
        rulebook = inverse_rulebook(x.sites, module.region)[0]
    else:
        module = _module(kind, x.dims, x.num_channels, geometry)
        rulebook = {"subm": lambda: subm_rulebook(x.sites, module.region, dilation),
                    "strided": lambda: strided_rulebook(x.sites, module.region, stride, padding, dilation)[0],
                    "transposed": lambda: transposed_rulebook(x.sites, module.region, stride, padding, dilation,
                                                              (0,) * x.dims)[0]}[kind]()
    reference = lambda f, w: gather_scatter_reference(f, w, rulebook) + module.bias  # noqa: E731
    assert_parity(_with_weight(module, x.sites), reference,
                  [x.feats.detach().requires_grad_(), module.weight.detach().requires_grad_()], **EXACT)


@PROPERTY
@given(st.data(), st.sampled_from(["max", "mean"]))
def test_pooling_equals_dense_pooling_over_active_inputs(data, reduce):
    x = data.draw(sparse_inputs(min_extent=2))
    kernel, stride, padding, dilation = data.draw(geometries(x.dims))
    padding = tuple(min(p, k // 2) for p, k in zip(padding, kernel))   # torch's pools: padding <= kernel / 2
    assume(_feasible(x, "strided", (kernel, stride, padding, dilation)))
    cls = getattr(icnn, f"Sparse{'Max' if reduce == 'max' else 'Avg'}Pool{x.dims}d", None)
    assume(cls is not None)
    out = cls(kernel, stride, padding, dilation)(x)
    sites = reference_output_sites(x.coords, x.spatial_shape, x.batch_size, kernel, stride, padding, dilation)
    assert torch.equal(out.coords, sites)
    pools = {1: (F.max_pool1d, F.conv1d), 2: (F.max_pool2d, F.conv2d), 3: (F.max_pool3d, F.conv3d)}[x.dims]
    active = densify(torch.ones(x.num_sites, 1, dtype=torch.float64), x.coords, x.spatial_shape, x.batch_size)
    if reduce == "max":   # inactive sites must never win: -inf there
        grid = densify(x.feats, x.coords, x.spatial_shape, x.batch_size).masked_fill(active == 0, float("-inf"))
        want = pools[0](grid, kernel, stride, padding, dilation)
    else:                 # sum over the active inputs / their number, as a per-channel ones convolution
        grid = densify(x.feats, x.coords, x.spatial_shape, x.batch_size)
        ones = torch.ones(x.num_channels, 1, *kernel, dtype=torch.float64)
        total = pools[1](grid, ones, None, stride, padding, dilation, x.num_channels)
        count = pools[1](active, ones[:1], None, stride, padding, dilation)
        want = total / count.clamp(min=1)
    torch.testing.assert_close(out.feats, values_at(want, sites), **EXACT)


@PROPERTY
@given(st.integers(1, 12), st.integers(0, 30), st.integers(0, 2 ** 31 - 1), st.booleans())
def test_gcn_equals_the_dense_normalised_adjacency(num_nodes, num_edges, seed, weighted):
    gen = torch.Generator().manual_seed(seed)
    edges = random_graph(num_nodes, num_edges, gen, allow_self_loops=True) if num_edges else \
        torch.zeros(2, 0, dtype=torch.long)
    weight = torch.rand(edges.size(1), dtype=torch.float64, generator=gen) + 0.1 if weighted else None
    x = torch.randn(num_nodes, 3, dtype=torch.float64, generator=gen)
    torch.manual_seed(0)
    conv = icnn.GCNConv(3, 2).double()
    adjacency = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    w = torch.ones(edges.size(1), dtype=torch.float64) if weight is None else weight
    loops = edges[0] == edges[1]
    adjacency.index_put_((edges[1, ~loops], edges[0, ~loops]), w[~loops], accumulate=True)
    diagonal = torch.ones(num_nodes, dtype=torch.float64)
    diagonal[edges[0, loops]] = w[loops]          # random_graph has no repeated edge, so at most one loop per node
    adjacency += torch.diag(diagonal)
    norm = adjacency.sum(dim=1).pow(-0.5)
    want = (norm[:, None] * adjacency * norm[None, :]) @ (x @ conv.lin.weight.t()) + conv.bias
    torch.testing.assert_close(conv(x, edges, weight), want, **EXACT)

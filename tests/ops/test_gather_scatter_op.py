"""torch.ops.irregconv.gather_scatter and gather_scatter_backward: opcheck (schema, fake kernel, autograd
registration, AOT dispatch) for injective and graph rulebooks; outputs and gradients against the per-offset reference
and bit for bit against irregconv.engine.gather_scatter; float64 gradcheck; fake-kernel shapes; bf16 autocast equal to
the engine's; torch.compile(fullgraph=True) of a closure over a rulebook built outside (a KITTI scan crop, a Cora GCN)
and two SubMConv3d layers on sites whose rulebook an eager call cached, without graph breaks, compiled == eager bit
for bit, backward included, and a second call with other sizes; compiled
under bf16 autocast == eager; torch.export of a conv over a fixed rulebook, saved and loaded, runs the operator; the
kernels' rebuilt rulebooks reused until their tensors change."""
import dataclasses
import importlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from irregconv.data import Planetoid, read_points, voxelize
from irregconv.engine import gather_scatter, gather_scatter_reference
from irregconv.functional.graph import build_gcn_rulebook
from irregconv.nn.sparse import SubMConv3d
from irregconv.rulebook import KernelRegion, build_subm_rulebook
from irregconv.tensor import SparseTensor
from irregconv.testing import RULEBOOK_KINDS, data_path, random_rulebook, with_data

F64 = dict(rtol=1e-7, atol=1e-9)
F32 = dict(rtol=1e-4, atol=1e-5)
GRADS = {"none": (), "feats": ("feats",), "weight": ("weight",), "all": ("feats", "weight", "pair_scale", "bias")}


def _rulebook_args(rb):
    return rb.in_idx, rb.out_idx, rb.offset_ptr, rb.num_out


def _facts(rb):
    return rb.injective, rb.identity_offset, rb._derived.get("mirror")


def _op_args(rb, feats, weight, pair_scale, bias):
    return (feats, weight, *_rulebook_args(rb), pair_scale, bias, *_facts(rb))


def _inputs(kind, dtype, scaled, biased, grads, seed=0, c_in=3, c_out=4, num_sites=10):
    """``(rulebook, {name: tensor or None})`` with the tensors named in ``grads`` requiring a gradient."""
    gen = torch.Generator().manual_seed(seed)
    rb = random_rulebook(kind, gen, num_sites=num_sites)
    tensors = {"feats": torch.randn(rb.num_in, c_in, dtype=dtype, generator=gen),
               "weight": torch.randn(rb.kernel_volume, c_in, c_out, dtype=dtype, generator=gen),
               "pair_scale": torch.rand(rb.num_pairs, dtype=dtype, generator=gen) if scaled else None,
               "bias": torch.randn(c_out, dtype=dtype, generator=gen) if biased else None}
    for name in GRADS[grads]:
        if tensors[name] is not None:
            tensors[name].requires_grad_()
    return rb, tensors


def _op(rb, feats, weight, pair_scale=None, bias=None):
    return torch.ops.irregconv.gather_scatter(*_op_args(rb, feats, weight, pair_scale, bias))


def _engine(rb, feats, weight, pair_scale=None, bias=None):
    return gather_scatter(feats, weight, rb, pair_scale, bias)


@pytest.mark.parametrize("kind", ["subm", "strided", "graph"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("biased", [False, True])
@pytest.mark.parametrize("grads", ["none", "feats", "all"])
def test_opcheck_forward(kind, dtype, scaled, biased, grads):
    rb, t = _inputs(kind, dtype, scaled, biased, grads)
    torch.library.opcheck(torch.ops.irregconv.gather_scatter.default,
                          _op_args(rb, t["feats"], t["weight"], t["pair_scale"], t["bias"]))


@pytest.mark.parametrize("kind", ["subm", "graph"])
def test_opcheck_forward_without_weight(kind):
    rb, t = _inputs(kind, torch.float64, True, False, "all")
    torch.library.opcheck(torch.ops.irregconv.gather_scatter.default, _op_args(rb, t["feats"], None, t["pair_scale"], None))


@pytest.mark.parametrize("kind", ["subm", "transposed", "graph"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("output_mask", [(True, False, False, False), (False, True, False, True),
                                         (True, True, True, True)])
def test_opcheck_backward(kind, dtype, output_mask):
    rb, t = _inputs(kind, dtype, True, True, "none")
    grad_out = torch.randn(rb.num_out, 4, dtype=dtype)
    torch.library.opcheck(torch.ops.irregconv.gather_scatter_backward.default,
                          (grad_out, t["feats"], t["weight"], *_rulebook_args(rb), t["pair_scale"], *_facts(rb),
                           list(output_mask)))


def _outputs_and_grads(fn, rb, t, cotangent):
    out = fn(rb, t["feats"], t["weight"], t["pair_scale"], t["bias"])
    wrt = [v for v in t.values() if v is not None and v.requires_grad]
    return [out, *torch.autograd.grad(out, wrt, cotangent)]


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_engine_bitwise_and_reference(kind, dtype, scaled, weighted):
    rb, t = _inputs(kind, dtype, scaled, weighted, "all", seed=3, c_in=4, c_out=4 if not weighted else 16,
                    num_sites=30)
    if not weighted:
        t["weight"] = None
    cotangent = torch.randn(rb.num_out, 4 if not weighted else 16, dtype=dtype)
    ours = _outputs_and_grads(_op, rb, t, cotangent)
    engine = _outputs_and_grads(_engine, rb, t, cotangent)
    reference = _outputs_and_grads(
        lambda r, f, w, s, b: gather_scatter_reference(f, w, r, s) + (0 if b is None else b), rb, t, cotangent)
    for a, b, c in zip(ours, engine, reference):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, **(F64 if dtype == torch.float64 else F32))


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
@pytest.mark.parametrize("scaled", [False, True])
def test_gradcheck(kind, scaled):
    rb, t = _inputs(kind, torch.float64, scaled, True, "all", seed=1, c_in=2, c_out=3, num_sites=3)
    names = [name for name, v in t.items() if v is not None]

    def fn(*tensors):
        return _op(rb, **dict(zip(names, tensors)))

    assert torch.autograd.gradcheck(fn, [t[name] for name in names])


@pytest.mark.parametrize("kind", ["subm", "strided", "graph"])
@pytest.mark.parametrize("grouped", [False, True])
def test_fake_kernel_shapes(kind, grouped):
    rb, t = _inputs(kind, torch.float32, True, True, "none", c_in=4, c_out=6)
    weight = torch.randn(rb.kernel_volume, 2, 2, 3) if grouped else t["weight"]
    with FakeTensorMode() as mode:
        fake = {name: None if v is None else mode.from_tensor(v)
                for name, v in dict(t, weight=weight).items()}
        fake_rb = dataclasses.replace(rb, in_idx=mode.from_tensor(rb.in_idx), out_idx=mode.from_tensor(rb.out_idx),
                                      offset_ptr=mode.from_tensor(rb.offset_ptr), _derived=dict(rb._derived))
        out = _op(fake_rb, fake["feats"], fake["weight"], fake["pair_scale"], fake["bias"])
        through_engine = gather_scatter(fake["feats"], fake["weight"], fake_rb, fake["pair_scale"], fake["bias"])
        grads = torch.ops.irregconv.gather_scatter_backward(
            torch.empty(rb.num_out, 6), fake["feats"], fake["weight"], *_rulebook_args(fake_rb), fake["pair_scale"],
            *_facts(rb), [True, True, False, True])
    for result in (out, through_engine):
        assert result.shape == (rb.num_out, 6) and result.dtype == torch.float32
    assert grads[0].shape == t["feats"].shape and grads[1].shape == weight.shape and grads[2] is None
    assert grads[3].shape == (6,)


@pytest.mark.parametrize("kind", ["subm", "strided", "graph"])
@pytest.mark.parametrize("feats_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scaled", [False, True])
def test_bf16_autocast_equals_engine(kind, feats_dtype, scaled):
    rb, t = _inputs(kind, torch.float32, scaled, True, "all", seed=5, c_in=4, c_out=16, num_sites=20)
    t["feats"] = t["feats"].detach().to(feats_dtype).requires_grad_()
    cotangent = torch.randn(rb.num_out, 16, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _outputs_and_grads(_op, rb, t, cotangent)
        engine = _outputs_and_grads(_engine, rb, t, cotangent)
    assert ours[0].dtype == torch.bfloat16
    for a, b in zip(ours, engine):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_errors_name_the_argument():
    rb, t = _inputs("subm", torch.float32, False, False, "none")
    with pytest.raises(ValueError, match="in_idx must be a \\[P\\] int64"):
        torch.ops.irregconv.gather_scatter(t["feats"], t["weight"], rb.in_idx.int(), rb.out_idx, rb.offset_ptr,
                                           rb.num_out, None, None, True, None, None)
    with pytest.raises(ValueError, match="weight must be"):
        _op(rb, t["feats"], t["weight"][:1])
    with pytest.raises(ValueError, match="mirror must list"):
        torch.ops.irregconv.gather_scatter(t["feats"], t["weight"], *_rulebook_args(rb), None, None, True, None, [0])


def test_kernels_rebuild_a_rulebook_once_until_its_tensors_change():
    recent = importlib.import_module("irregconv.ops.gather_scatter")._RECENT
    rb, t = _inputs("graph", torch.float32, True, False, "all")
    builds = recent.builds
    for _ in range(3):
        _op(rb, t["feats"], t["weight"], t["pair_scale"]).sum().backward()
    assert recent.builds == builds + 1
    in_idx = rb.in_idx.clone()
    changed = dataclasses.replace(rb, in_idx=in_idx, _derived={})
    _op(changed, t["feats"], t["weight"])
    assert recent.builds == builds + 2
    in_idx.copy_(rb.in_idx.flip(0))  # the same address, other pairs: the version counter tells
    expected = gather_scatter(t["feats"], t["weight"], dataclasses.replace(rb, in_idx=rb.in_idx.flip(0), _derived={}))
    assert torch.equal(_op(changed, t["feats"], t["weight"]), expected)
    assert recent.builds == builds + 3


def _kitti_crop(point_range):
    voxels = voxelize(read_points(data_path("lidar", "kitti_training_000000.bin")), (0.05, 0.05, 0.1), point_range)
    rb = build_subm_rulebook(voxels.coords, voxels.spatial_shape, 1, KernelRegion.cube(3, 3), (1, 1, 1))
    return voxels.feats, rb


def _assert_compiled_equals_eager(fn, inputs, params=()):
    """No graph break, and ``torch.compile(fn, fullgraph=True)``'s output and gradients (for the inputs that need one
    and ``params``) equal eager's bit for bit."""
    assert torch._dynamo.explain(fn)(*inputs).graph_break_count == 0
    compiled = torch.compile(fn, fullgraph=True, dynamic=True)
    wrt = [x for x in inputs if x.requires_grad] + list(params)
    results = []
    for run in (compiled, fn):
        out = run(*inputs)
        results.append([out, *torch.autograd.grad(out.square().sum(), wrt)])
    for a, b in zip(*results):
        assert torch.equal(a, b)
    return compiled


@with_data("lidar")
def test_compile_submanifold_on_kitti_crop():
    torch._dynamo.reset()
    feats, rb = _kitti_crop((0.0, -5.0, -3.0, 10.0, 5.0, 1.0))
    weight = torch.randn(rb.kernel_volume, feats.size(1), 16, requires_grad=True)
    bias = torch.randn(16, requires_grad=True)

    def conv(f, w, b):
        return gather_scatter(f, w, rb, bias=b)

    _assert_compiled_equals_eager(conv, (feats.requires_grad_(), weight, bias))

    def conv_on(f, w, b, rulebook):
        return gather_scatter(f, w, rulebook, bias=b).relu()

    compiled = torch.compile(conv_on, fullgraph=True, dynamic=True)
    for point_range in ((0.0, -5.0, -3.0, 10.0, 5.0, 1.0), (0.0, -8.0, -3.0, 12.0, 8.0, 1.0)):
        feats, other = _kitti_crop(point_range)
        assert torch.equal(compiled(feats, weight, bias, other), conv_on(feats, weight, bias, other))


def _cora():
    data = Planetoid(data_path("planetoid"), "cora")
    return data.x / data.x.sum(1, keepdim=True).clamp(min=1), data.edge_index


@with_data("planetoid", "cora")
def test_compile_gcn_on_cora():
    torch._dynamo.reset()
    x, edge_index = _cora()
    rb, scale = build_gcn_rulebook(edge_index, num_nodes=x.size(0))
    weights = [torch.randn(1, 1433, 16, requires_grad=True), torch.randn(1, 16, 7, requires_grad=True)]
    biases = [torch.randn(16, requires_grad=True), torch.randn(7, requires_grad=True)]

    def gcn(f, w, b):
        h = gather_scatter(f, w, rb, scale, b).relu()
        return gather_scatter(h, weights[1], rb, scale, biases[1])

    _assert_compiled_equals_eager(gcn, (x, weights[0], biases[0]))

    def gcn_on(f, w, b, rulebook, pair_scale):
        return gather_scatter(f, w, rulebook, pair_scale, b)

    compiled = torch.compile(gcn_on, fullgraph=True, dynamic=True)
    for num_nodes in (2708, 2000):
        keep = (edge_index < num_nodes).all(0)
        sub_rb, sub_scale = build_gcn_rulebook(edge_index[:, keep], num_nodes=num_nodes)
        args = (x[:num_nodes], weights[0], biases[0], sub_rb, sub_scale)
        assert torch.equal(compiled(*args), gcn_on(*args))


def test_compile_under_bf16_autocast_equals_eager():
    torch._dynamo.reset()
    rb, t = _inputs("subm", torch.float32, False, True, "none", seed=7, c_in=4, c_out=16, num_sites=30)

    def conv(f, w, b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return gather_scatter(f, w, rb, bias=b)

    args = (t["feats"], t["weight"], t["bias"])
    out = torch.compile(conv, fullgraph=True)(*args)
    assert out.dtype == torch.bfloat16 and torch.equal(out, conv(*args))


class _Conv(torch.nn.Module):
    """One engine convolution over a fixed rulebook (an attribute: its tensors become the program's constants)."""

    def __init__(self, rulebook, weight, bias):
        super().__init__()
        self.rulebook = rulebook
        self.weight, self.bias = torch.nn.Parameter(weight), torch.nn.Parameter(bias)

    def forward(self, feats):
        return gather_scatter(feats, self.weight, self.rulebook, bias=self.bias)


@pytest.mark.parametrize("kind", ["subm", "graph"])
def test_export_save_load_runs_the_operator(kind, tmp_path):
    rb, t = _inputs(kind, torch.float32, False, True, "none", seed=8, c_in=4, c_out=16, num_sites=30)
    model = _Conv(rb, t["weight"], t["bias"])
    program = torch.export.export(model, (t["feats"],))
    targets = [node.target for node in program.graph.nodes if node.op == "call_function"]
    assert targets == [torch.ops.irregconv.gather_scatter.default]
    torch.export.save(program, tmp_path / "conv.pt2")
    loaded = torch.export.load(tmp_path / "conv.pt2").module()
    assert torch.equal(loaded(t["feats"]), model(t["feats"]))


@with_data("lidar")
def test_compile_subm_layers_on_sites_with_a_cached_rulebook():
    # the sites own the rulebook (built by an eager call): the compiled layers only read it
    torch._dynamo.reset()
    voxels = voxelize(read_points(data_path("lidar", "kitti_training_000000.bin")), (0.05, 0.05, 0.1),
                      (0.0, -5.0, -3.0, 10.0, 5.0, 1.0))
    sites = SparseTensor(voxels.feats, voxels.coords, voxels.spatial_shape, 1)
    layers = torch.nn.ModuleList([SubMConv3d(voxels.feats.size(1), 16, 3), SubMConv3d(16, 16, 3, bias=False)])
    layers[1](layers[0](sites))

    def net(feats):
        x = layers[0](sites.replace(feats=feats))
        return layers[1](x.replace(feats=x.feats.relu())).feats

    _assert_compiled_equals_eager(net, (voxels.feats.clone().requires_grad_(),), layers.parameters())


def test_fake_kernel_refuses_mismatched_dtypes():
    rb, t = _inputs("subm", torch.float32, False, False, "none")
    weight = t["weight"].double()
    with FakeTensorMode() as mode, pytest.raises(RuntimeError, match="weight \\(torch.float64\\) must match feats"):
        _op(dataclasses.replace(rb, in_idx=mode.from_tensor(rb.in_idx), out_idx=mode.from_tensor(rb.out_idx),
                                offset_ptr=mode.from_tensor(rb.offset_ptr), _derived=dict(rb._derived)),
            mode.from_tensor(t["feats"]), mode.from_tensor(weight))


@pytest.mark.parametrize("kind", ["subm", "graph"])
def test_compile_with_every_gradient(kind):
    torch._dynamo.reset()
    rb, t = _inputs(kind, torch.float32, True, True, "all", seed=9, c_in=8, c_out=16, num_sites=30)

    def conv(f, w, s, b):
        return gather_scatter(f, w, rb, s, b)

    _assert_compiled_equals_eager(conv, (t["feats"], t["weight"], t["pair_scale"], t["bias"]))


@pytest.mark.parametrize("kind", ["subm", "strided", "graph"])
def test_kernel_for_other_devices_is_the_reference(kind):
    # registered for CompositeExplicitAutograd: what serves a device without a kernel of its own (run here on CPU)
    reference_kernel = importlib.import_module("irregconv.ops.gather_scatter")._gather_scatter_reference
    rb, t = _inputs(kind, torch.float64, True, True, "none")
    out = reference_kernel(*_op_args(rb, t["feats"], t["weight"], t["pair_scale"], t["bias"]))
    torch.testing.assert_close(out, _op(rb, t["feats"], t["weight"], t["pair_scale"], t["bias"]), **F64)

"""bfloat16 / float16 and autocast: the sparse backbone (native API and the spconv drop-in), a 2-layer GCN and a dense
engine Conv2d run under ``torch.autocast('cpu', dtype)`` and as ``model.to(dtype)`` on ``dtype`` inputs, with outputs
of that dtype within its rounding of the float32 result and the same bits on a rerun.

Each model runs in a child interpreter (the backbone under bf16 autocast once ended in heap corruption: a crash must
fail one test, not end the session); the child saves its outputs, the test compares them.

The bound: the engine rounds its inputs and weights to the half dtype (unit roundoff ``u``: 2^-8 for bfloat16,
2^-11 for float16), sums in float32 and rounds its output, as torch's convolutions do under autocast; each layer
then adds at most a few ``u`` of its output's magnitude (one rounding of the inputs, one of the weights, one of the
output; the float32 sums add far less), and the batch norm rescales by statistics computed in float32. Over the two
layers of each model the error stays below ``8 u`` times the largest float32 output (measured: 1.5-2 ``u``).
"""
import copy
import subprocess
import sys
import textwrap

import pytest
import torch

HALF = {"bfloat16": torch.bfloat16, "float16": torch.float16}
UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
MODELS = ("sparse_backbone", "spconv_backbone", "gcn", "dense_conv")
MODES = ("autocast", "cast")


def _sparse_input(dtype=torch.float32):
    from irregconv.testing import random_coords
    coords = random_coords(2500, (40, 40, 20), 2, generator=torch.Generator().manual_seed(0))
    feats = torch.randn(coords.size(0), 4, generator=torch.Generator().manual_seed(1)).to(dtype)
    return feats, coords


def _sparse_backbone():
    import irregconv
    from irregconv.nn import SparseConv3d, SparseSequential, SubMConv3d
    net = SparseSequential(SubMConv3d(4, 16, 3), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                           SparseConv3d(16, 32, 3, stride=2, padding=1))
    return net, lambda model, dtype: model(irregconv.SparseTensor(*_sparse_input(dtype), (40, 40, 20), 2)).feats


def _spconv_backbone():
    from irregconv.compat.spconv import SparseConv3d, SparseConvTensor, SparseSequential, SubMConv3d
    net = SparseSequential(SubMConv3d(4, 16, 3, indice_key="subm1"), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                           SparseConv3d(16, 32, 3, stride=2, padding=1))

    def run(model, dtype):
        feats, coords = _sparse_input(dtype)
        return model(SparseConvTensor(feats, coords, [40, 40, 20], 2)).features
    return net, run


def _gcn():
    from irregconv.nn import GCNConv
    from irregconv.testing import random_graph

    class GCN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = GCNConv(32, 16), GCNConv(16, 7)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    edge_index = random_graph(300, 1500, generator=torch.Generator().manual_seed(2))
    x = torch.randn(300, 32, generator=torch.Generator().manual_seed(3))
    return GCN(), lambda model, dtype: model(x.to(dtype), edge_index)


def _dense_conv():
    from irregconv.nn import Conv2d
    image = torch.randn(2, 4, 12, 12, generator=torch.Generator().manual_seed(4))
    return Conv2d(4, 16, 3, padding=1, backend="engine"), lambda model, dtype: model(image.to(dtype))


def model_outputs(name: str, path: str) -> None:
    """Run model ``name`` in float32, under autocast and cast to each half dtype (twice each, with the gradient of
    its parameters under autocast), and save the outputs to ``path``. Called in a child interpreter."""
    torch.manual_seed(0)
    model, run = {"sparse_backbone": _sparse_backbone, "spconv_backbone": _spconv_backbone, "gcn": _gcn,
                  "dense_conv": _dense_conv}[name]()
    parameters = list(model.parameters())
    results = {"float32": run(model, torch.float32).detach(), "float32_grads": [
        g.detach() for g in torch.autograd.grad(run(model, torch.float32).square().sum(), parameters)]}
    for label, dtype in HALF.items():
        try:  # a Python error is saved for the test to report; a crash ends the child
            for attempt in range(2):
                with torch.autocast("cpu", dtype=dtype):
                    out = run(model, torch.float32)
                grads = torch.autograd.grad(out.float().square().sum(), parameters)
                results[f"autocast_{label}_{attempt}"] = out.detach()
                results[f"autocast_{label}_grads_{attempt}"] = [g.detach() for g in grads]
        except Exception as error:
            results[f"autocast_{label}_error"] = repr(error)
        try:
            half = copy.deepcopy(model).to(dtype)
            for attempt in range(2):
                results[f"cast_{label}_{attempt}"] = run(half, dtype).detach()
        except Exception as error:
            results[f"cast_{label}_error"] = repr(error)
    torch.save(results, path)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Every model's outputs, each computed in a child interpreter."""
    folder = tmp_path_factory.mktemp("autocast")
    found = {}
    for name in MODELS:
        path = folder / f"{name}.pt"
        code = textwrap.dedent(f"""
            import importlib.util
            spec = importlib.util.spec_from_file_location("autocast_models", {__file__!r})
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.model_outputs({name!r}, {str(path)!r})
            """)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        found[name] = (result, torch.load(path) if result.returncode == 0 else None)
    return found


def _finished(outputs, name, mode, label):
    """The saved outputs of ``name``, after checking that its child ended and ran ``mode`` in ``label``."""
    result, saved = outputs[name]
    assert result.returncode == 0, f"{name}: the child ended with {result.returncode}:\n{result.stderr[-3000:]}"
    assert f"{mode}_{label}_error" not in saved, saved.get(f"{mode}_{label}_error")
    return saved


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("label", HALF)
def test_half_precision_output_is_within_its_rounding_of_float32(outputs, name, label, mode):
    saved = _finished(outputs, name, mode, label)
    dtype, reference = HALF[label], saved["float32"]
    out = saved[f"{mode}_{label}_0"]
    assert out.dtype == dtype and out.shape == reference.shape
    bound = 8 * UNIT_ROUNDOFF[dtype] * float(reference.abs().max())
    torch.testing.assert_close(out.float(), reference, rtol=0, atol=bound)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("label", HALF)
def test_half_precision_reruns_give_the_same_bits(outputs, name, label, mode):
    saved = _finished(outputs, name, mode, label)
    assert torch.equal(saved[f"{mode}_{label}_0"], saved[f"{mode}_{label}_1"])
    if mode == "autocast":
        first, second = saved[f"autocast_{label}_grads_0"], saved[f"autocast_{label}_grads_1"]
        assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("mode", ["autocast"])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("label", HALF)
def test_gradients_under_autocast_are_float32_and_near_float32(outputs, name, label, mode):
    # parameters stay float32 under autocast, so do their gradients. The loss sums squares of the outputs, so its
    # gradient carries their rounding once more, and a parameter whose exact gradient vanishes (a conv bias before a
    # batch norm) gets rounding noise at the scale of the others: the bound is 16 u times the model's largest
    # float32 gradient (measured: up to 9 u, float16 through the backbone's batch norm)
    saved = _finished(outputs, name, mode, label)
    dtype, reference = HALF[label], saved["float32_grads"]
    bound = 16 * UNIT_ROUNDOFF[dtype] * max(float(grad.abs().max()) for grad in reference)
    for got, want in zip(saved[f"autocast_{label}_grads_0"], reference):
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=bound)

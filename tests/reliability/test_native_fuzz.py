"""Every native and numba kernel entry point (and the engine's gather_scatter and aggregate, and batch norm) called
with broken arguments: wrong dtypes, non-contiguous and transposed views, empty and huge (expanded, never
allocated) buffers, meta tensors, tensor subclasses without storage (data_ptr 0), FakeTensors, 0-dim tensors,
negative and out-of-range indices, lying sizes. Only Python exceptions may come out, never a signal or a hang.
The native rulebook, hash-table and row kernels are called directly ("native_builders"); the "numba" group's front
doors (row sums, HashTable, sort_pairs) are forced onto the numba kernels.

The calls run in child interpreters, a batch of cases each (one interpreter per case would take minutes); a child
prints each case's name before the call and its outcome after, so a crash or a hang names the case it was in.
Where a native kernel would read or write the buffer as it is, a refusal is required, not only the absence of a
crash: a wrong dtype, a meta tensor, a subclass without storage, a FakeTensor or a 0-dim tensor must raise.
"""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from irregconv.engine.backends import native

# ------------------------------------------------------------------ valid calls of every entry point


def _pairs():
    # two offsets: (0 -> 0), (1 -> 1) and (2 -> 2), (3 -> 4); grouped by offset, sorted by output
    return torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 4]), torch.tensor([0, 2, 4])


def _csr():
    return torch.tensor([0, 2, 3, 4]), torch.tensor([0, 1, 1, 2]), torch.ones(4)


def _mostly_zero():
    x = torch.zeros(8, 20)
    x[::2, ::3] = 1.5
    return x


def _rulebook(kind):
    from irregconv.testing import random_rulebook
    return random_rulebook(kind, torch.Generator().manual_seed(0), num_sites=10)


def _native_entries():
    in_idx, out_idx, offset_ptr = _pairs()
    crow, col, values = _csr()
    x = _mostly_zero()
    _, csr = native.nonzero_rows_matmul(x, torch.randn(20, 16))
    operand = native.CsrOperand(crow, col)
    return {
        "conv_accumulate": (native.conv_accumulate, [torch.zeros(5, 16), torch.randn(4, 3), torch.randn(2, 3, 16),
                                                     in_idx, out_idx, offset_ptr, None]),
        "conv_weight_grad": (native.conv_weight_grad, [torch.zeros(2, 3, 16), torch.randn(4, 3), torch.randn(5, 16),
                                                       in_idx, out_idx, offset_ptr, None]),
        "nonzero_rows_matmul": (native.nonzero_rows_matmul, [x, torch.randn(20, 16)]),
        "csr_weight_grad": (lambda crow_, cols, vals, n, g: native.csr_weight_grad((crow_, cols, vals), n, g),
                            [*csr, 20, torch.randn(8, 16)]),
        "column_moments": (native.column_moments, [torch.randn(10, 4)]),
        "column_grad_sums": (native.column_grad_sums, [torch.randn(10, 4), torch.randn(10, 4),
                                                       torch.zeros(4, dtype=torch.float64),
                                                       torch.ones(4, dtype=torch.float64)]),
        "rows_outer": (native.rows_outer, [torch.randn(10, 3), torch.randn(10, 5)]),
        "csr_rows_add": (native.csr_rows_add, [torch.zeros(3, 4), crow, col, values, torch.randn(3, 4)]),
        "csr_rows_matmul": (native.csr_rows_matmul, [torch.zeros(3, 5), crow, col, values, torch.randn(3, 4),
                                                     torch.randn(4, 5), torch.randn(5)]),
        "csr_rows_prepared": (native.csr_rows_prepared, [operand, torch.zeros(3, 4), values, torch.randn(3, 4),
                                                         torch.randn(4)]),
        "CsrOperand": (native.CsrOperand, [crow, col, torch.tensor([3, 2, 1, 0])]),
        "contiguous_rows": (native.contiguous_rows, [torch.randn(5, 7).t()]),
        "copy_rows_": (native.copy_rows_, [torch.empty(7, 5).t(), torch.randn(5, 7)]),
        "transpose": (native._transpose, [torch.randn(5, 7), torch.empty(7, 5).t()]),
    }


def _numba_entries():
    from irregconv.engine.backends import rows
    from irregconv.hashing import HashTable
    from irregconv.rulebook.rulebook import sort_pairs
    crow, col, values = _csr()
    f64 = dict(dtype=torch.float64)
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 2, 3], [1, 3, 3, 3]], dtype=torch.int32)
    keys = torch.tensor([0, 1, 33, 127])
    return {
        "rows.csr_rows_add": (rows.csr_rows_add, [torch.zeros(3, 4, **f64), crow, col, values.double(),
                                                  torch.randn(3, 4, **f64)]),
        "rows.scatter_add_rows": (rows.scatter_add_rows, [torch.zeros(5, 3, **f64), torch.tensor([0, 4, 4]),
                                                          torch.randn(3, 3, **f64), [(0, 2), (2, 3)]]),
        "sort_pairs": (sort_pairs, [torch.tensor([0, 0, 1, 1]), torch.tensor([3, 1, 2, 0]),
                                    torch.tensor([0, 2, 1, 3]), 4, 4]),
        "HashTable": (HashTable, [keys]),
        "HashTable.lookup_neighbors": (lambda table_keys, c, d, shape, batch:
                                       HashTable(table_keys).lookup_neighbors(c, d, shape, batch),
                                       [keys, coords, torch.tensor([[0, 0, 1], [1, 0, 0]]), (4, 4, 4), 2]),
    }


def _native_builder_entries():
    from irregconv.engine.backends.native import hashing, rulebook
    from irregconv.engine.backends.native import rows as native_rows
    from irregconv.rulebook import KernelRegion
    from irregconv.rulebook.strided import _axis_taps
    crow, col, values = _csr()
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 2, 3], [1, 3, 3, 3]], dtype=torch.int32)
    keys = torch.tensor([0, 1, 27, 127])  # coords packed over (2, 4, 4, 4)
    region = KernelRegion.cube(3, 3)
    displacements, mirror = region.displacements((1, 1, 1)), region.mirror()
    half = torch.tensor([k for k in range(region.volume) if k < int(mirror[k])])
    tap_of, axis_taps, axis_counts = (torch.from_numpy(a) for a in _axis_taps(region))
    slots_key, slots_val, _ = hashing.build(keys, 16)
    rank, order = torch.tensor([0, 1, 1, 2]), torch.tensor([2, 0, 3, 1])
    return {
        "compact_neighbors": (rulebook.compact_neighbors, [torch.tensor([[0, -1, 2], [1, 1, -1]]), 3]),
        "merge_neighbors": (rulebook.merge_neighbors, [keys, torch.arange(4), coords, displacements, (2, 4, 4, 4),
                                                       half, mirror[half], torch.empty(27, 4, dtype=torch.int32)]),
        "candidate_pairs": (rulebook.candidate_pairs, [coords, tap_of, axis_taps, axis_counts, (2, 2, 2), (1, 1, 1),
                                                       (1, 1, 1), (2, 2, 2), False, 27, 4]),
        "argsort_keys": (rulebook.argsort_keys, [keys, 128]),
        "rank_sorted": (rulebook.rank_sorted, [keys]),
        "candidate_outputs": (rulebook.candidate_outputs, [rank, order, torch.tensor([2, 2])]),
        "fill_new_neighbors": (rulebook.fill_new_neighbors, [rank, order, torch.tensor([0, 0, 1, 1]),
                                                             torch.tensor([5, 6, 7, 8]),
                                                             torch.empty(2, 3, dtype=torch.int32)]),
        "sort_pairs": (rulebook.sort_pairs, [torch.tensor([0, 0, 1, 1]), torch.tensor([3, 1, 2, 0]),
                                             torch.tensor([0, 2, 1, 3]), 2, 4, 4]),
        "hash_build": (hashing.build, [keys, 16]),
        "hash_lookup": (hashing.lookup, [slots_key, slots_val, torch.tensor([1, 5, -3])]),
        "hash_lookup_neighbors": (hashing.lookup_neighbors, [slots_key, slots_val, coords, displacements,
                                                             (2, 4, 4, 4)]),
        "unpack_keys": (hashing.unpack, [keys, (4, 4, 4)]),
        "scatter_add_owned": (native_rows.scatter_add_owned, [torch.zeros(5, 3), torch.tensor([0, 4, 4]),
                                                              torch.randn(3, 3)]),
        "plain_csr_rows_add": (native_rows.csr_rows_add, [torch.zeros(3, 4, dtype=torch.float64), crow, col,
                                                          values.double(), torch.randn(3, 4, dtype=torch.float64)]),
    }


def _engine_entries():
    from irregconv.engine import aggregate, gather_scatter
    from irregconv.functional.batch_norm import batch_norm_rows
    subm, graph = _rulebook("subm"), _rulebook("graph")
    return {
        "gather_scatter.subm": (gather_scatter, [torch.randn(subm.num_in, 3), torch.randn(subm.kernel_volume, 3, 16),
                                                 subm]),
        "gather_scatter.graph": (gather_scatter, [torch.randn(graph.num_in, 3), torch.randn(1, 3, 4), graph,
                                                  torch.rand(graph.num_pairs), torch.randn(4)]),
        "aggregate": (aggregate, [torch.randn(graph.num_pairs, 3), graph, "max"]),
        "batch_norm_rows": (batch_norm_rows, [torch.randn(10, 4), torch.zeros(4), torch.ones(4), torch.ones(4),
                                              torch.zeros(4), True, 0.1, 1e-5]),
    }


GROUPS = {"native": _native_entries, "native_builders": _native_builder_entries, "numba": _numba_entries,
          "engine": _engine_entries}
#: the groups that call native kernels directly, which must refuse what they cannot read
NATIVE_GROUPS = ("native", "native_builders")

# ------------------------------------------------------------------ broken arguments


class _NoStorage(torch.Tensor):
    """A wrapper subclass with shape and dtype but no memory (data_ptr 0), like a torch_geometric Index."""

    @staticmethod
    def __new__(cls, like):
        return torch.Tensor._make_wrapper_subclass(cls, like.shape, dtype=like.dtype, device=like.device)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise NotImplementedError(f"_NoStorage has no data for {func}")


def _fake(x):
    from torch._subclasses.fake_tensor import FakeTensorMode
    return FakeTensorMode().from_tensor(x)


def _huge(x):
    """``x`` with its first axis 2^40 long, as an expanded view of one row (no memory)."""
    return x[:1].expand(1 << 40, *x.shape[1:]) if x.dim() else x


def _set(x, value):
    x = x.clone()
    x.view(-1)[x.numel() // 2] = value
    return x


def _strided(x):
    wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


#: mutations of a tensor argument, and whether the native kernels must refuse them (not only survive them)
MUTATIONS = {
    "bfloat16": (lambda x: x.to(torch.bfloat16), True),
    "float16": (lambda x: x.to(torch.float16), True),
    "float64": (lambda x: x.to(torch.float64), True),
    "int32": (lambda x: x.to(torch.int32), True),
    "float32": (lambda x: x.to(torch.float32), True),
    "strided": (_strided, False),
    "transposed": (lambda x: x.t().contiguous().t() if x.dim() == 2 else x.flip(0), False),
    "empty": (lambda x: x[:0], False),
    "huge": (_huge, False),
    "meta": (lambda x: x.to("meta"), True),
    "no_storage": (_NoStorage, True),
    "fake": (_fake, True),
    "scalar": (lambda x: x.reshape(-1)[0] if x.numel() else torch.tensor(0, dtype=x.dtype), True),
    "negative": (lambda x: _set(x, -1) if x.numel() else x, False),
    "out_of_range": (lambda x: _set(x, 10 ** 6) if x.numel() else x, False),
    "one_element_more": (lambda x: torch.cat([x, x[-1:]]) if x.numel() else x, False),
    "none": (lambda x: None, False),
}
#: lies in int arguments (sizes)
INT_MUTATIONS = {"int_negative": -1, "int_huge": 1 << 40, "int_zero": 0}


#: native entry points that choose the kernel only for float32 CPU matrices and hand anything else to torch
DISPATCHERS = ("contiguous_rows", "copy_rows_")


def _must_refuse(group, entry, arg, mutation):
    """Whether a native kernel would read ``arg`` mutated so as it is (int32 is a valid index dtype)."""
    refused = MUTATIONS[mutation][1] and group in NATIVE_GROUPS and entry not in DISPATCHERS
    return refused and not (mutation == "int32" and not arg.dtype.is_floating_point)


def _cases(group):
    """Every ``(case name, must refuse)`` of a group (built in the parent to name the tests)."""
    cases = []
    for entry, (_, args) in GROUPS[group]().items():
        for i, arg in enumerate(args):
            if isinstance(arg, torch.Tensor):
                for mutation in MUTATIONS:
                    if mutation in ("float32", "int32", "float64") and arg.dtype == getattr(torch, mutation):
                        continue  # not a mutation
                    cases.append((f"{group}/{entry}/{i}/{mutation}", _must_refuse(group, entry, arg, mutation)))
            elif isinstance(arg, int) and not isinstance(arg, bool):
                cases.extend((f"{group}/{entry}/{i}/{mutation}", False) for mutation in INT_MUTATIONS)
    return cases


def run_cases(group):
    """Run every case of ``group``, printing ``{"case", "outcome"}`` lines (called in a child interpreter)."""
    import warnings

    from irregconv._numba import available_cpu_kernels, forced_cpu_kernels
    warnings.simplefilter("ignore")
    if group == "numba" and "numba" in available_cpu_kernels():
        forced_cpu_kernels("numba").__enter__()  # this child's front doors take the numba kernels, not the native ones
    entries = GROUPS[group]()
    for name, _ in _cases(group):
        _, entry, index, mutation = name.split("/")
        call, args = entries[entry]
        args = list(args)
        index = int(index)
        print(json.dumps({"start": name}), flush=True)
        try:
            if mutation in INT_MUTATIONS:
                args[index] = INT_MUTATIONS[mutation]
            else:
                args[index] = MUTATIONS[mutation][0](args[index])
            call(*args)
            outcome = "ok"
        except Exception as error:  # every Python exception is a pass; a signal ends the child
            outcome = type(error).__name__
        print(json.dumps({"case": name, "outcome": outcome}), flush=True)


CASES = {group: _cases(group) for group in GROUPS}


@pytest.fixture(scope="module")
def outcomes():
    """``group -> (returncode, stderr, {case: outcome})``: each group's cases run in one child interpreter."""
    found = {}
    for group in GROUPS:
        code = textwrap.dedent(f"""
            import importlib.util
            spec = importlib.util.spec_from_file_location("native_fuzz", {__file__!r})
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.run_cases({group!r})
            """)
        try:
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
            returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
        except subprocess.TimeoutExpired as timeout:
            returncode, stdout, stderr = "timeout", (timeout.stdout or b"").decode(), (timeout.stderr or b"").decode()
        lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        started = [line["start"] for line in lines if "start" in line]
        done = {line["case"]: line["outcome"] for line in lines if "case" in line}
        last = started[-1] if started and started[-1] not in done else None
        found[group] = (returncode, stderr[-2000:], done, last)
    return found


@pytest.mark.parametrize("group", GROUPS)
def test_every_case_ends_in_python(outcomes, group):
    returncode, stderr, done, last = outcomes[group]
    assert returncode == 0, f"the child running the {group} cases ended with {returncode} in case {last}:\n{stderr}"
    assert set(done) == {name for name, _ in CASES[group]}


@pytest.mark.parametrize("group", GROUPS)
def test_native_kernels_refuse_what_they_cannot_read(outcomes, group):
    _, _, done, _ = outcomes[group]
    accepted = [name for name, must_refuse in CASES[group] if must_refuse and done.get(name) == "ok"]
    assert not accepted, f"accepted, where the kernel would read the buffer as it is: {accepted}"


def test_compile_breaks_the_graph_at_a_native_kernel_instead_of_tracing_its_addresses():
    # torch.compile once aborted the process here (dynamo handed the kernel addresses of traced tensors)
    code = ("import torch, warnings; warnings.simplefilter('ignore')\n"
            "from irregconv.engine.backends import native\n"
            "x = torch.randn(1000, 16)\n"
            "mean, var = torch.compile(native.column_moments)(x)\n"
            "assert torch.equal(mean, native.column_moments(x)[0]) and torch.equal(var, native.column_moments(x)[1])\n"
            "print('same')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "same", result.stderr[-2000:]

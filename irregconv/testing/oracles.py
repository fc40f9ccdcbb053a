"""Independent oracles for tests: dense ``torch.nn.functional`` convolutions evaluated at active sites,
weight layout conversions, brute-force rulebook pairs, and the rulebook invariants.

The oracles reuse neither the engine nor the rulebook builders, so a test that compares them with these
functions compares two independent computations:

* sparse features are *densified* onto a ``[B, C, *S]`` grid (zeros at inactive sites), run through
  ``F.conv{1,2,3}d`` / ``F.conv_transpose{1,2,3}d`` and read back at the active output sites;
* kernel regions other than the full cube become a dense weight with zeros at the missing taps;
* rulebook pairs are recomputed by brute force over all (input, output, tap) triples, and output site
  sets from a dense convolution of the occupancy grid with an all-ones kernel.

:func:`random_rulebook` (which does call the builders) makes inputs for properties that every rulebook
kind must satisfy.

Weight layouts (``k`` the kernel size, ``K = prod(k)`` taps in C order, ``G`` groups):

* engine ``[K, C_in, C_out]`` or grouped ``[K, G, C_in/G, C_out/G]``;
* torch convolution ``[C_out, C_in/G, *k]``; torch transposed convolution ``[C_in, C_out/G, *k]``;
* spconv's KRSC ``[C_out, *k, C_in]`` (ungrouped).

Ungrouped, ``w_torch = w.reshape(*k, C_in, C_out).permute(-1, -2, 0, 1, 2)`` for a 3D kernel.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from ..rulebook import (KernelRegion, Rulebook, build_dense_rulebook, build_graph_rulebook, build_strided_rulebook,
                        build_subm_rulebook, build_transposed_rulebook)
from .generators import random_coords, random_graph

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _tuple(value, dims: int):
    return (int(value),) * dims if isinstance(value, int) else tuple(int(v) for v in value)


# ---------------------------------------------------------------------------------------------- grids


def densify(feats: Tensor, coords: Tensor, spatial_shape: Sequence[int], batch_size: int) -> Tensor:
    """Scatter ``feats [N, C]`` at ``coords [N, 1 + D]`` into ``[B, C, *spatial_shape]`` (zeros elsewhere);
    differentiable in ``feats``."""
    grid = feats.new_zeros((int(batch_size), *[int(s) for s in spatial_shape], feats.size(1)))
    grid = grid.index_put(tuple(coords.long().t()), feats)
    return grid.movedim(-1, 1)


def values_at(dense: Tensor, coords: Tensor) -> Tensor:
    """Rows of ``dense [B, C, *S]`` at ``coords [N, 1 + D]`` -> ``[N, C]`` (every site must lie inside ``S``)."""
    return dense.movedim(1, -1)[tuple(coords.long().t())]


# -------------------------------------------------------------------------------------------- weights


def weight_to_torch(weight: Tensor, kernel_size: Sequence[int], taps: Optional[Tensor] = None,
                    transposed: bool = False) -> Tensor:
    """Engine weight -> torch's layout (differentiable).

    Args:
        weight (Tensor): ``[K, C_in, C_out]`` or grouped ``[K, G, C_in/G, C_out/G]``.
        kernel_size (sequence of int): the kernel box ``k`` (``D`` entries).
        taps (Tensor, optional): ``[K, D]`` tap vectors of a non-cube region (``KernelRegion.taps``);
            the other taps of the box get zero weight. Default: the full box in C order.
        transposed (bool): return ``conv_transpose``'s ``[C_in, C_out/G, *k]`` instead of conv's
            ``[C_out, C_in/G, *k]`` (default: False).
    """
    ks = tuple(int(k) for k in kernel_size)
    grouped = weight if weight.dim() == 4 else weight.unsqueeze(1)
    _, groups, cin, cout = grouped.shape
    if taps is None:
        box = grouped.reshape(*ks, groups, cin, cout)
    else:
        box = grouped.new_zeros((*ks, groups, cin, cout)).index_put(tuple(taps.long().t()), grouped)
    dims = len(ks)
    spatial = list(range(dims))
    g, i, o = dims, dims + 1, dims + 2
    if transposed:
        return box.permute(g, i, o, *spatial).reshape(groups * cin, cout, *ks)
    return box.permute(g, o, i, *spatial).reshape(groups * cout, cin, *ks)


def weight_from_torch(weight: Tensor, groups: int = 1, taps: Optional[Tensor] = None,
                      transposed: bool = False) -> Tensor:
    """Torch's layout -> engine weight (inverse of :func:`weight_to_torch`; keeps only ``taps`` if given).

    Returns ``[K, C_in, C_out]`` for ``groups == 1``, else ``[K, G, C_in/G, C_out/G]``.
    """
    ks = tuple(weight.shape[2:])
    dims = len(ks)
    # conv: [G, C_out/G, C_in/G, *k]; transposed: [G, C_in/G, C_out/G, *k]; either way to [*k, G, C_in/G, C_out/G]
    box = weight.reshape(groups, weight.size(0) // groups, weight.size(1), *ks)
    box = box.permute(*range(3, 3 + dims), 0, *((1, 2) if transposed else (2, 1)))
    out = box.reshape(-1, *box.shape[dims:]) if taps is None else box[tuple(taps.long().t())]
    return out.squeeze(1) if groups == 1 else out


def krsc_to_torch(weight: Tensor) -> Tensor:
    """spconv's KRSC ``[C_out, *k, C_in]`` -> torch's ``[C_out, C_in, *k]``."""
    return weight.movedim(-1, 1)


def torch_to_krsc(weight: Tensor) -> Tensor:
    """torch's ``[C_out, C_in, *k]`` -> spconv's KRSC ``[C_out, *k, C_in]``."""
    return weight.movedim(1, -1)


# --------------------------------------------------------------------------------- dense convolutions


def dense_conv(x: Tensor, weight: Tensor, stride=1, padding=0, dilation=1, groups: int = 1,
               transposed: bool = False, output_padding=0) -> Tensor:
    """``F.conv{D}d`` (or ``F.conv_transpose{D}d``) of ``x [B, C, *S]`` with a torch-layout ``weight``."""
    dims = x.dim() - 2
    if transposed:
        return _CONV_TRANSPOSE[dims](x, weight, None, stride, padding, output_padding, groups, dilation)
    return _CONV[dims](x, weight, None, stride, padding, dilation, groups)


def conv_at_sites(feats: Tensor, coords: Tensor, out_coords: Tensor, weight: Tensor, spatial_shape: Sequence[int],
                  batch_size: int, kernel_size: Sequence[int], stride=1, padding=0, dilation=1,
                  taps: Optional[Tensor] = None, transposed: bool = False, output_padding=0) -> Tensor:
    """Dense oracle of a sparse convolution, read at ``out_coords``.

    Densifies ``feats [N_in, C_in]`` on ``coords [N_in, 1 + D]``, runs torch's convolution (or transposed
    convolution) with the engine ``weight`` converted by :func:`weight_to_torch`, and returns its rows at
    ``out_coords [N_out, 1 + D]`` -> ``[N_out, C_out]``. Differentiable in ``feats`` and ``weight``.
    """
    groups = weight.size(1) if weight.dim() == 4 else 1
    x = densify(feats, coords, spatial_shape, batch_size)
    w = weight_to_torch(weight, kernel_size, taps, transposed)
    return values_at(dense_conv(x, w, stride, padding, dilation, groups, transposed, output_padding), out_coords)


def subm_conv_at_sites(feats: Tensor, coords: Tensor, weight: Tensor, spatial_shape: Sequence[int],
                       batch_size: int, kernel_size: Sequence[int], dilation=1,
                       taps: Optional[Tensor] = None) -> Tensor:
    """Submanifold oracle: a dense convolution with padding ``(k // 2) * dilation``, read at the input sites."""
    ks = tuple(int(k) for k in kernel_size)
    dl = _tuple(dilation, len(ks))
    padding = tuple((k // 2) * d for k, d in zip(ks, dl))
    return conv_at_sites(feats, coords, coords, weight, spatial_shape, batch_size, ks, 1, padding, dl, taps)


def reference_output_sites(coords: Tensor, spatial_shape: Sequence[int], batch_size: int, kernel_size: Sequence[int],
                           stride=1, padding=0, dilation=1, taps: Optional[Tensor] = None,
                           transposed: bool = False, output_padding=0) -> Tensor:
    """Output sites of a strided (or generative transposed) sparse convolution: every site of the output
    grid that some tap reaches from an active input, found by convolving the occupancy grid with an
    all-ones kernel (masked to ``taps``). Returns ``[N_out, 1 + D]`` int32 in (batch, *spatial) order."""
    ks = tuple(int(k) for k in kernel_size)
    occupancy = densify(torch.ones(coords.size(0), 1, dtype=torch.float64, device=coords.device), coords,
                        spatial_shape, batch_size)
    volume = taps.size(0) if taps is not None else int(torch.tensor(ks).prod())
    ones = torch.ones(volume, 1, 1, dtype=torch.float64, device=coords.device)
    reach = dense_conv(occupancy, weight_to_torch(ones, ks, taps, transposed), stride, padding, dilation, 1,
                       transposed, output_padding)
    return (reach[:, 0] > 0).nonzero().to(torch.int32)


# --------------------------------------------------------------------------------------- rulebooks


def reference_pairs(in_coords: Tensor, out_coords: Tensor, taps: Tensor, stride=1, padding=0,
                    dilation=1) -> Tensor:
    """Every ``(k, out, in)`` with ``in_coords[in] = out_coords[out] * stride - padding + taps[k] * dilation``
    in the same batch item, by brute force over all triples. Returns ``[P, 3]`` int64 sorted
    lexicographically (the canonical rulebook order). For a submanifold rulebook use
    ``padding = (k // 2) * dilation``; for a transposed one swap the roles of inputs and outputs."""
    dims = taps.size(1)
    st, pd, dl = (torch.tensor(_tuple(v, dims)) for v in (stride, padding, dilation))
    x_in, x_out = in_coords.long().cpu(), out_coords.long().cpu()
    src = x_out[None, :, 1:] * st - pd + (taps.long() * dl)[:, None, :]                      # [K, N_out, D]
    hit = (src[:, :, None, :] == x_in[None, None, :, 1:]).all(dim=3)                        # [K, N_out, N_in]
    hit &= (x_out[:, 0][:, None] == x_in[:, 0][None, :])[None]
    return hit.nonzero()


def rulebook_triples(rulebook: Rulebook) -> Tensor:
    """``[P, 3]`` int64 ``(offset, out_idx, in_idx)`` of every pair, in the rulebook's order."""
    k = torch.repeat_interleave(torch.arange(rulebook.kernel_volume), rulebook.offset_ptr.diff())
    return torch.stack([k, rulebook.out_idx.cpu(), rulebook.in_idx.cpu()], dim=1)


def assert_rulebook_invariants(rulebook: Rulebook) -> None:
    """Assert the invariants every rulebook promises (see :mod:`irregconv.rulebook.rulebook`)."""
    ptr, p = rulebook.offset_ptr, rulebook.num_pairs
    assert ptr.dtype == torch.int64 and ptr.device.type == "cpu" and ptr.dim() == 1
    assert int(ptr[0]) == 0 and int(ptr[-1]) == p and bool((ptr.diff() >= 0).all())
    for name in ("in_idx", "out_idx"):
        idx = getattr(rulebook, name)
        assert idx.dtype == torch.int64 and idx.shape == (p,), f"{name}: {idx.dtype} {list(idx.shape)}"
    if p:
        assert 0 <= int(rulebook.in_idx.min()) and int(rulebook.in_idx.max()) < rulebook.num_in
        assert 0 <= int(rulebook.out_idx.min()) and int(rulebook.out_idx.max()) < rulebook.num_out
    triples = rulebook_triples(rulebook)
    key = (triples[:, 0] * rulebook.num_out + triples[:, 1]) * max(rulebook.num_in, 1) + triples[:, 2]
    if rulebook.injective:
        assert bool((key.diff() > 0).all()), "pairs must be sorted by (offset, out, in) without repeats"
        for column in (1, 2):
            per_offset = triples[:, 0] * max(rulebook.num_in, rulebook.num_out) + triples[:, column]
            assert torch.unique(per_offset).numel() == p, "an injective offset repeats a row"
    else:  # a graph may repeat an edge
        assert bool((key.diff() >= 0).all()), "pairs must be sorted by (offset, out, in)"
    if rulebook.identity_offset is not None:
        k = rulebook.identity_offset
        s, e = int(ptr[k]), int(ptr[k + 1])
        rows = torch.arange(rulebook.num_in, device=rulebook.device)
        assert rulebook.num_in == rulebook.num_out
        assert torch.equal(rulebook.in_idx[s:e], rows) and torch.equal(rulebook.out_idx[s:e], rows)
    if rulebook.pair_ids is not None:
        assert torch.equal(rulebook.pair_ids.sort().values, torch.arange(p, device=rulebook.device))


# --------------------------------------------------------------------------------------------- parity


def assert_parity(fn: Callable[..., Tensor], oracle: Callable[..., Tensor], inputs: Sequence[Tensor],
                  rtol: Optional[float] = None, atol: Optional[float] = None,
                  generator: Optional[torch.Generator] = None) -> None:
    """Assert ``fn(*inputs)`` equals ``oracle(*inputs)``, and so do the gradients of a random cotangent with
    respect to every input that requires grad (absent gradients count as zeros).

    Tolerances default to ``torch.testing.assert_close``'s for the dtype.
    """
    def run(f):
        leaves = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
        return leaves, f(*leaves)

    leaves_f, out_f = run(fn)
    leaves_o, out_o = run(oracle)
    torch.testing.assert_close(out_f, out_o, rtol=rtol, atol=atol, msg=lambda m: f"output: {m}")
    wanted = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not wanted:
        return
    cotangent = torch.randn(out_o.shape, dtype=out_o.dtype, generator=generator).to(out_o.device)
    grads = []
    for leaves, out in ((leaves_f, out_f), (leaves_o, out_o)):
        got = torch.autograd.grad(out, [leaves[i] for i in wanted], cotangent, allow_unused=True)
        grads.append([torch.zeros_like(leaves[i]) if g is None else g for i, g in zip(wanted, got)])
    for i, g_f, g_o in zip(wanted, *grads):
        torch.testing.assert_close(g_f, g_o, rtol=rtol, atol=atol, msg=lambda m, i=i: f"grad of input {i}: {m}")


def assert_scaled_close(got: Tensor, expected: Tensor, rtol: float = 1e-4, scaled_atol: float = 1e-4) -> None:
    """``assert_close`` with ``atol = scaled_atol * max |expected|``: whole float32 networks on real scans compared
    with another library (spconv), whose summation orders differ by about 1e-5 of the outputs' scale."""
    torch.testing.assert_close(got, expected, rtol=rtol, atol=scaled_atol * expected.abs().max())


def assert_close_with_grads(out, ref, inputs: Sequence[Tensor], rtol: Optional[float] = None,
                            atol: Optional[float] = None, ref_inputs: Optional[Sequence[Tensor]] = None,
                            ref_allow_unused: bool = False) -> None:
    """Assert the computed ``out`` equals ``ref``, and so do their gradients for a random cotangent.

    ``out`` and ``ref`` are tensors or equally long sequences of tensors (compared item by item); the
    cotangent is ``torch.randn_like`` of each output (drawn from the global generator after the outputs are
    compared). The gradients of ``out`` are taken with respect to every tensor of ``inputs``, those of
    ``ref`` with respect to ``ref_inputs`` (default: the same ``inputs``); ``ref_allow_unused`` lets ``ref``
    leave an input unused (its gradient then counts as zeros). Tolerances default to
    ``torch.testing.assert_close``'s for the dtype.
    """
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    assert len(outs) == len(refs), f"{len(outs)} outputs against {len(refs)} references"
    for i, (got, want) in enumerate(zip(outs, refs)):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m, i=i: f"output {i}: {m}")
    cotangents = [torch.randn_like(o) for o in outs]
    inputs = list(inputs)
    ref_inputs = inputs if ref_inputs is None else list(ref_inputs)
    got_grads = torch.autograd.grad(outs, inputs, cotangents)
    want_grads = torch.autograd.grad(refs, ref_inputs, cotangents, allow_unused=ref_allow_unused,
                                     materialize_grads=ref_allow_unused)
    assert len(got_grads) == len(want_grads), f"{len(got_grads)} gradients against {len(want_grads)}"
    for i, (got, want) in enumerate(zip(got_grads, want_grads)):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m, i=i: f"grad of input {i}: {m}")


@contextlib.contextmanager
def cpu_kernel_paths(path: str):
    """Within the block, every CPU rulebook, hash-table and row-sum call takes ``path``: ``"native"``, ``"numba"``
    or ``"torch"`` (to test one against another on the CPU; see :func:`irregconv._numba.forced_cpu_kernels`). A
    path not available here skips the test, as a missing package (a failure under ``CI=true``)."""
    from irregconv._numba import available_cpu_kernels, forced_cpu_kernels

    if path not in available_cpu_kernels():
        what = "numba" if path == "numba" else "irregconv's native extension (pip install -e . with a C++ compiler)"
        pytest.skip(f"needs package {what}")
    with forced_cpu_kernels(path):
        yield


def torch_rulebook_paths():
    """Within the block, the rulebook builders take their pure-torch paths instead of the native or numba kernels
    (:func:`cpu_kernel_paths` ``("torch")``)."""
    return cpu_kernel_paths("torch")


# ------------------------------------------------------------------------------- rulebooks of every kind

#: The rulebook kinds :func:`random_rulebook` builds; properties that hold for every rulebook are tested over these.
RULEBOOK_KINDS = ("subm", "strided", "inverse", "transposed", "dense", "graph")


def random_rulebook(kind: str, generator: Optional[torch.Generator] = None, num_sites: int = 12,
                    spatial_shape: Sequence[int] = (4, 5, 6), batch_size: int = 2, kernel_size=3) -> Rulebook:
    """A small rulebook of ``kind`` (one of :data:`RULEBOOK_KINDS`) on random sites or a random graph.

    Strided and inverse use stride 2, padding 1; transposed stride 2, padding 1, output_padding 1;
    ``"dense"`` covers the whole ``[batch_size, *spatial_shape]`` grid (stride 2, padding 1); ``"graph"``
    has ``num_sites * batch_size`` nodes, four edges per node and self loops allowed.
    """
    dims = len(spatial_shape)
    ones, twos = (1,) * dims, (2,) * dims
    if kind == "graph":
        n = num_sites * batch_size
        edges = random_graph(n, 4 * n, generator, allow_self_loops=True) if n else torch.zeros(2, 0, dtype=torch.long)
        return build_graph_rulebook(edges, n)
    if kind == "dense":
        return build_dense_rulebook(spatial_shape, batch_size, kernel_size, stride=2, padding=1)
    coords = random_coords(num_sites, spatial_shape, batch_size, generator)
    region = KernelRegion.cube(kernel_size, dims)
    if kind == "subm":
        return build_subm_rulebook(coords, spatial_shape, batch_size, region, ones)
    if kind == "transposed":
        return build_transposed_rulebook(coords, spatial_shape, batch_size, region, twos, ones, ones, ones)[0]
    if kind not in ("strided", "inverse"):
        raise ValueError(f"random_rulebook: kind must be one of {RULEBOOK_KINDS}, got {kind!r}")
    rulebook = build_strided_rulebook(coords, spatial_shape, batch_size, region, twos, ones, ones)[0]
    return rulebook if kind == "strided" else rulebook.transpose()

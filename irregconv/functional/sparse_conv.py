"""Sparse convolution on :class:`~irregconv.SparseTensor`: rulebook from the sites' cache -> engine.

The cache key is the operation's geometry; the cache lives on the input sites, so layers that share
sites and geometry share one rulebook with no user-chosen key. A strided (or transposed) convolution
stores its output sites in the cache entry too, so running it twice on the same sites yields the very
same output sites (and their caches), and records in those output sites the rulebook that leads back,
which the inverse convolution reads.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..engine import gather_scatter
from ..rulebook import (KernelRegion, Rulebook, build_strided_rulebook, build_subm_rulebook,
                        build_transposed_rulebook)
from ..tensor import Sites, SparseTensor

KINDS = ("subm", "strided", "transposed", "inverse")


def subm_rulebook(sites: Sites, region: KernelRegion, dilation: Sequence[int]) -> Rulebook:
    """The (cached) submanifold rulebook of ``sites``."""
    key = ("subm", region.key, tuple(dilation))
    return sites.cache.get_or_build(key, lambda: build_subm_rulebook(
        sites.coords, sites.spatial_shape, sites.batch_size, region, dilation, keys=sites.keys))


def strided_rulebook(sites: Sites, region: KernelRegion, stride: Sequence[int], padding: Sequence[int],
                     dilation: Sequence[int]) -> Tuple[Rulebook, Sites]:
    """The (cached) strided rulebook of ``sites`` and its output sites."""
    key = ("strided", region.key, tuple(stride), tuple(padding), tuple(dilation))

    def build():
        rulebook, coords = build_strided_rulebook(sites.coords, sites.spatial_shape, sites.batch_size, region,
                                                  stride, padding, dilation)
        out = Sites(coords, rulebook.geometry.out_spatial_shape, sites.batch_size)
        out.parents[key] = (sites, rulebook)
        return rulebook, out
    return sites.cache.get_or_build(key, build)


def transposed_rulebook(sites: Sites, region: KernelRegion, stride: Sequence[int], padding: Sequence[int],
                        dilation: Sequence[int], output_padding: Sequence[int]) -> Tuple[Rulebook, Sites]:
    """The (cached) generative transposed rulebook of ``sites`` and its (new) output sites."""
    key = ("transposed", region.key, tuple(stride), tuple(padding), tuple(dilation), tuple(output_padding))

    def build():
        rulebook, coords = build_transposed_rulebook(sites.coords, sites.spatial_shape, sites.batch_size, region,
                                                     stride, padding, dilation, output_padding)
        return rulebook, Sites(coords, rulebook.geometry.out_spatial_shape, sites.batch_size)
    return sites.cache.get_or_build(key, build)


def inverse_rulebook(sites: Sites, region: KernelRegion, stride: Optional[Sequence[int]] = None,
                     padding: Optional[Sequence[int]] = None, dilation: Optional[Sequence[int]] = None,
                     owner: str = "SparseInverseConv") -> Tuple[Rulebook, Sites]:
    """The transpose of the strided rulebook that produced ``sites``, and the sites it came from.

    The strided convolution is found among ``sites.parents`` by kernel region (and by stride, padding
    and dilation when given).

    Raises:
        ValueError: if no strided convolution with that geometry produced these sites, or several did
            and the arguments do not tell which.
    """
    matches = [(key, value) for key, value in sites.parents.items()
               if key[1] == region.key and (stride is None or key[2] == tuple(stride))
               and (padding is None or key[3] == tuple(padding)) and (dilation is None or key[4] == tuple(dilation))]
    if not matches:
        made_by = [f"kernel_size={k[1][1]}, stride={k[2]}, padding={k[3]}, dilation={k[4]}" for k in sites.parents]
        raise ValueError(
            f"{owner}: these sites were not produced by a strided sparse conv with kernel_size={region.kernel_size}"
            + (f" (stride={tuple(stride)})" if stride is not None else "")
            + f"; an inverse conv must follow the strided conv it inverts. The sites were produced by: "
            + (", ".join(made_by) if made_by else "no strided conv (they are input sites)"))
    if len(matches) > 1:
        raise ValueError(f"{owner}: {len(matches)} strided convs with kernel_size={region.kernel_size} produced "
                         f"these sites; pass stride/padding/dilation to say which one to invert")
    parent, rulebook = matches[0][1]
    return rulebook.transpose(), parent


def sparse_conv(input: SparseTensor, weight: Tensor, bias: Optional[Tensor], region: KernelRegion, kind: str,
                stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                output_padding: Optional[Sequence[int]] = None, inverse_of: Optional[dict] = None,
                owner: str = "sparse_conv") -> SparseTensor:
    """Sparse convolution of one of the kinds ``"subm"``, ``"strided"``, ``"transposed"``, ``"inverse"``.

    Args:
        input (SparseTensor): ``feats [N_in, C_in]`` on ``coords [N_in, 1 + D]``.
        weight (Tensor): ``[K, C_in, C_out]`` or grouped ``[K, G, C_in/G, C_out/G]``.
        bias (Tensor, optional): ``[C_out]``.
        inverse_of (dict, optional): for ``"inverse"``, the ``stride`` / ``padding`` / ``dilation`` of the
            strided conv to invert when several produced the input sites (see :func:`inverse_rulebook`).

    Returns:
        SparseTensor: ``[N_out, C_out]``; on the input sites for ``"subm"``, on new sites otherwise.
    """
    if kind == "subm":
        rulebook, sites = subm_rulebook(input.sites, region, dilation), input.sites
    elif kind == "strided":
        rulebook, sites = strided_rulebook(input.sites, region, stride, padding, dilation)
    elif kind == "transposed":
        rulebook, sites = transposed_rulebook(input.sites, region, stride, padding, dilation, output_padding)
    elif kind == "inverse":
        rulebook, sites = inverse_rulebook(input.sites, region, owner=owner, **(inverse_of or {}))
    else:
        raise ValueError(f"sparse_conv: kind must be one of {KINDS}, got {kind!r}")
    return SparseTensor.from_sites(gather_scatter(input.feats, weight, rulebook, None, bias), sites)

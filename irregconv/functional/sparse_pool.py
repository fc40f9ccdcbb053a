"""Sparse pooling: the strided rulebook with an aggregation instead of a weight (engine.aggregate)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..engine import aggregate
from ..rulebook import KernelRegion, build_graph_rulebook
from ..tensor import SparseTensor
from .sparse_conv import strided_rulebook, subm_rulebook


def sparse_pool(input: SparseTensor, region: KernelRegion, stride: Sequence[int], padding: Sequence[int],
                dilation: Sequence[int], reduce: str, subm: bool = False) -> SparseTensor:
    """Max / mean / sum pooling over the active inputs under each kernel window.

    Output sites are those of a strided sparse conv with the same geometry (or the input sites when
    ``subm``). Only active inputs take part: max-pooling of negative features is their maximum (spconv
    starts its accumulator at 0 and returns 0 there), and average pooling divides by the number of
    active inputs, not by the window volume.
    """
    if subm:
        rulebook, sites = subm_rulebook(input.sites, region, dilation), input.sites
    else:
        rulebook, sites = strided_rulebook(input.sites, region, stride, padding, dilation)
    messages = input.feats.index_select(0, rulebook.in_idx)
    return SparseTensor.from_sites(aggregate(messages, rulebook, reduce), sites)


def global_pool(input: SparseTensor, reduce: str) -> torch.Tensor:
    """``[B, C]`` reduction of each batch item's features (items without sites give 0)."""
    batch = input.coords[:, 0].long()
    edges = torch.stack([torch.arange(input.num_sites, device=input.device), batch])
    rulebook = input.sites.cache.get_or_build(
        ("global",), lambda: build_graph_rulebook(edges, input.num_sites, num_out=input.batch_size))
    return aggregate(input.feats.index_select(0, rulebook.in_idx), rulebook, reduce)

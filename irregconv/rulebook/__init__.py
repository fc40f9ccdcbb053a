"""Rulebooks: per kernel offset, which input rows feed which output rows."""
from .cache import RulebookCache
from .dense import build_dense_rulebook
from .graph import build_graph_rulebook, check_edge_index
from .region import KernelRegion
from .rulebook import Geometry, Rulebook
from .strided import build_strided_rulebook, conv_output_shape
from .subm import build_subm_rulebook
from .transposed import build_transposed_rulebook, transposed_output_shape

__all__ = ["Geometry", "KernelRegion", "Rulebook", "RulebookCache", "build_dense_rulebook",
           "build_graph_rulebook", "build_strided_rulebook", "build_subm_rulebook", "build_transposed_rulebook",
           "check_edge_index", "conv_output_shape", "transposed_output_shape"]

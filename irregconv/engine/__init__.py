"""The engine: one gather -> compute -> scatter operator over a rulebook, and scatter reductions."""
from .aggregate import aggregate
from .gather_scatter import gather_scatter
from .reference import gather_scatter_reference
from .. import ops  # noqa: F401  (registers torch.ops.irregconv.*, which traced engine calls go through)

__all__ = ["aggregate", "gather_scatter", "gather_scatter_reference"]

"""Graph convolutions: the rulebook is the edge list (one kernel offset)."""
__all__ = []

"""Dense-grid convolution variants, one file each (the full grid is a rulebook too)."""
# --- part 1: classic variants (issue 4) ---
__all__ = []
# --- part 2: modern variants (issue 5) ---

"""Pictures: bird's-eye views of scans, voxels and boxes; training curves (matplotlib, Agg backend)."""
from .bev import plot_bev, plot_training_curve, plot_training_curves

__all__ = ["plot_bev", "plot_training_curve", "plot_training_curves"]

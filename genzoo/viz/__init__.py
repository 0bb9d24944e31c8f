"""Pictures: sample grids for images, scatter plots for 2-D points, histograms for 1-D."""

from .grids import image_grid, save_grid, save_samples

__all__ = ["image_grid", "save_grid", "save_samples"]

"""Figures, numbers and reports that show before/after geometry."""

from trueshape.reporting._metrics import SphereMeasurement, measure_bright_sphere

__all__ = ["SphereMeasurement", "measure_bright_sphere"]

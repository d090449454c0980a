"""MaskDistill: a unified view of masked image modelling."""

__version__ = "0.1.0"

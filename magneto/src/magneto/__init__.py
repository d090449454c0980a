"""Magneto: a foundation Transformer (Sub-LN + DeepNet-derived init)."""

__version__ = "0.1.0"

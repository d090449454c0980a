"""BEiT-3: Multiway Transformer, masked data modelling on images and texts."""

__version__ = "0.1.0"

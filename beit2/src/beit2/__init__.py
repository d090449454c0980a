"""BEiT v2: masked image modelling with VQ-KD visual tokenizers."""

__version__ = "0.1.0"

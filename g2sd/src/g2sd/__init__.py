"""G2SD: generic-to-specific distillation of masked autoencoders."""

__version__ = "0.1.0"

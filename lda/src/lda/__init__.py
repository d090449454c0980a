"""LDA: long-tailed recognition as domain adaptation."""

__version__ = "0.1.0"

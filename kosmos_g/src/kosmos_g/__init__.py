"""Kosmos-G: image generation in context with multimodal LLMs."""

__version__ = "0.1.0"

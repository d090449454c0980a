"""Kosmos-2: grounding multimodal LLMs to the world."""

__version__ = "0.1.0"

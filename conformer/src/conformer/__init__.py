"""Conformer: concurrent CNN and transformer branches coupled by FCUs."""

__version__ = "0.1.0"

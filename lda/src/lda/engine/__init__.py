"""Losses, the adaptive balance factor and the training loop of LDA and its baselines."""

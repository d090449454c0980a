"""vlcore: the shared core of the vlrepro monorepo.

Only what two or more papers need lives here: transformer layers (attention with
relative position bias, Pre-LN / Post-LN / DeepNorm / Sub-LN blocks with their
initialisations, Multiway experts), masking generators, the training engine,
atomic checkpoints, typed configs, data loaders and the entry-point contract.
vlcore never imports a paper package.
"""

__version__ = "0.1.0"

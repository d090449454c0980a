"""imTED: integrally migrating MAE encoder-decoders into a detector."""

__version__ = "0.1.0"

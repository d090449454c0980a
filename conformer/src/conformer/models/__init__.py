"""Model configurations of conformer, each with the paper's parameter count.

`python -m conformer.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("conformer")

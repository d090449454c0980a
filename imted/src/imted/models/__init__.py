"""Model configurations of imted, each with the paper's parameter count.

`python -m imted.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("imted")

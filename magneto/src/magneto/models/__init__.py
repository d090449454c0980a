"""Model configurations of magneto, each with the paper's parameter count.

`python -m magneto.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("magneto")

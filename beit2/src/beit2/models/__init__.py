"""Model configurations of beit2, each with the paper's parameter count.

`python -m beit2.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("beit2")

"""Model configurations of beit3, each with the paper's parameter count.

`python -m beit3.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("beit3")

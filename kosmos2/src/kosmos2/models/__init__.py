"""Model configurations of kosmos2, each with the paper's parameter count.

`python -m kosmos2.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("kosmos2")

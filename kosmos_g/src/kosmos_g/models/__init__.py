"""Model configurations of kosmos_g, each with the paper's parameter count.

`python -m kosmos_g.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("kosmos_g")

"""Model configurations of maskdistill, each with the paper's parameter count.

`python -m maskdistill.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("maskdistill")

"""Model configurations of g2sd, each with the paper's parameter count.

`python -m g2sd.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("g2sd")

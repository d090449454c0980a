"""Model configurations of lda, each with the paper's parameter count.

`python -m lda.models [--json]` lists them.
"""

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("lda")

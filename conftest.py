"""Session-wide test settings, read before any test module imports torch or triton.

Triton decides at import time whether its jitted functions (its own `tl.*` helpers included) run in
the CPU interpreter, and timm / torch import triton long before `common/tests/test_kernels.py` is
collected; so the interpreter is chosen here, for the whole session. On a GPU machine run the
kernel tests natively with `TRITON_INTERPRET=0`.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

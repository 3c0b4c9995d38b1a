"""The user's neural-network functions: those of the IR builder (``ir/build_nn.py``)."""
from ..ir.build_nn import *  # noqa: F401,F403
from ..ir.build_nn import pair  # noqa: F401

"""Where ``pip install`` puts what it builds (the C runtime library,
``setup.py``): ``symfuse/_build`` inside the package, listed in the wheel's
RECORD so that ``pip uninstall`` removes it. The run time only reads it; what
it builds goes into the compile cache (``runtime/``, ``jinja/``)."""
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# $SYMFUSE_BUILD_DIR moves it (an installation on a read-only or shared disk; tests)
BUILD_DIR = os.path.abspath(os.environ.get("SYMFUSE_BUILD_DIR") or os.path.join(PACKAGE_DIR, "_build"))
TEMPLATE_DIR = os.path.join(PACKAGE_DIR, "templates")
C_TEMPLATE_DIR = os.path.join(TEMPLATE_DIR, "c")
CUDA_TEMPLATE_DIR = os.path.join(TEMPLATE_DIR, "cuda")

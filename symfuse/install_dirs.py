"""Where the installation keeps what it builds once (the C and CUDA runtime
libraries, Jinja's compiled templates): ``symfuse/_build`` inside the package.
It belongs to the installation, so emptying the compile cache does not rebuild
it; a read-only installation falls back to the compile cache's ``runtime/``."""
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# $SYMFUSE_BUILD_DIR moves it (an installation on a read-only or shared disk; tests)
BUILD_DIR = os.path.abspath(os.environ.get("SYMFUSE_BUILD_DIR") or os.path.join(PACKAGE_DIR, "_build"))
TEMPLATE_DIR = os.path.join(PACKAGE_DIR, "templates")
C_TEMPLATE_DIR = os.path.join(TEMPLATE_DIR, "c")
CUDA_TEMPLATE_DIR = os.path.join(TEMPLATE_DIR, "cuda")

"""Builds symfuse's C runtime library into the package while installing, so that the
first compile after ``pip install`` does not wait for it. Everything else is in
pyproject.toml. The build never fails the install: without a C compiler or OpenBLAS
the library is built on first use instead. SYMFUSE_NO_PREBUILD=1 skips it."""
import importlib.util
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _recipe():
    # by path: pip's build environment has none of symfuse's dependencies, so the package is not imported
    spec = importlib.util.spec_from_file_location("_symfuse_rt_recipe", os.path.join(HERE, "symfuse", "runtime", "rt_recipe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _templates():
    spec = importlib.util.spec_from_file_location("_symfuse_templates_cache",
                                                  os.path.join(HERE, "symfuse", "codegen", "templates_cache.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blas_dir():
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "lib")


class BuildWithRuntimeLibrary(build_py):
    def run(self):
        super().run()
        if os.environ.get("SYMFUSE_NO_PREBUILD"):
            return
        blas = _blas_dir()
        if blas is None:
            print("symfuse: scipy-openblas32 missing from the build environment; "
                  "the C runtime library will be built on first use")
            return
        # an editable install runs from the source tree: build where it will be looked for
        package = os.path.join(HERE if self.editable_mode else self.build_lib, "symfuse")
        print("symfuse: building the C runtime library (once per installation, ~5-10 s)")
        recipe = _recipe()
        path = recipe.prebuild(package, blas)
        if path:
            print(f"symfuse: built {os.path.relpath(path, package)}")
            found = recipe.find_compiler()
            unit = recipe.prebuild_prelude(path, found[0]) if found else None
            if unit:
                print(f"symfuse: precompiled {os.path.relpath(unit, package)}")
        try:       # Jinja's compiled templates: what a cold compile would otherwise compile first
            n = _templates().precompile(os.path.join(package, "templates"), os.path.join(package, "_build", "jinja"))
            print(f"symfuse: compiled {n} templates")
        except ImportError:
            print("symfuse: jinja2 missing from the build environment; templates compile on first use")


setup(cmdclass={"build_py": BuildWithRuntimeLibrary})

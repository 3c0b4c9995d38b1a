"""Sphinx configuration of symfuse's API reference, generated from the docstrings:
``sphinx-build -W -b html docs/api build/api`` (``tests/test_docs_build.py`` runs it
with warnings as errors)."""
import importlib
import inspect
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

project = "symfuse"
author = "symfuse contributors"
copyright = "2026, symfuse contributors"
extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"          # the signatures show the defaults; types are in the docstrings
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []

# the public namespace: each package's own names, then its public submodules whole
PACKAGES = {
    "symfuse": ["symfuse.frontend.random"],
    "symfuse.nn": ["symfuse.nn.data", "symfuse.nn.losses", "symfuse.nn.init", "symfuse.nn.optim",
                   "symfuse.nn.train", "symfuse.nn.zoo", "symfuse.nn.finetune"],
    "symfuse.distributed": [],
    "symfuse.onnx": [],
}


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return [n for n in names if not inspect.ismodule(getattr(module, n, None))]


def package_rst(name: str, submodules: list[str]) -> str:
    """reST documenting package ``name``: its docstring, each public name, its submodules."""
    module = importlib.import_module(name)
    lines = [name, "=" * len(name), "", f".. automodule:: {name}", ""]
    for n in public_names(module):
        obj = getattr(module, n)
        if inspect.isclass(obj):
            lines += [f".. autoclass:: {name}.{n}", "   :members:", ""]
        elif callable(obj):
            lines += [f".. autofunction:: {name}.{n}", ""]
        else:
            lines += [f".. py:data:: {name}.{n}", f"   :value: {obj!r}", ""]
    for sub in submodules:
        lines += [sub, "-" * len(sub), "", f".. automodule:: {sub}", "   :members:", ""]
    return "\n".join(lines)


def _expand(app, docname, source):
    # a page per package, written from the live namespace so that a new public name is never missing
    if docname in PACKAGES:
        source[0] = package_rst(docname, PACKAGES[docname])


def setup(app):
    app.connect("source-read", _expand)

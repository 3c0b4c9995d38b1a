"""The R wrapper of an export (``sf.export(..., r=True)``, docs/export.md "R"):
``<name>.R`` (``templates/c/export_r.R.j2``) and the ``.C`` glue
``lib<name>_r.so`` built from ``<name>_r.c`` (``templates/c/export_r_glue.c.j2``).

The glue uses R's ``.C`` interface, whose arguments are plain C pointers, so it
is compiled here with the export's compiler and no R headers: the machine that
runs R needs no compiler and no R development files, and an export works in any
R version. Its run path is ``$ORIGIN``, like every object in the directory.

User strings reach R code only as R string literals whose characters outside a
small safe set are ``\\u{...}`` escapes (see ``r_string``), and comments only
through ``api.comment_safe``; the export's name is already a C identifier.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile

from ...install_dirs import C_TEMPLATE_DIR
from .api import comment_safe
from .build import ORIGIN

_SAFE_R = re.compile(r"[A-Za-z0-9 _.:/-]")


def files(name: str) -> dict:
    """The R files of export ``name``, by role."""
    return {"r_script": f"{name}.R", "r_library": f"lib{name}_r.so", "r_source": f"{name}_r.c"}


def r_string(text: str) -> str:
    """``text`` as an R string literal. R strings cannot hold NUL: the name ends
    there, as it does in the C API's tables (a C string literal stops at it too)."""
    out = []
    for ch in text.split("\0", 1)[0]:
        if _SAFE_R.match(ch):
            out.append(ch)
        else:
            cp = ord(ch)
            out.append(f"\\u{{{cp:04x}}}" if cp <= 0xFFFF else f"\\U{{{cp:08x}}}")
    return '"' + "".join(out) + '"'


def _shape(shape) -> str:
    return "c(" + ", ".join(f"{int(d)}L" for d in shape) + ")" if shape else "integer(0)"


def _described(shape) -> str:
    """The R value a tensor of ``shape`` is, as .symfuse_expect in the R file says it."""
    if not shape:
        return "a single number"
    if len(shape) == 1:
        return f"a vector of length {shape[0]}"
    return ("a matrix" if len(shape) == 2 else "an array") + " of dim c(" + ", ".join(map(str, shape)) + ")"


def _rows(tensors) -> list[dict]:
    return [{"r_name": r_string(t.name), "r_arg": comment_safe(t.name), "comment": comment_safe(t.name),
             "dtype": t.dtype, "shape_r": _shape(t.shape), "described": _described(t.shape)} for t in tensors]


def render(name: str, version: str, inputs, outputs, params, update_names) -> tuple[str, str]:
    """(R script, glue C source) of the export."""
    from ...codegen.templates_cache import template
    updates = [r_string(n) for n in update_names]
    ctx = dict(name=name, version=version, inputs=_rows(inputs), outputs=_rows(outputs), params=_rows(params),
               updates=updates, updates_r=f"c({', '.join(updates)})" if updates else "character(0)")
    return (template(C_TEMPLATE_DIR, "export_r.R.j2").render(**ctx),
            template(C_TEMPLATE_DIR, "export_r_glue.c.j2").render(**ctx))


def build_glue(out_dir: str, name: str, source: str, header: str, cc: str) -> None:
    """``lib<name>_r.so`` from the glue source, linked to ``lib<name>.so`` (already
    in ``out_dir``) by its file name and found through ``$ORIGIN``."""
    from ..shared_object import Recipe, compile_in
    out_path = os.path.join(out_dir, files(name)["r_library"])
    flags = ("-O2", "-std=gnu11", "-Wall", "-fPIC", "-shared", "-I", ".",
             f"-L{os.path.abspath(out_dir)}", f"-l:lib{name}.so", ORIGIN, "-lm")
    recipe = Recipe(cc, ((f"{name}_r.c", source), (f"{name}.h", header)), flags, output="lib_r.so",
                    what=f"building lib{name}_r.so")
    with tempfile.TemporaryDirectory(prefix="symfuse-export-r-") as work:
        tmp = out_path + ".tmp"
        shutil.copyfile(compile_in(recipe, work), tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, out_path)       # an R session that loaded the old glue keeps its mapping intact

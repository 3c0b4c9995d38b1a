"""The package's import graph is a DAG that reads as the pipeline: ir at the
bottom, then the user API, compiler, codegen, runtime (backends, caches,
executors), the nn library and the CLI on top. Module-level and function-level
imports both count: a lazy import may keep a heavy module off a warm compile,
never hide a circle."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx

PKG = Path(__file__).resolve().parent.parent / "symfuse"
# layer of each top-level part of the package: a module imports only from its own layer or below
LAYER = {"errors": 0, "install_dirs": 0, "ir": 1, "frontend": 2, "compiler": 3, "codegen": 4, "runtime": 5,
         "nn": 6, "onnx": 6, "distributed": 6, "cli": 7, "__init__": 8, "__main__": 8}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imports(mods) -> nx.DiGraph:
    g = nx.DiGraph()
    for name, path in mods.items():
        g.add_node(name)
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                # a package's own __init__ re-exports are not dependencies of meaning
                if t and t != name and not name.startswith(t + "."):
                    g.add_edge(name, t)
    return g


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER["__init__"] if len(parts) == 1 else LAYER[parts[1]]


def test_no_import_circles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(_imports(_modules())) if len(c) > 1]
    assert not cycles, f"import circles: {cycles}"


def test_imports_only_go_down_the_layers():
    g = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, b in g.edges if _layer(b) > _layer(a))
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_every_module_has_a_layer():
    for m in _modules():
        _layer(m)


def test_import_symfuse_loads_no_compile_path():
    """``import symfuse`` and a warm compile need no code generator, Jinja, networkx
    or pass; they are imported by a compile that misses the graph cache."""
    code = ("import sys, symfuse; heavy = [m for m in sys.modules if m.startswith(('symfuse.codegen', "
            "'symfuse.compiler.passes', 'symfuse.compiler.fusion', 'symfuse.compiler.pipeline', 'jinja2', "
            "'networkx'))]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(PKG.parent)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout

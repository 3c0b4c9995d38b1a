"""The cpu target's program: every kernel group of a partition rendered into one
C translation unit with one entry point, ``sf_entry(args, arena, dims)``, running the
schedule; and the same module split into several units of balanced estimated
compile cost for a parallel build. Renders only: compiling and loading are the
backend's (``runtime/cpu.py``)."""
from __future__ import annotations

from ..install_dirs import C_TEMPLATE_DIR
from ..compiler.fusion import materialised
from .c_collective import PENDING
from .c_control import CONTROL, render_region
from .kernel import c_literal, c_type
from .lower import lower_partition
from .render_c import CRenderer
from .templates_cache import template

# A parallel build (one compiler process per unit, then a link) pays a process
# start, the headers and a share of the link (~30 ms) per unit; gcc -O2 spends
# ~16 ms per 1000 characters of kernel source (LeNet-5 training step: 27 000
# characters, 0.43 s in one unit). A module is split when each unit gets at
# least UNIT_MIN_CHARS (~130 ms of compiling).
UNIT_MIN_CHARS = 8_000
ENTRY_CHARS = 4_000         # what sf_entry and its declarations weigh in that measure


# gcc's time per kernel is not just its length: each loop nest is vectorised on its
# own, and an inlined tanh/exp/log (kernel.h) expands into a vectorised polynomial.
# LeNet-5's units, measured: a pointwise kernel of ~2 000 characters takes 40-70 ms
# with a tanh, 20-40 ms without; the chars model alone left the units 0.20 / 0.28 s.
LOOP_NEST_CHARS = 1_500
INLINE_MATH_CHARS = 1_500
_INLINE_MATH = ("sf_tanh(", "sf_exp(", "sf_log(")


def compile_cost(k) -> int:
    """gcc work of a kernel, in characters of plain source."""
    src = k.source
    return (len(src) + LOOP_NEST_CHARS * src.count("_range(int64_t lo")
            + INLINE_MATH_CHARS * sum(src.count(f) for f in _INLINE_MATH))


def split_units(kernels, workers: int) -> list[list]:
    """Kernels in balanced units by estimated compile cost (largest first onto the least loaded)."""
    sizes = [compile_cost(k) for k in kernels]
    n = max(1, min(workers, len(kernels), sum(sizes) // UNIT_MIN_CHARS))
    if n == 1:
        return [list(kernels)]
    load, unit = [ENTRY_CHARS] + [0] * (n - 1), {}     # unit 0 also holds sf_entry and the constants
    for i in sorted(range(len(kernels)), key=lambda i: -sizes[i]):
        u = min(range(n), key=load.__getitem__)
        load[u] += sizes[i]
        unit[i] = u
    return [[k for i, k in enumerate(kernels) if unit[i] == u] for u in range(n)]


class _Module:
    """What the schedules of one module share: the renderer, the constants (each
    read-only buffer once), and the functions of its region bodies."""

    def __init__(self):
        self.renderer = CRenderer()
        self.constants: list[dict] = []
        self.const_names: dict[int, str] = {}
        self.regions = 0
        self.signatures: dict[str, str] = {}     # kernel name -> its parameter list

    def constant(self, v) -> str:
        name = self.const_names.get(id(v))
        if name is None:
            name = self.const_names[id(v)] = f"c{len(self.constants)}"
            self.constants.append({"name": name, "ctype": c_type(v.dtype), "size": max(v.type.size, 1),
                                   "data": constant_data(v.op.attrs["value"], v.dtype) or "0"})
        return name


def _schedule(mod: _Module, fn, part, lay, loops, prefix: str = "") -> tuple[list, list[str]]:
    """(kernels, calls) of one function's schedule, its parameters ``args[k]``, its
    results ``args[len(params) + k]``, its intermediates in ``arena``."""
    nparams = len(fn.params)

    def ptr(v, const: bool) -> str:
        ct = c_type(v.dtype)
        kind = lay.where.get(id(v))
        if kind is None:  # a constant read as a buffer
            return f"(const {ct}*){mod.constant(v)}"
        q = "const " if const else ""
        if kind[0] == "param":
            return f"({q}{ct}*)args[{kind[1]}]"
        if kind[0] == "result":
            return f"({q}{ct}*)args[{nparams + kind[1]}]"
        return f"({q}{ct}*)(arena + {kind[1]})"

    kernels, calls, reads, pending = [], [], [], []
    renderer = mod.renderer
    for g, lk in zip(part.groups, lower_partition(part, renderer, prefix)):
        if lk is None:
            k, call = _control(mod, g, part, lay, loops[g.index], ptr)
            reads.append({id(materialised(v, part.folded_views)) for v in g.root.inputs})
        else:
            aliased = any(id(v) in lay.aliased for v in lk.outputs)
            k = renderer.render(lk.kernel, aliased)
            mod.signatures[k.name] = renderer.signature(lk.kernel, aliased)
            args = [ptr(v, True) for v in lk.inputs] + [ptr(v, False) for v in lk.outputs]
            call = f"{k.name}({', '.join(args)});"
            reads.append({id(v) for v in lk.inputs})
            library = lk.kernel.library
            if library is not None and library.wait:
                pending.append((len(calls), {id(v) for v in lk.outputs},
                                library.wait.replace(PENDING, k.name + "_pending")))
        kernels.append(k)
        calls.append(call)
    return kernels, _with_waits(calls, reads, pending)


def _with_waits(calls, reads, pending) -> list[str]:
    """``calls`` with each started collective's wait put before the first call that
    reads its result (after the last call when only the caller does). A wait joins
    that call's statement, so that calls stay one per kernel (profile=True counts
    the wait in the kernel it held up)."""
    out = list(calls)
    for start, outputs, wait in pending:
        first = next((i for i in range(start + 1, len(calls)) if reads[i] & outputs), None)
        if first is None:
            out[-1] = out[-1] + " " + wait
        else:
            out[first] = wait + " " + out[first]
    return out


def _control(mod: _Module, group, part, lay, lp, ptr):
    """A loop or branch: its regions as functions of the module (their kernels
    first), and the block of the enclosing schedule that runs them."""
    op = group.root
    names, sources, parts = [], [], []
    for body in lp.bodies:
        name = f"sf_region{mod.regions}"
        mod.regions += 1
        kernels, calls = _schedule(mod, body.fn, body.part, body.lay, body.loops, prefix=f"R{name[9:]}_")
        sources += [k.source for k in kernels]
        sources.append(render_region(name, f"{lp.label}, region {len(names)}", calls))
        names.append(name)
        parts += kernels
    resolve = lambda v: materialised(v, part.folded_views)  # noqa: E731
    ins = [ptr(resolve(v), True) for v in op.inputs]
    outs = [ptr(v, False) for v in op.outputs]
    call = CONTROL[op.opdef.name](lp, ins, outs, f"(arena + {lay.scratch.get(group.index, 0)})", names)
    info = lp.info(f"L{mod.regions - len(names)}_{op.opdef.name}", parts)
    info.source = "\n".join(sources)
    return info, call


def render_program(fn, part, lay, version: str, runtime_header="sf_unit_inline.h", profile=False, workers=1,
                   loops=None, dims=()):
    """(the module as one translation unit, its kernels (``KernelInfo``; a loop's
    body kernels are its ``parts``), and the same module as several units for a
    parallel build, or None when one unit is best). ``loops``: the plans of the
    control groups (``compiler/loops.py``), by group index. ``dims``: the names of
    the run-time sizes, in the order of ``sf_entry``'s ``dims`` argument."""
    mod = _Module()
    kernels, calls = _schedule(mod, fn, part, lay, loops or {})
    constants = mod.constants
    source = render_module(fn.name, version, kernels, calls, constants, lay.plan.arena_bytes, runtime_header, profile,
                           dims=dims)
    # a loop's region functions are static: they stay in the unit of the entry that calls them
    # ... and so do the collectives: their communicator and pending requests are the entry's
    pinned = [k for k in kernels if k.kind in CONTROL or k.kind == "collective"]
    groups = split_units([k for k in kernels if k.kind not in CONTROL and k.kind != "collective"], workers)
    if len(groups) == 1:
        return source, kernels, None
    groups[0] = pinned + groups[0]
    signatures = mod.signatures
    # the entry and constants go with the first (least loaded) unit's kernels
    mine = {id(k) for k in groups[0]}
    entry = render_module(fn.name, version, groups[0], calls, constants, lay.plan.arena_bytes, runtime_header,
                          profile, extern_kernels=[(k.name, signatures[k.name]) for k in kernels if id(k) not in mine],
                          dims=dims)
    return source, kernels, [entry] + [render_unit(fn.name, version, g, runtime_header, dims) for g in groups[1:]]


def render_module(name, version, kernels, calls, constants, arena_bytes, runtime_header="sf_unit_inline.h",
                  profile=False, extern_kernels=(), dims=()) -> str:
    """``runtime_header``: the one header the unit includes first (so that it
    can be precompiled): "sf_unit_inline.h" compiles the runtime library into
    the unit; "sf_unit.h" (``c_runtime.unit_prelude``) declares the prebuilt one.
    ``extern_kernels``: (name, signature) of the kernels defined in other units
    (``render_unit``), declared here."""
    return _template("module.c.j2").render(name=name, version=version, kernels=kernels, calls=calls,
                                           constants=constants, arena_bytes=arena_bytes,
                                           runtime_header=runtime_header, profile=profile,
                                           extern_kernels=list(extern_kernels), dims=list(dims))


def render_unit(name, version, kernels, runtime_header, dims=()) -> str:
    """Kernels of a parallel build: defined with hidden visibility for the entry unit to call."""
    return _template("unit.c.j2").render(name=name, version=version, kernels=kernels, runtime_header=runtime_header,
                                         dims=list(dims))


def constant_data(arr, dtype) -> str:
    """The elements of a constant array as a C initialiser list."""
    flat = arr.reshape(-1)
    return ", ".join(c_literal(x, dtype) for x in flat.tolist())


def _template(name: str):
    return template(C_TEMPLATE_DIR, name)

"""The cpu target's program: every kernel group of a partition rendered into one
C translation unit with one entry point, ``sf_entry(args, arena)``, running the
schedule; and the same module split into several units of balanced estimated
compile cost for a parallel build. Renders only: compiling and loading are the
backend's (``runtime/cpu.py``)."""
from __future__ import annotations

from ..compiler.layout import materialised
from . import c_module
from .c_library import LIBRARY

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



def render_program(fn, part, lay, version: str, runtime_header="sf_unit_inline.h", profile=False, workers=1):
    """(the module as one translation unit, its kernels, and the same module as
    several units for a parallel build, or None when one unit is best)."""
    kernels, calls, constants, const_names = [], [], [], {}
    nparams = len(fn.params)
    names: dict[str, int] = {}

    def ptr(v, const: bool) -> str:
        ct = c_module.c_type(v.dtype)
        kind = lay.where.get(id(v))
        if kind is None:  # a constant read as a buffer
            name = const_names.get(id(v))
            if name is None:
                name = const_names[id(v)] = f"c{len(constants)}"
                constants.append({"name": name, "ctype": ct, "size": max(v.type.size, 1),
                                  "data": c_module.constant_data(v.op.attrs["value"], v.dtype) or "0"})
            return f"(const {ct}*){name}"
        q = "const " if const else ""
        if kind[0] == "param":
            return f"({q}{ct}*)args[{kind[1]}]"
        if kind[0] == "result":
            return f"({q}{ct}*)args[{nparams + kind[1]}]"
        return f"({q}{ct}*)(arena + {kind[1]})"

    for g in part.groups:
        spec = c_module.build_kernel(g, part, lambda v: materialised(v, part.folded_views), LIBRARY)
        n = names.get(spec.name, 0)
        names[spec.name] = n + 1
        if n:
            spec.name = f"{spec.name}_{n}"
        spec.aliased = any(id(v) in lay.aliased for v in spec.outputs)
        c_module.render_kernel(spec)
        kernels.append(spec)
        args = [ptr(v, True) for v in spec.inputs] + [ptr(v, False) for v in spec.outputs]
        calls.append(f"{spec.name}({', '.join(args)});")
    source = c_module.render_module(fn.name, version, kernels, calls, constants, lay.plan.arena_bytes,
                                    runtime_header, profile)
    groups = split_units(kernels, workers)
    if len(groups) == 1:
        return source, kernels, None
    # the entry and constants go with the first (least loaded) unit's kernels
    mine = {id(k) for k in groups[0]}
    entry = c_module.render_module(fn.name, version, groups[0], calls, constants, lay.plan.arena_bytes,
                                   runtime_header, profile, extern_kernels=[k for k in kernels if id(k) not in mine])
    return source, kernels, [entry] + [c_module.render_unit(fn.name, version, g, runtime_header) for g in groups[1:]]

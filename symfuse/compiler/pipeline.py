"""The pass pipeline: verify -> simplify+stabilise -> differentiate ->
simplify+stabilise -> DCE, each stage timed into the CompileReport; then, for a
compiled target, its lowering passes (``lower``).

Stabilisation runs *before* differentiation as well as after: the gradient of
``log_softmax`` is stable, the gradient of ``log(softmax)`` is not, so the
forward graph is put into its stable form before its VJPs are emitted.
"""
from __future__ import annotations

import gc
from collections import Counter

from ..ir.core import Function
from ..ir.verify import verify
from .autodiff import differentiate
from .passes import REWRITES, RewriteContext
from .passes.basic import cse, dce, fold_constants
from .passes.control import simplify_control
from .passes.lowering import LOWERINGS
from .passes.rewrite import apply_rewrites
from .options import Options  # noqa: F401  (part of the pipeline's interface)
from .report import CompileReport
from .walk import through_regions

MAX_ITERATIONS = 16
_FOLD, _CSE, _CONTROL, _REWRITE = (through_regions(p) for p in (fold_constants, cse, simplify_control,
                                                                 apply_rewrites))


def _fixpoint(fn: Function, opts: Options, report: CompileReport, label: str) -> Function:
    tags = ["simplify", "stabilise"] + (["fast_math"] if opts.fast_math else [])
    table = REWRITES.table(include=tags)
    if opts.disabled:
        table = {k: [r for r in v if r.name not in opts.disabled] for k, v in table.items()}
    # each pass also runs inside loop and branch bodies (regions are closed functions)
    passes = [("rewrite", None), ("fold", _FOLD), ("cse", _CSE)]
    if any(op.regions for op in fn.ops):
        passes.append(("control", _CONTROL))
    passes = [(n, p) for n, p in passes if n not in opts.disabled]
    ctx = RewriteContext()
    for it in range(MAX_ITERATIONS):
        progress = False
        for name, p in passes:
            counts: Counter = Counter()
            with report.stage(f"{label}.{name}", ops_before=len(fn.ops)) as st:
                fn = _REWRITE(fn, table, ctx, counts) if p is None else p(fn, counts)
                st.ops_after = len(fn.ops)
                st.rewrites = dict(counts)
            progress |= bool(counts)
        if not progress:
            break
    return fn


def optimize(fn: Function, opts: Options | None = None, report: CompileReport | None = None) -> Function:
    # The cyclic GC rescans every live IR object on each gen-2 collection, which
    # makes large compiles super-linear; the IR holds no reference cycles that
    # need collecting during a compile, so pause it.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _optimize(fn, opts, report)
    finally:
        if enabled:
            gc.enable()


def _optimize(fn: Function, opts: Options | None, report: CompileReport | None) -> Function:
    opts = opts or Options()
    report = report or CompileReport(fn.name)
    if opts.verify:
        with report.stage("verify", ops_before=len(fn.ops), ops_after=len(fn.ops)):
            verify(fn, types=False)
    if opts.optimize:
        fn = _fixpoint(fn, opts, report, "pre")
    with report.stage("differentiate", ops_before=len(fn.ops)) as st:
        stats: dict = {}
        before = fn
        fn = differentiate(fn, stats)
        st.ops_after = len(fn.ops)
        st.rewrites = stats if stats.get("grad_ops_expanded") else {}
    if opts.optimize:
        if fn is not before:  # no grad ops: the pre-differentiation fixpoint still holds
            fn = _fixpoint(fn, opts, report, "post")
        counts: Counter = Counter()
        with report.stage("dce", ops_before=len(fn.ops)) as st:
            fn = dce(fn, counts)
            st.ops_after = len(fn.ops)
            st.rewrites = dict(counts)
    if opts.verify:
        with report.stage("verify", ops_before=len(fn.ops), ops_after=len(fn.ops)):
            verify(fn, types=False)
    return fn


def lower(fn: Function, tags, report: CompileReport) -> Function:
    """``fn`` through the target's lowering passes: those of the lowering database
    (``passes/lowering.py``) carrying one of ``tags``, in order of position, each
    a report stage named after the pass; each also runs inside region bodies."""
    for p in LOWERINGS.query(tags):
        counts: Counter = Counter()
        with report.stage(p.name, ops_before=len(fn.ops)) as st:
            fn = through_regions(p.fn)(fn, counts)
            st.ops_after, st.rewrites = len(fn.ops), dict(counts)
    return fn

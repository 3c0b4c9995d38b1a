"""``sf.function``: build an SSA Function from the user's graph, optimise it,
hand it to a backend, and wrap the result in a callable Executable."""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import threading
import time
from typing import Sequence

import numpy as np

from ..compiler.options import Options
from ..errors import DeviceUnavailable, DTypeError, InputError, ShapeError
from ..frontend.api import SharedVariable, as_tensor
from ..ir.core import Function, Value, format_loc, is_builtin, opdef_fingerprint, user_location
from ..ir.printer import print_function
from ..ir.symdim import RuntimeSizes, SymInt, check_constants, names_of
from ..ir.types import cast_exactly
from .device_values import DeviceValue, host

# the IR's symbol syntax (``func @name``): a name also appears in generated C and CUDA comments
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}\Z")
log = logging.getLogger("symfuse")


def function(inputs: Sequence[Value], outputs=None, updates=None, device: str | None = None,
             name: str = "main", optimize_graph: bool = True, fast_math: bool = False,
             max_batch: int | None = None, specialize: Sequence[int] | None = None, **options):
    """Compile ``inputs -> outputs`` (plus shared-variable ``updates``) into a callable.

    Updates are ``(shared, expression)`` pairs or a dict; all expressions see the
    values from before the call, and are written after the outputs are computed.

    An input may have run-time sizes (``sf.tensor("x", ("batch", 784))``): the
    function is compiled once and each call takes the size from its arguments (the
    arena grows with it; ``max_batch`` caps it, and plans the arena for that size
    where the buffers' sizes are not affine in it). ``specialize``: sizes that also
    get a build with the size literal, used when a call has it."""
    where = format_loc(user_location())
    at = f" (at {where})" if where else ""
    if not isinstance(name, str) or not FUNCTION_NAME.match(name):
        raise InputError(f"function: name {name!r} is not a function name: letters, digits, '_' and '.', "
                         f"starting with a letter or '_', at most 128 characters{at}")
    # the compile machinery (report, backends, toolchain, cache) is imported by the first
    # compile, not by `import symfuse`: later calls find the modules loaded
    t0 = time.perf_counter()
    from ..compiler.report import CompileReport
    from . import plain
    from .backends import get_backend
    report = CompileReport(name)
    report.t0 = t0                  # the compile began before its report could be made
    report.add_if_slow("import runtime", t0, "once per process: the backends, the cache, the report")
    with report.stage("build graph") as st:
        try:
            inputs = list(inputs) if not isinstance(inputs, Value) else [inputs]
        except TypeError:
            raise InputError(f"function: inputs must be a list of symbolic tensors, got "
                             f"{type(inputs).__name__}{at}") from None
        seen_inputs: set[int] = set()
        for i, v in enumerate(inputs):
            if not isinstance(v, Value) or v.op is not None or isinstance(v, SharedVariable):
                raise InputError(f"function: input {i} must be a symbolic tensor made by sf.tensor, "
                                 f"got {v!r}{at}")
            if id(v) in seen_inputs:
                raise InputError(f"function: input {i} ({v.name}) is listed twice{at}")
            seen_inputs.add(id(v))
        single = outputs is not None and not isinstance(outputs, (list, tuple))
        outs = [] if outputs is None else ([outputs] if single else list(outputs))
        outs = [as_tensor(o) for o in outs]
        ups = _normalize_updates(updates, at)
        params, shared = _collect_params(inputs, outs + [e for _, e in ups], at)
        # default updates (e.g. random stream counters) of shared variables in use
        updated = {id(s) for s, _ in ups}
        for s in shared:
            if s.default_update is not None and id(s) not in updated:
                ups.append((s, s.default_update))
        if len(ups) > len({id(s) for s, _ in ups}):
            pass
        params, shared = _collect_params(inputs, outs + [e for _, e in ups], at)
        fn = Function(params, outs + [e for _, e in ups], name)
        st.ops_before = st.ops_after = len(fn.ops)
    with report.stage("select backend"):
        try:
            backend = get_backend(device)
        except DeviceUnavailable as e:
            raise DeviceUnavailable(f"function: {e}{at}") from None
        unknown = sorted(set(options) - set(backend.options))
        if unknown:
            import difflib  # lazy: only an error needs it
            hint = difflib.get_close_matches(unknown[0], sorted(backend.options), n=1)
            raise InputError(f"function: unknown option {unknown[0]!r} for device {backend.name!r}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else "")
                             + f"; its options: {', '.join(sorted(backend.options)) or 'none'}{at}")
        for key, value in options.items():
            want = backend.options[key]
            if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
                raise InputError(f"function: option {key}={value!r} for device {backend.name!r} must be a "
                                 f"{want.__name__}, got {type(value).__name__}{at}")
        opts = Options(optimize=optimize_graph, fast_math=fast_math, extra=options)
        sizes = _runtime_sizes(fn, inputs, backend, max_batch, specialize, at)
    run, optimized, gkey = None, None, None
    backend.prepare(report)
    if backend.graph_cache and (sizes is None or backend.sized_graph_cache):
        with report.stage("graph cache") as st:
            gkey = _graph_key(fn, backend, opts, options, sizes)
            run, optimized = _graph_cache_load(backend, gkey, report, fn, sizes)
            st.note = "hit: passes, fusion and codegen skipped" if run is not None else "miss"
            report.info["graph_cache"] = "hit" if run is not None else "miss"
    if run is None:
        t0 = time.perf_counter()
        from ..compiler.pipeline import optimize   # the passes: only a graph-cache miss runs them
        report.add_if_slow("import passes", t0, "once per process")
        optimized = optimize(fn, opts, report)
        if sizes is not None:
            check_constants(optimized, sizes.names)
        run = backend.compile(optimized, options, report) if sizes is None else \
            backend.compile(optimized, options, report, sizes)
        if gkey is not None:
            with report.stage("graph cache store"):
                entry = backend.export(run, report)
                entry["ir"] = print_function(optimized, locations=True)
                entry["locs"] = [op.loc for op in fn.ops]
                backend.cache.put("graph", gkey, plain.dumps(entry))
    with report.stage("wrap"):
        exe = Executable(inputs, shared, outs, ups, single, fn, optimized, run, report, backend.name, sizes)
    report.finish()
    return exe


def _runtime_sizes(fn, inputs, backend, max_batch, specialize, at):
    """The RuntimeSizes of a function whose inputs have run-time sizes, else None
    (then ``max_batch`` and ``specialize`` must not be given)."""
    names: dict[str, None] = {}
    for v in inputs:
        for d, s in enumerate(v.type.shape):
            if type(s) is SymInt:
                if len(s.names) != 1 or s.poly != (((next(iter(s.names)),), 1),):
                    raise ShapeError(f"function: input {v.name!r} has the size {s!r} in dimension {d}: an "
                                     f"input's run-time size is a name, like (\"batch\", 784){at}")
                names[repr(s)] = None
    if not names:
        if max_batch is not None or specialize:
            raise InputError(f"function: max_batch= and specialize= are for inputs with a run-time size "
                             f"(sf.tensor('x', ('batch', 784))), and no input has one{at}")
        return None
    used: set = set()
    for op in fn.ops:
        for o in op.outputs:
            used |= names_of(o.type.shape)
    stray = sorted(used - set(names))
    if stray:
        raise ShapeError(f"function: the run-time size {stray[0]!r} is used by the graph but is the size of "
                         f"no input, so no call could give it a value{at}")
    if not getattr(backend, "runtime_sizes", False):
        raise InputError(f"function: device {backend.name!r} compiles static shapes only; the run-time size "
                         f"{next(iter(names))!r} needs device 'cpu', 'cuda', 'cuda-emu' or 'interp' (or give "
                         f"the input a number){at}")
    if specialize and not backend.specialized_builds:
        raise InputError(f"function: specialize= makes literal-size builds on device 'cpu'; device "
                         f"{backend.name!r} runs its one build at every size (leave specialize out){at}")
    spec = []
    for v in specialize or ():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"function: specialize= takes sizes >= 1, got {v!r}{at}")
        spec.append(int(v))
    if max_batch is not None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InputError(f"function: max_batch= must be an int >= 1, got {max_batch!r}{at}")
        if spec and max(spec) > max_batch:
            raise InputError(f"function: specialize= size {max(spec)} exceeds max_batch={max_batch}{at}")
    assumed = []

    def walk(ops):
        for op in ops:
            assumed.extend((a, op.opdef.name, op.loc) for a in op.assumed)
            for r in op.regions:
                walk(r.ops)
    walk(fn.ops)
    return RuntimeSizes(tuple(names), max_batch, tuple(sorted(set(spec))), assumed)


def _graph_key(fn, backend, opts, options, sizes=None) -> str:
    """The graph-level cache key: the printed IR before passes, without source
    locations (a hit with new ones rewrites the provenance: ``_relocated``), every
    option, user op definitions, and what the backend says decides its output
    (compiler, flags, version)."""
    from .cache import cache_key
    from .toolchain import code_identity
    user_ops = sorted({op.opdef.name: op.opdef for op in fn.ops if not is_builtin(op.opdef)}.items())
    return cache_key(print_function(fn, locations=False), backend.name, backend.identity(), code_identity(),
                     repr([(name, opdef_fingerprint(d)) for name, d in user_ops]),
                     repr((opts.optimize, opts.fast_math)), repr(sorted(options.items())),
                     repr(sizes) if sizes is not None else "")


def _graph_cache_load(backend, key, report, fn, sizes=None):
    """(run, optimised IR text) from the graph cache, or (None, None) on a miss.
    An entry that cannot be used (damaged, from an older layout, its library
    pruned) is a miss: the caller compiles and overwrites it."""
    from . import plain
    data = backend.cache.get("graph", key)
    if data is None:
        return None, None
    try:
        entry = plain.loads(data)
        now = [op.loc for op in fn.ops]
        if entry["locs"] != now:        # the same graph written on other lines (a comment added above it)
            entry = _relocated(entry, entry["locs"], now)
            if entry is None:
                return None, None
        run = backend.load(entry, report) if sizes is None else backend.load(entry, report, sizes)
    except Exception as e:  # noqa: BLE001 -- any unusable entry is a miss, never a failed compile
        log.warning("symfuse: graph cache entry %s unusable (%s: %s); recompiling", key[:12], type(e).__name__, e)
        return None, None
    return (run, entry["ir"]) if run is not None else (None, None)


_LOC = re.compile(r'loc\("([^"]*)":(\d+)\)')
_PROVENANCE = re.compile(r"\(([^()\s:/]+):(\d+)\)")


def _relocated(entry: dict, then: list, now: list) -> dict | None:
    """``entry`` with its source locations moved from ``then`` to ``now`` (one per
    op of the source graph, in the same order): in the IR text, and in the
    provenance comments (``(file.py:line)``) of kernel sources and records. None
    when the move is ambiguous (one old line now on two): then it is a miss."""
    full, short = {}, {}
    for a, b in zip(then, now):
        if a is None or b is None or tuple(a) == tuple(b):
            continue
        for table, key, val in ((full, (a[0], a[1]), tuple(b)),
                                (short, (os.path.basename(a[0]), a[1]), (os.path.basename(b[0]), b[1]))):
            if table.setdefault(key, val) != val:
                return None

    def in_ir(m):
        k = full.get((m.group(1), int(m.group(2))))
        return f'loc("{k[0]}":{k[1]})' if k else m.group(0)

    def in_comment(m):
        k = short.get((m.group(1), int(m.group(2))))
        return f"({k[0]}:{k[1]})" if k else m.group(0)

    def walk(x, key=None):
        if isinstance(x, str):
            return _PROVENANCE.sub(in_comment, x) if key in ("source", "provenance") else x
        if isinstance(x, list):
            return [walk(v, key) for v in x]
        if isinstance(x, dict):
            return {k: walk(v, k) for k, v in x.items()}
        if dataclasses.is_dataclass(x):
            return dataclasses.replace(x, **{f.name: walk(getattr(x, f.name), f.name)
                                             for f in dataclasses.fields(x)})
        return x

    out = walk({k: v for k, v in entry.items() if k != "ir"})
    out["ir"] = _LOC.sub(in_ir, entry["ir"])
    out["locs"] = now
    return out


def _own(val: np.ndarray, dtype, taken: set) -> np.ndarray:
    """``val`` itself when it owns its C-contiguous data of ``dtype`` and nothing
    else holds it yet (ids in ``taken``), else a copy; marks the result taken.
    A device value is the backend's fresh result: kept, but never twice."""
    if isinstance(val, DeviceValue):
        if id(val) in taken:
            val = val.copy()
        taken.add(id(val))
        return val
    if (type(val) is not np.ndarray or id(val) in taken or not val.flags.owndata
            or not val.flags.c_contiguous or val.dtype != dtype):
        val = np.array(val, dtype=dtype, copy=True, order="C")
    taken.add(id(val))
    return val


def _normalize_updates(updates, at):
    if updates is None:
        return []
    try:
        items = list(updates.items()) if isinstance(updates, dict) else list(updates)
    except TypeError:
        raise InputError(f"function: updates must be a dict or a list of (shared, expression) pairs, got "
                         f"{type(updates).__name__}{at}") from None
    out, seen = [], set()
    for k, pair in enumerate(items):
        try:
            s, e = pair
        except (TypeError, ValueError):
            raise InputError(f"function: update {k} must be a (shared, expression) pair{at}") from None
        if not isinstance(s, SharedVariable):
            raise InputError(f"function: update {k} targets {s!r}, which is not a shared variable{at}")
        if id(s) in seen:
            raise InputError(f"function: shared variable {s.name or '<unnamed>'} is updated twice{at}")
        seen.add(id(s))
        e = as_tensor(e, s)
        if e.type.shape != s.type.shape:
            raise ShapeError(f"function: update of {s.name or 'shared'} {s.type} has shape {e.type}{at}")
        if e.type.dtype is not s.type.dtype:
            raise DTypeError(f"function: update of {s.name or 'shared'} {s.type} has dtype "
                             f"{e.type.dtype}; cast it with .astype('{s.type.dtype}'){at}")
        out.append((s, e))
    return out


def _collect_params(inputs, results, at):
    """Inputs first, then shared variables in order of first use; any other
    leaf the graph depends on is an input the user forgot to list."""
    known = {id(v) for v in inputs}
    shared: list[SharedVariable] = []
    seen: set[int] = set()
    stack = list(reversed(results))
    order = []
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if v.op is None:
            order.append(v)
        else:
            stack.extend(reversed(v.op.inputs))
    for v in order:
        if id(v) in known:
            continue
        if isinstance(v, SharedVariable):
            shared.append(v)
            known.add(id(v))
        else:
            raise InputError(f"function: the outputs depend on input {v.name or '<unnamed>'} {v.type}, "
                             f"which is not in the inputs list{at}")
    return list(inputs) + shared, shared


class Executable:
    """A compiled function: call it with arrays; inspect ``ir()`` and ``report``."""

    def __init__(self, inputs, shared, outputs, updates, single, source_fn, fn, run, report, device, sizes=None):
        self.inputs = inputs
        self.sizes = sizes                    # RuntimeSizes, or None for static shapes
        self.shared = shared
        self.outputs = outputs
        self.updates = updates
        self._single = single
        self.source_function = source_fn      # as built from the user's graph (grad ops unexpanded)
        self._function = fn                   # after the pass pipeline; its text on a graph-cache hit
        self._run = run
        # one call at a time: the backend's arena and result buffers belong to the
        # function, and a call reads the shared variables the previous one updated.
        # Concurrent calls from several threads are serialised (correct, not parallel:
        # the kernels already use every core); the cost of the uncontended lock is ~0.1 us.
        self._lock = threading.Lock()
        self.report = report
        self.device = device
        self._nout = len(outputs)
        self._names = [v.name for v in inputs]
        self._device_values = run.device_values

    @property
    def function(self) -> Function:
        """The optimised Function (parsed from the cached text after a graph-cache hit)."""
        if isinstance(self._function, str):
            from ..ir.parser import parse   # lazy: only inspecting a cache hit's function parses
            self._function = parse(self._function)
        return self._function

    @property
    def kernels(self) -> list:
        """The generated kernels (KernelInfo: name, fused ops, source, sizes); empty on interp."""
        return list(self._run.kernels)

    @property
    def source(self) -> str | None:
        """The generated translation unit, for backends that generate one."""
        return self._run.source

    def profile(self) -> str:
        """Per-kernel time table of a function compiled with ``profile=True``
        (``sf.function(..., profile=True)``), slowest first."""
        rows = sorted(self._run.profile(), key=lambda r: -r[1])
        total = sum(r[1] for r in rows) or 1.0
        lines = [f"{'kernel':48} {'ms/call':>9} {'share':>6}"]
        lines += [f"{n[:48]:48} {t * 1e3:9.3f} {t / total:6.1%}" for n, t, _ in rows]
        lines.append(f"{'total':48} {total * 1e3:9.3f}   ({rows[0][2] if rows else 0} calls)")
        return "\n".join(lines)

    def ir(self, locations: bool = False) -> str:
        """The optimised function as SSA text."""
        return print_function(self.function, locations)

    def _check(self, i, v, a, bound):
        t = v.type
        label = f"argument {i} ({v.name!r})"
        if isinstance(a, np.ndarray):
            if a.dtype != t.dtype.np:
                raise InputError(f"{label}: expected dtype {t.dtype} {t}, got {a.dtype} array of shape "
                                 f"{a.shape}; convert it with .astype(np.{t.dtype})")
        else:
            try:
                arr = np.asarray(a)
            except Exception:
                raise InputError(f"{label}: expected {t}, got {type(a).__name__}") from None
            if arr.dtype == object or not np.can_cast(arr.dtype, t.dtype.np, casting="same_kind"):
                raise InputError(f"{label}: expected {t}, got {type(a).__name__} of dtype {arr.dtype}")
            try:
                a = cast_exactly(arr, t.dtype.np, label)
            except DTypeError as e:
                raise InputError(str(e)) from None
        if bound is not None:           # every argument binds (a size may even equal its trace value)
            self._bind(label, t, a.shape, bound)
        elif a.shape != t.shape:
            raise InputError(f"{label}: expected shape {t.shape} ({t}), got {a.shape}")
        return a

    def _bind(self, label, t, shape, bound) -> None:
        """Check ``shape`` against ``t``, whose run-time sizes take their values from
        the first argument that has them (``bound``: name -> (value, that argument))."""
        if len(shape) != len(t.shape):
            raise InputError(f"{label}: expected {t.ndim} dimensions ({t}), got shape {shape}")
        for d, (want, got) in enumerate(zip(t.shape, shape)):
            if type(want) is not SymInt:
                if want != got:
                    raise InputError(f"{label}: dimension {d} must be {want} ({t}), got shape {shape}")
                continue
            name = repr(want)
            seen, by = bound.get(name, (None, None))
            if seen is None:
                if got < 1:
                    raise InputError(f"{label}: the run-time size {name!r} is {got} (dimension {d}); it must be "
                                     "at least 1")
                if self.sizes.maximum is not None and got > self.sizes.maximum:
                    raise InputError(f"{label}: the run-time size {name!r} is {got} (dimension {d}), above "
                                     f"max_batch={self.sizes.maximum} of this function "
                                     f"(sf.function(..., max_batch=N) raises it)")
                bound[name] = (got, label)
            elif seen != got:
                raise InputError(f"{label}: dimension {d} is the run-time size {name!r}, which "
                                 f"{by} gave as {seen}; got {got}")

    def __call__(self, *args, **kwargs):
        if kwargs:
            args = list(args)
            for k, val in kwargs.items():
                if k not in self._names:
                    raise InputError(f"unexpected keyword argument {k!r}; inputs are {self._names}")
                idx = self._names.index(k)
                if idx < len(args):
                    raise InputError(f"argument {k!r} given twice")
                args.extend([None] * (idx + 1 - len(args)))
                args[idx] = val
        if len(args) != len(self.inputs):
            raise InputError(f"expected {len(self.inputs)} argument(s) {self._names}, got {len(args)}")
        bound = None if self.sizes is None else {}
        arrays = [self._check(i, v, a, bound) for i, (v, a) in enumerate(zip(self.inputs, args))]
        env = None
        if bound is not None:
            env = {name: value for name, (value, _) in bound.items()}
            for a, opname, loc in self.sizes.assumed:
                if not a.holds(env):
                    where = format_loc(loc)
                    raise InputError(f"this call has {', '.join(f'{k} = {v}' for k, v in env.items())}, but the "
                                     f"graph was built for {a!r} ({opname}" + (f" at {where})" if where else ")"))
        with self._lock:
            if self._device_values:
                arrays += [s._value for s in self.shared]
            else:                           # a variable may have been left on a device by another function
                arrays += [host(s._value) for s in self.shared]
            results = self._run(arrays) if env is None else self._run(arrays, env)
            # Results the backend made fresh for this call are kept, not copied: an update
            # becomes the shared variable's storage, an output goes to the caller. A copy is
            # made only where an array would otherwise be held twice (an input, a view, the
            # same array for two results), so no storage is ever shared.
            taken = {id(a) for a in arrays}
            recycle = self._run.recycle
            for k, ((s, _), val) in enumerate(zip(self.updates, results[self._nout:]), self._nout):
                old, s._value = s._value, _own(val, s.type.dtype.np, taken)
                # the previous value is ours alone when no other reference exists (the local
                # `old`, getrefcount's argument, and its places in `arrays`): the backend
                # may write the next call's result into it instead of a fresh allocation
                if (type(old) is np.ndarray
                        and sys.getrefcount(old) == 2 + sum(a is old for a in arrays)):
                    recycle(k, old)
            outs = [_own(host(r), r.dtype, taken) for r in results[:self._nout]]
        if self._single:
            return outs[0]
        return outs

    def __repr__(self):
        return (f"<symfuse function @{self.function.name} on {self.device}: {len(self.inputs)} inputs, "
                f"{self._nout} outputs, {len(self.updates)} updates, {len(self.function.ops)} ops>")

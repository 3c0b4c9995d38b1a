"""Run random programs on symfuse's devices, judge them by the oracles, shrink failures.

Oracles:
  (a) each compiled device against the interpreter: forward results within 2 * KF
      propagated error bounds, gradients within an empirical bound (grad_tol);
  (b) the interpreter against the numpy float64 twin (forward within KF error bounds,
      dtype and shape exact) and, for float64 programs, its gradient against central
      finite differences of the twin along a random direction (Richardson-checked).
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace

import numpy as np

import symfuse as sf

from .generate import FLOATS, _ancestors, INTS, U, Invalid, Program, amax, data_expr, generate, leaf_node, leaf_value, lit

KF = 8          # forward tolerance, in propagated error bounds
FD_H = 1e-5     # finite-difference step (the generator keeps kinks >= 1e-3 away)


def private_cache():
    """Compile into a fresh private cache unless the caller chose one (random programs
    never hit, and would only fill the user's cache): the directory made, or None."""
    if os.environ.get("SYMFUSE_CACHE_DIR"):
        return None
    os.environ["SYMFUSE_CACHE_DIR"] = tempfile.mkdtemp(prefix="symfuse-fuzz-")
    return os.environ["SYMFUSE_CACHE_DIR"]


@dataclass
class Finding:
    device: str
    kind: str                    # "mismatch" | "crash"
    check: str                   # fwd | grad | sgd | fd | type | the exception's type
    seeds: list
    label: str = ""              # the result that disagreed
    err: float = 0.0
    tol: float = 0.0
    message: str = ""
    source: str = ""             # the shrunk reproducer
    options: dict = field(default_factory=dict)   # device -> its sf.function options
    programs: list = field(default_factory=list, repr=False)

    @property
    def signature(self):
        return (self.device, self.kind, self.check)

    def summary(self):
        what = (f"{self.label}: max error {self.err:.3g} > tolerance {self.tol:.3g}" if self.label
                else self.message.splitlines()[0][:300] if self.message else "")
        return f"[{self.device}] {self.kind} ({self.check}) seeds {self.seeds}: {what}"


# ----------------------------------------------------------------------------- building and calling
# A device name with this suffix runs the programs with their inputs' first axis a run-time
# size ("cpu+batch"): compiled once for any size, called at the generated one, judged
# against the interpreter's run of the static program (``sized_statements``).
SIZED = "+batch"
_INPUT_DECL = re.compile(r'^(\w+ = sf\.tensor\("[^"]*", \()(\d+),')


def sized_statements(lines, name="n"):
    """The lines with every input whose first axis has the length of the first input's
    (at least 2) declared with that axis the run-time size ``name``; None when no input
    has such an axis."""
    first = next((m for m in map(_INPUT_DECL.match, lines) if m and int(m.group(2)) >= 2), None)
    if first is None:
        return None
    n = first.group(2)
    return [_INPUT_DECL.sub(lambda m: m.group(1) + (f'"{name}",' if m.group(2) == n else m.group(2) + ","), line)
            for line in lines]


def sized_programs(programs, device):
    """(the programs that build with a run-time first axis, findings): many do not (a
    literal shape of the same length, a slice past the smallest size) and are left out
    with the API's clear error; any other exception is a crash of the build."""
    out, found = [], []
    for p in programs:
        try:
            build([p], sized=True)
        except (sf.SymfuseError, _NotSized):
            continue
        except Exception as e:      # noqa: BLE001
            found.append(crash(device, [p], e))
            continue
        out.append(p)
    return out, found


class _NotSized(Exception):
    pass


def build(programs, sized=False):
    """Execute the programs' statements (the reproducer's own lines): the function's
    inputs, their values, its results and its updates. ``sized``: with ``sized_statements``."""
    env = {"sf": sf, "np": np}
    if uses_collectives(programs) and not sf.distributed.initialized():
        sf.distributed.init()        # one rank (no mpiexec): each collective is the identity
    inputs, args, results, updates, layout = [], [], [], [], []
    for k, p in enumerate(programs):
        lines, res = p.statements()
        if sized:       # a size of each program's own: the programs of one function have other lengths
            lines = sized_statements(lines, f"n{k}")
            if lines is None:
                raise _NotSized(p.seed)
        for line in lines:
            exec(compile(line, "<fuzz>", "exec"), env)
        for n in p.inputs:
            inputs.append(env[n.name])
            args.append(np.asarray(n.data).astype(n.dtype if n.dtype != "bool" else bool))
        results += [env[r] for r in res]
        if sized and any(env[x].type.shape != env[v].type.shape for x, v in p.updates):
            raise _NotSized(p.seed)         # an update of the run-time size's length: no program of it
        updates += [(env[x], env[v], p.node(x).data.astype(p.node(x).dtype)) for x, v in p.updates]
        layout.append((len(res), len(p.updates)))
    return inputs, args, results, updates, layout, env


def call(built, device, options=None, scribble=True):
    """Compile and call three times, each time from the shared variables' initial values,
    then compile again and call: (results then updated values, problem), where problem says
    that the first call changed an argument, that the second call changed the first one's
    results or gave others, that writing into the results (the caller owns them) changed
    the third call's (its arguments in Fortran order), or that the graph-cache hit gave others."""
    inputs, args, results, updates, layout, _ = built
    f = sf.function(inputs, results, updates=[u[:2] for u in updates], device=device, name="fuzz",
                    **(options or {}))

    def once(args=args):
        for x, _, v in updates:
            x.set_value(v)
        out = [np.asarray(o) for o in f(*args)]
        new, vals, i, j = [x.get_value() for x, _, _ in updates], [], 0, 0
        for n_res, n_up in layout:           # each program's results, then its updates
            vals += [o.copy() for o in out[i:i + n_res]] + new[j:j + n_up]
            i, j = i + n_res, j + n_up
        return out, vals

    before = [a.copy() for a in args]
    out, first = once()
    if not all(_same(a, b) for a, b in zip(args, before)):
        return first, "the call changed an argument"
    out2, again = once()
    if not all(_same(a, b) for a, b in zip(out, _results(first, layout))):
        return first, "the second call changed the first call's results"
    if not all(_same(a, b) for a, b in zip(again, first)):
        return first, "the second call gave other results"
    if scribble:
        for o in out2:
            if o.flags.writeable and o.size:
                o[...] = ~o if o.dtype == bool else 123
        # ... and the arguments in Fortran order this time, the same values (not on the
        # interpreter: numpy's matmul rounds differently for another memory order)
        _, third = once([np.array(a, order="F" if device != "interp" else "C") for a in args])
        if not all(_same(a, b) for a, b in zip(third, first)):
            return first, ("writing into the results of a call (or Fortran-ordered arguments) changed "
                           "the results of the next call")
    if updates:
        # three steps in a row, once holding every value a step produced (nothing can be
        # recycled) and once dropping them (the backend may write into old buffers)
        def steps(hold):
            for x, _, v in updates:
                x.set_value(v)
            seen, held = [], []
            for _ in range(3):
                out = f(*args)
                held += list(out) + [x._value for x, _, _ in updates] if hold else []
                seen += [np.array(o) for o in out] + [x.get_value() for x, _, _ in updates]
            return seen
        if not all(_same(a, b) for a, b in zip(steps(True), steps(False))):
            return first, "three steps in a row gave other values when the caller dropped each step's values"
    if device != "interp":
        # compiled again: a graph-cache hit (the module, kernels and constants restored)
        f = sf.function(inputs, results, updates=[u[:2] for u in updates], device=device, name="fuzz",
                        **(options or {}))
        _, cached = once()
        if not all(_same(a, b) for a, b in zip(cached, first)):
            return first, "the function compiled again (a graph-cache hit) gave other results"
    return first, None


def _results(vals, layout):
    """The function results among per-program values."""
    out, i = [], 0
    for n_res, n_up in layout:
        out += vals[i:i + n_res]
        i += n_res + n_up
    return out


def _same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def crash(device, programs, exc):
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return Finding(device, "crash", type(exc).__name__, [p.seed for p in programs],
                   message=f"{type(exc).__name__}: {exc}\n" + "".join(tb[-4:]), programs=list(programs))


# ----------------------------------------------------------------------------- oracles
def grad_tol(p: Program, vals, errs, grads):
    """Gradients have no propagated bound. Measured over random programs, backends differ
    from the interpreter by up to ~40 ulps of the largest gradient, and more where the
    cost itself is ill-conditioned: allow 256 ulps plus 4 per ulp of the cost's
    relative error bound."""
    u = max(U[n.dtype] for n in p.nodes if n.dtype in FLOATS)
    cond = errs[p.cost] / (u * (amax(vals[p.cost]) + 1e-3))
    # gradients that cancel to ~0 (d/dx of a mean of normalised x) are judged at the scale
    # of their terms, which the O(1) inputs and cost weights make >= ~0.01
    return u * (256 + 4 * cond) * (max((amax(g) for g in grads), default=0.0) + 1e-2)


def compare(got, want, tol):
    """(max abs error, ok) of two arrays; exact for ints and bools."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return math.inf, False
    if got.dtype.kind in "iub" or want.dtype.kind in "iub":
        err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0))
        return err, err == 0
    d = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if not np.all(np.isfinite(d)):
        return math.inf, False
    err = float(np.max(d, initial=0.0))
    return err, err <= tol


def judge(programs, got, ref, device):
    """Findings for one device's results ``got``; ``ref`` the interpreter's (None: device is
    the interpreter, judged against the numpy twin)."""
    out, k = [], 0
    for p in programs:
        vals, errs = p.evaluate()
        labels = p.result_labels()
        mine, base = got[k:k + len(labels)], (ref[k:k + len(labels)] if ref is not None else None)
        k += len(labels)
        # the scale of the gradients, also where only x - 0.1 * g is a result
        grads = [r if kind == "grad" else (vals[name] - r) * 10
                 for (kind, name), r in zip(labels, base or mine) if kind in ("grad", "sgd")]
        gtol = grad_tol(p, vals, errs, grads) if grads else 0.0
        grads2 = [r for (kind, _), r in zip(labels, base or mine) if kind == "grad2"]
        # second derivatives cancel (d/dx sum(g * g) of g = 1 is 0 plus rounding): their
        # terms are of the size of g * g, the scale they are judged at
        gtol2 = grad_tol(p, vals, errs, grads2 + [g * g for g in grads]) * 8 if grads2 else 0.0
        for i, ((kind, name), g) in enumerate(zip(labels, mine)):
            node = p.node(name)
            shape = vals[name].shape
            dtype = node.dtype if node.dtype != "bool" else "bool"
            label = f"{kind} {name}" if kind in ("fwd", "update") else f"{kind} wrt {name}"
            if g.shape != shape or g.dtype != np.dtype(dtype):
                out.append(Finding(device, "mismatch", "type", [p.seed], label, math.inf, 0.0,
                                   f"got {g.dtype}{list(g.shape)}, expected {dtype}{list(shape)}", programs=[p]))
                continue
            if kind in ("fwd", "update"):
                want, tol = (vals[name], KF * errs[name]) if base is None else (base[i], 2 * KF * errs[name])
            elif base is None:
                continue                       # the interpreter's gradients: finite differences below
            elif kind in ("grad", "grad2"):
                want, tol = base[i], gtol if kind == "grad" else gtol2
            else:
                want, tol = base[i], 0.1 * gtol + KF * U[node.dtype] * amax(vals[name])
            err, ok = compare(g, want, tol)
            if not ok:
                out.append(Finding(device, "mismatch", kind, [p.seed], label, err, tol, programs=[p]))
        if base is None and p.fd_ok:
            f = fd_check(p, [g for (kind, _), g in zip(labels, mine) if kind == "grad"], errs[p.cost])
            if f is not None:
                out.append(f)
    return out


def fd_check(p: Program, grads, cost_err):
    """The interpreter's gradient along a random direction v against the numpy twin's
    central differences (two steps; their difference bounds the truncation error)."""
    rng = np.random.default_rng(p.seed + 0xFD)
    base = {n.name: leaf_value(n) for n in p.nodes if n.leaf in ("input", "shared")}
    base.update(p.frozen(p.evaluate(strict=False)[0]))    # stop_gradient: fixed at its value
    v = {w: rng.standard_normal(base[w].shape) for w in p.wrt}

    def phi(t):
        vals, _ = p.evaluate({**base, **{w: base[w] + t * v[w] for w in p.wrt}}, strict=False)
        return float(vals[p.cost])

    gv = sum(float(np.sum(g * v[w])) for g, w in zip(grads, p.wrt))
    d1 = (phi(FD_H) - phi(-FD_H)) / (2 * FD_H)
    d2 = (phi(FD_H / 2) - phi(-FD_H / 2)) / FD_H
    est = (4 * d2 - d1) / 3
    scale = sum(float(np.sum(np.abs(g * v[w]))) for g, w in zip(grads, p.wrt))
    tol = 1e-6 * scale + 10 * abs(d1 - d2) + 10 * cost_err / FD_H + 1e-9
    err = abs(gv - est)
    if not err <= tol:
        return Finding("interp", "mismatch", "fd", [p.seed], f"grad . v of {p.cost} wrt {p.wrt}", err, tol,
                       f"interp {gv!r}, finite differences {est!r}", programs=[p])
    return None


def hold_stop_gradients(p: Program) -> Program:
    """p with each stop_gradient node an input holding its value: the function whose
    derivatives sf.grad computes (it does not differentiate through stop_gradient, nor
    through the gradients' own stop_gradient values), for finite differences of them; None
    where the cost then no longer depends on a variable (its derivatives are 0 by fiat)."""
    if not any(n.tag == "stop_gradient" for n in p.nodes):
        return p
    vals, _ = p.evaluate(strict=False)
    q = replace(p, nodes=[leaf_node(n.name, vals[n.name], n.dtype, "input") if n.tag == "stop_gradient" else n
                          for n in p.nodes])
    reach = _ancestors(q, q.cost) if q.cost else set()
    return q if all(w in reach for w in q.wrt) else None


def fd2_check(programs, built, got, options):
    """Second derivatives of float64 programs: the interpreter's d/dx sum(g * g) along a
    random direction against central differences of its (finite-difference checked)
    gradients g at perturbed inputs (stop_gradient values held fixed)."""
    todo = [p for p in programs if p.order2 and p.fd_ok]
    if not todo:
        return []
    if any(n.tag == "stop_gradient" for p in todo for n in p.nodes):
        held = {id(p): hold_stop_gradients(p) for p in todo}
        programs = [held.get(id(p)) or p for p in programs]
        todo = [q for q in held.values() if q is not None]
        built = build(programs)
    inputs, args, results, updates, layout, env = built
    f = sf.function(inputs, results, device="interp", **(options or {}))
    for x, _, v in updates:         # the values the checked call started from
        x.set_value(v)
    out, k, i, j = [], 0, 0, 0
    for p, (n_res, n_up) in zip(programs, layout):
        names = [n.name for n in p.inputs]
        if p in todo:
            labels = p.result_labels()
            rng = np.random.default_rng(p.seed + 0xFD2)
            v = {w: rng.standard_normal(np.shape(p.node(w).data)) for w in p.wrt}

            def phi(t):
                a = list(args)
                for w in p.wrt:
                    if w in names:
                        a[i + names.index(w)] = args[i + names.index(w)] + t * v[w]
                    else:
                        env[w].set_value(leaf_value(p.node(w)) + t * v[w])
                res = f(*a)[k:k + n_res]
                for w in p.wrt:
                    if w not in names:
                        env[w].set_value(leaf_value(p.node(w)))
                return sum(float(np.sum(np.square(r))) for (kind, _), r in zip(labels, res) if kind == "grad")

            h2 = [g for (kind, _), g in zip(labels, got[j:j + n_res + n_up]) if kind == "grad2"]
            hv = sum(float(np.sum(g * v[w])) for g, w in zip(h2, p.wrt))
            d1 = (phi(FD_H) - phi(-FD_H)) / (2 * FD_H)
            d2 = (phi(FD_H / 2) - phi(-FD_H / 2)) / FD_H
            est = (4 * d2 - d1) / 3
            scale = sum(float(np.sum(np.abs(g * v[w]))) for g, w in zip(h2, p.wrt))
            tol = 1e-6 * scale + 10 * abs(d1 - d2) + 1e-12 * (abs(phi(0)) + 1) / FD_H + 1e-9
            if not abs(hv - est) <= tol:
                out.append(Finding("interp", "mismatch", "fd2", [p.seed], f"d/dx sum(g * g) . v wrt {p.wrt}",
                                   abs(hv - est), tol, f"interp {hv!r}, finite differences {est!r}", programs=[p]))
        k, i, j = k + n_res, i + len(names), j + n_res + n_up
    return out


def check(programs, devices, options=None, skip=frozenset()):
    """Build the programs as one function, run it on the interpreter and ``devices``
    (``options``: device -> sf.function keyword arguments), return the findings.
    skip: "scribble:<device>" leaves out writing into that device's results."""
    options = options or {}
    findings, ref = [], None
    for d in ["interp"] + [d for d in devices if d != "interp"]:
        try:                        # a graph of its own: a device must not see another's damage
            built = build(programs, sized=d.endswith(SIZED))
        except Exception as e:      # noqa: BLE001  (the API refused a valid program)
            return [crash("build", programs, e)]
        try:
            got, problem = call(built, d.removesuffix(SIZED), options.get(d), f"scribble:{d}" not in skip)
        except Exception as e:      # noqa: BLE001
            findings.append(crash(d, programs, e))
            continue
        if problem:
            findings.append(Finding(d, "mismatch", "state", [p.seed for p in programs], message=problem,
                                    programs=list(programs)))
        if d == "interp":
            ref = got
            findings += judge(programs, got, None, d)
            # a fresh graph: writing into the results above may have changed this one (F1)
            findings += fd2_check(programs, build(programs), got, options.get(d))
        elif ref is not None:
            findings += judge(programs, got, ref, d)
    for f in findings:
        f.options = options
    return [f for f in findings if f.device in devices or f.device == "build"]


# ----------------------------------------------------------------------------- shrinking
def _subst(p: Program, old: str, new: str) -> Program:
    ren = lambda s: new if s == old else s  # noqa: E731
    nodes = [replace(n, args=tuple(ren(a) for a in n.args)) for n in p.nodes]
    return replace(p, nodes=nodes, outputs=[ren(o) for o in p.outputs], updates=[(x, ren(v)) for x, v in p.updates],
                   cost=ren(p.cost) if p.cost else None)


def _tidy(p: Program) -> Program | None:
    """Pruned, the gradient dropped where its inputs are gone; None if no longer valid."""
    if p.cost is not None:
        reach = _ancestors(p, p.cost)
        wrt = [w for w in p.wrt if w in reach and p.node(w).leaf in ("input", "shared")]
        p = replace(p, wrt=wrt) if wrt else replace(p, cost=None, wrt=[], sgd=0, order2=False)
    if not p.outputs and p.cost is None and not p.updates:
        return None
    p = p.prune()
    try:
        p.evaluate()
    except Invalid:
        return None
    return p


def candidates(p: Program):
    """Smaller variants of p, biggest cuts first."""
    for u in p.updates:
        yield replace(p, updates=[x for x in p.updates if x != u])
    if p.order2:
        yield replace(p, order2=False)
    if p.sgd:
        yield replace(p, sgd=0)
    if p.cost is not None:
        yield replace(p, cost=None, wrt=[], sgd=0, order2=False)
        for w in p.wrt if len(p.wrt) > 1 else []:
            yield replace(p, wrt=[x for x in p.wrt if x != w])
    for o in p.outputs if len(p.outputs) + (p.cost is not None) > 1 else []:
        yield replace(p, outputs=[x for x in p.outputs if x != o])
    vals, _ = p.evaluate()
    for n in reversed(p.nodes):                  # a node becomes a leaf holding its value
        if n.leaf or n.dtype == "tuple" or not vals[n.name].size:
            continue
        for digits in (3, None):
            data = vals[n.name] if digits is None or n.dtype not in FLOATS else np.round(vals[n.name], digits)
            kind = "input" if n.dtype in FLOATS else "const"
            nodes = [leaf_node(n.name, data.astype(np.int64) if n.dtype in INTS else data, n.dtype, kind)
                     if m is n else m for m in p.nodes]
            yield replace(p, nodes=nodes)
    for n in reversed(p.nodes):                  # a node bypassed by an operand of its type
        for a in dict.fromkeys(n.args):
            if p.node(a).dtype == n.dtype != "tuple" and vals[a].shape == vals[n.name].shape:
                yield _subst(replace(p, nodes=[m for m in p.nodes if m is not n]), n.name, a)
    for n in p.nodes:                            # shorter literals
        if n.leaf and n.dtype in FLOATS and not n.data_src and not np.array_equal(np.round(n.data, 1), n.data):
            yield replace(p, nodes=[leaf_node(m.name, np.round(m.data, 1), m.dtype, m.leaf) if m is n else m for m in p.nodes])


def _size(p: Program):
    """What shrinking minimises, most important first."""
    return (sum(not n.leaf for n in p.nodes), sum(bool(n.leaf) for n in p.nodes),
            len(p.outputs) + len(p.wrt) + len(p.updates) + p.sgd + p.order2 + (p.cost is not None),
            sum(len(data_expr(n)) for n in p.nodes if n.leaf))


def shrink(f: Finding, devices, budget_s=120.0, skip=frozenset()) -> Finding:
    """Smallest programs found within the budget that still give a finding with f's
    signature; the finding comes back with its reproducer."""
    t_end = time.monotonic() + budget_s
    same = lambda ps: next((g for g in check(ps, devices, f.options, skip) if g.signature == f.signature), None)  # noqa: E731
    progs, best = f.programs, f
    if len(progs) > 1:                           # the failing program alone, else fewer programs
        alone = [[p] for p in progs if p.seed in f.seeds] + [[p] for p in progs if p.seed not in f.seeds]
        for ps in alone:
            g = same(ps)
            if g is not None:
                progs, best = ps, g
                break
        else:
            for p in list(progs):
                if len(progs) > 1 and time.monotonic() < t_end:
                    g = same([q for q in progs if q is not p])
                    if g is not None:
                        progs, best = [q for q in progs if q is not p], g
    changed = True
    while changed and time.monotonic() < t_end:
        changed = False
        for i, p in enumerate(progs):
            for c in candidates(p):
                if time.monotonic() > t_end:
                    break
                c = _tidy(c)
                if c is None or _size(c) >= _size(p):
                    continue
                ps = progs[:i] + [c] + progs[i + 1:]
                g = same(ps)
                if g is not None:
                    progs, best, changed = ps, g, True
                    break
            if changed:
                break
    best.programs = progs
    best.source = reproducer(progs, best)
    return best


def uses_collectives(programs) -> bool:
    return any(n.tag == "collective" for p in programs for n in p.nodes)


# ----------------------------------------------------------------------------- reproducers
def reproducer(programs, f: Finding) -> str:
    """Python source that shows the finding with symfuse alone."""
    if f.check == "fd2":        # as fd2_check differentiates: stop_gradient values are inputs
        programs = [hold_stop_gradients(p) or p for p in programs]
    lines = ["import numpy as np", "import symfuse as sf", ""]
    if uses_collectives(programs):
        lines[2:2] = ["sf.distributed.init()"]
    results, names, inputs, updates = [], [], [], []
    for p in programs:
        body, res = p.statements()
        lines += body
        results += res
        names += [f"{k} {n}" for k, n in p.result_labels()]
        inputs += p.inputs
        updates += p.updates
    args = ", ".join(f"np.array({data_expr(n)}, '{n.dtype}')" for n in inputs)
    lines += ["", f"inputs = [{', '.join(n.name for n in inputs)}]", f"results = [{', '.join(results)}]",
              f"args = [{args}]"]
    if updates:
        lines += [f"updates = [{', '.join(f'({x}, {v})' for x, v in updates)}]",
                  "init = [x.get_value() for x, _ in updates]", "",
                  "def run(device, **options):",
                  "    # two calls from the initial shared values: results, then the new shared values",
                  "    f = sf.function(inputs, results, updates=updates, device=device, **options)",
                  "    return [[np.array(r) for r in f(*args)] + [x.get_value() for x, _ in updates]",
                  "            for _ in range(2) if not [x.set_value(v) for (x, _), v in zip(updates, init)]]", ""]
    else:
        lines += ["", "def run(device, **options):", "    f = sf.function(inputs, results, device=device, **options)",
                  "    return [[np.array(r) for r in f(*args)] for _ in range(2)]   # two calls", ""]
    opts = {d: "".join(f", {k}={v!r}" for k, v in f.options.get(d, {}).items()) for d in ("interp", f.device)}
    if f.check == "state":
        reset = "[x.set_value(v) for (x, _), v in zip(updates, init)]" if updates else "None"
        lines += [f"# {f.message}", f"def call(f):\n    {reset}\n    return f(*args)",
                  f"f = sf.function(inputs, results{', updates=updates' if updates else ''}, device={f.device!r}"
                  f"{opts[f.device]})",
                  "first = [np.array(r) for r in call(f)]",
                  "second = call(f)",
                  "d = lambda a, b: float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)), initial=0))",
                  "print('second call - first', [d(a, b) for a, b in zip(second, first)])",
                  "for o in second:",
                  "    o[...] = 123      # the caller owns the results",
                  "print('third call - first', [d(a, b) for a, b in zip(call(f), first)])",
                  f"g = sf.function(inputs, results{', updates=updates' if updates else ''}, device={f.device!r}"
                  f"{opts[f.device]})",
                  "print('compiled again - first', [d(a, b) for a, b in zip(call(g), first)])"]
    elif f.device == "interp":
        p = programs[0]
        vals, _ = p.evaluate()
        if f.check == "fd":
            lines += [f"got, _ = run('interp'{opts['interp']})",
                      "# central differences of the exact cost, element by element"]
            for w in p.wrt:
                k = [r for r in results].index(f"g_{w}")
                lines += [f"want_{w} = np.array({lit(fd_gradient(p, w))})",
                          f"print('g_{w}: interp', got[{k}].tolist(), 'finite differences', want_{w}.tolist())"]
        elif f.check == "fd2":
            ins = [n.name for n in inputs]
            lines += [f"got, _ = run('interp'{opts['interp']})",
                      "# d/dx sum(g * g) by central differences of the interpreter's own gradients g",
                      f"fg = sf.function(inputs, [{', '.join(p.grad_names())}], device='interp'{opts['interp']})",
                      "phi = lambda a: sum(float((g * g).sum()) for g in fg(*a))",
                      f"for w, k, r in {[(w, ins.index(w), results.index('h_' + w)) for w in p.wrt if w in ins]!r}:",
                      "    fd = np.zeros_like(args[k])",
                      "    for e in np.ndindex(fd.shape):",
                      "        hi, lo = [a.copy() for a in args], [a.copy() for a in args]",
                      "        hi[k][e] += 1e-6",
                      "        lo[k][e] -= 1e-6",
                      "        fd[e] = (phi(hi) - phi(lo)) / 2e-6",
                      "    print('h_' + w, 'interp', got[r].tolist(), 'finite differences', fd.tolist())"]
        else:
            name = f.label.split()[-1]
            k = [n.split()[-1] for n in names].index(name)
            lines += [f"got, _ = run('interp'{opts['interp']})",
                      f"want = np.array({lit(vals[name])})   # exact (float64) value of {name}",
                      f"print('max error', np.max(np.abs(np.asarray(got[{k}], float) - want)))"]
    else:
        lines += [f"ref, _ = run('interp'{opts['interp']})", f"got, again = run({f.device!r}{opts[f.device]})",
                  "d = lambda a, b: np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)), initial=0)",
                  f"for name, r, g, h in zip({names!r}, ref, got, again):",
                  "    print(name, 'max |got - interp|', d(g, r), 'max |second call - first|', d(h, g))"]
    return "\n".join(lines)


def fd_gradient(p: Program, w, h=1e-6):
    """d cost / d w of the numpy twin by central differences, element by element."""
    base = {n.name: leaf_value(n) for n in p.nodes if n.leaf in ("input", "shared")}
    base.update(p.frozen(p.evaluate(strict=False)[0]))    # stop_gradient: fixed at its value
    g = np.zeros_like(base[w])
    for k in np.ndindex(g.shape):
        e = np.zeros_like(g)
        e[k] = h
        hi, _ = p.evaluate({**base, w: base[w] + e}, strict=False)
        lo, _ = p.evaluate({**base, w: base[w] - e}, strict=False)
        g[k] = (float(hi[p.cost]) - float(lo[p.cost])) / (2 * h)
    return g


# ----------------------------------------------------------------------------- batches
# Recipes a device cannot run yet: a batch that runs on the device is generated without
# them (the interpreter alone runs them). Delete an entry when its backend lands.
PENDING: dict = {}     # device -> (recipe tags it skips, why): none now


def pending(devices) -> frozenset:
    """The recipes/tags ``PENDING`` leaves out of programs that run on ``devices``."""
    return frozenset().union(*(PENDING[d][0] for d in devices if d in PENDING))


CONTROL_TAGS = ("scan", "cond", "while_loop", "cond_pybool", "stop_gradient")


def tag_counts(programs) -> dict:
    """Programs holding each control-flow tag (and each of their variants, "tag:variant"),
    and "control flow": programs holding any."""
    out = {}
    for p in programs:
        seen = {n.tag for n in p.nodes if n.tag in CONTROL_TAGS}
        seen |= {f"{n.tag}:{v}" for n in p.nodes if n.tag in CONTROL_TAGS for v in n.feats}
        if seen & {"scan", "cond", "while_loop"}:
            seen.add("control flow")
        for t in seen:
            out[t] = out.get(t, 0) + 1
    return out


def programs_for(seeds, exclude=frozenset(), **kw):
    return [generate(s, prefix=f"p{i}_" if len(seeds) > 1 else "", exclude=exclude, **kw) for i, s in enumerate(seeds)]


# Known findings (bench/results/fuzz.md) that ``exclude`` can filter out by name ("known:F2").
KNOWN = {
    # F2 (fixed; kept to replay old seeds): a float4-vectorised float32 pointwise CUDA kernel with
    # 15 or more inputs named the float4 of input in1 "in14", the name of input 14
    "F2": lambda f: f.kind == "crash" and "const float4" in f.message and "invalid" in f.message,
    # F3: the interpreter hands out a constant's own array where a loop passes a carry through
    # unchanged (a while_loop of no trip, the backward scan of a carry the cost does not read):
    # writing into that result changes the next call's. Recognised by checking again with
    # such results copied (constant ops' own results, F1, are left as they are).
    "F3": lambda f: (f.device == "interp" and f.check == "state" and "writing into the results" in f.message
                     and _gone_with_loop_constants_copied(f)),
}


def _constants(region, out):
    for op in region.ops:
        if op.opdef.name == "constant":
            out.append(op.attrs["value"])
        for r in op.regions:
            _constants(r, out)
    return out


def _gone_with_loop_constants_copied(f: Finding) -> bool:
    """Whether f's state problem goes away when the interpreter copies the results that share
    memory with a constant of the function (below a loop or branch) but are not a constant op's."""
    from symfuse.runtime import interp
    plain = interp.InterpProgram.__call__

    def copying(self, arrays):
        out = plain(self, arrays)
        consts = _constants(self.function, [])
        return [np.array(v, copy=True) if not direct and any(np.shares_memory(v, c) for c in consts) else v
                for v, direct in zip(out, self._constant)]

    interp.InterpProgram.__call__ = copying
    try:
        again = check(f.programs, ["interp"], f.options)
    finally:
        interp.InterpProgram.__call__ = plain
    return not any(g.check == "state" for g in again)


def batch_options(seeds, devices):
    """One batch in four is compiled with fast_math (the rewrites that are not bit-exact),
    one in eight runs the CUDA kernels that the precompiled library would serve as
    shape-specialised ones (3 s of compiling instead of 0.3)."""
    r = int(np.random.default_rng([seeds[0], 0x0B7]).integers(8))     # not seeds[0] % 8: batches align
    options = {d: {"fast_math": True} for d in ["interp", *devices]} if r in (1, 5) else {}
    if r == 3:
        options["cuda-emu"] = {"library": False}
    return options


def run_batch(seeds, devices, exclude=frozenset(), shrink_budget=0.0, shrunk=(), **kw):
    """Generate, check, and shrink the first finding of each signature not in ``shrunk``:
    (programs, findings)."""
    exclude = frozenset(exclude) | pending(devices)
    progs, refused = programs_for(seeds, exclude, **kw), []
    for d in devices:
        if d.endswith(SIZED):
            progs, bad = sized_programs(progs, d)
            refused += bad
    if not progs:
        return progs, refused
    found = refused + [f for f in check(progs, devices, batch_options(seeds, devices), exclude)
             if not any(k in KNOWN and KNOWN[k](f) for k in (x[6:] for x in exclude if x.startswith("known:")))]
    if shrink_budget:
        seen, out = set(shrunk), []
        for f in found:
            if f.signature not in seen:
                seen.add(f.signature)
                f = shrink(f, devices, shrink_budget, exclude)
            out.append(f)
        found = out
    return progs, found


def task(seeds, devices, exclude=(), budget=0.0, shrunk=()):
    """One batch in a worker process: its findings, without their (unpicklable) programs,
    and its programs' control-flow tag counts."""
    progs, found = run_batch(seeds, devices, frozenset(exclude), shrink_budget=budget, shrunk=set(shrunk))
    return [replace(f, programs=[]) for f in found], tag_counts(progs)

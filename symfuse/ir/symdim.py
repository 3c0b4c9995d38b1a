"""Run-time sizes: a named dimension (``sf.tensor("x", ("batch", 784))``) whose
value is chosen at each call, and the integer expressions shapes make of it.

A ``SymInt`` is an ``int`` whose value is the dimension's *trace value*, a large
prime that no static size of a program shares, and which also carries its
expression over the named dimensions. Every part of the compiler that computes
with sizes (shape inference, strides, loop bounds, schedules) therefore runs
unchanged: ``+ - * // %`` build expressions, comparisons compare trace values.
Code generators print an expression as C (``str``/``format``: ``sf_dim_batch``,
a variable the program's entry sets from its ``dims`` argument); the IR printer
and error messages use ``repr`` (``batch``). A decision that depends on the
value (``n % 8``: a vector tail) sees a prime, so it takes the branch that
works for every value; a literal that would still carry the trace value into
generated code is caught by ``check_generated`` (a multiple of a trace value).

Dividing by a run-time size cannot make a Python float (``1.0 / n``): the IR
reads the size as a value instead (``dim_size``, the mean's divisor).
"""
from __future__ import annotations

import contextvars
import re
from typing import Mapping

from ..errors import ShapeError

# trace values: large primes, one per dimension name (in the order names are first seen)
_TRACE: dict[str, int] = {}
_BY_TRACE: dict[int, str] = {}
MAX_NAMES = 4096
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}\Z")
C_PREFIX = "sf_dim_"


def trace_value(name: str) -> int:
    t = _TRACE.get(name)
    if t is None:
        if len(_TRACE) >= MAX_NAMES:
            raise ShapeError(f"at most {MAX_NAMES} run-time dimension names in one process; {name!r} is one more")
        t = max(_BY_TRACE, default=1000000) + 1
        while any(t % p == 0 for p in range(2, int(t ** 0.5) + 1)):
            t += 1
        _TRACE[name] = t
        _BY_TRACE[t] = name
    return t


def check_name(name) -> str:
    """A dimension name: an identifier of at most 32 characters (it becomes a C name)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ShapeError(f"run-time dimension name {name!r}: use an identifier of at most 32 characters "
                         "(letters, digits, _; not starting with a digit)")
    return name


# An expression is a polynomial: a tuple of (monomial, coefficient), a monomial a
# sorted tuple of atoms, an atom a dimension name or ("//" | "%", poly, poly).
def _poly(x) -> tuple:
    if isinstance(x, SymInt):
        return x.poly
    return (((), int(x)),) if x else ()


def _norm(terms: dict) -> tuple:
    return tuple(sorted(((m, c) for m, c in terms.items() if c), key=lambda mc: repr(mc[0])))


def _add(a: tuple, b: tuple, sign: int = 1) -> tuple:
    out = dict(a)
    for m, c in b:
        out[m] = out.get(m, 0) + sign * c
    return _norm(out)


def _mul(a: tuple, b: tuple) -> tuple:
    out: dict = {}
    for ma, ca in a:
        for mb, cb in b:
            m = tuple(sorted(ma + mb, key=repr))
            out[m] = out.get(m, 0) + ca * cb
    return _norm(out)


def _divides(a: tuple, b: tuple) -> tuple | None:
    """a / b when b is one term that divides every term of a exactly, else None."""
    if len(b) != 1:
        return None
    (mb, cb), = b
    out = {}
    for m, c in a:
        rest = list(m)
        for atom in mb:
            if atom not in rest:
                return None
            rest.remove(atom)
        if c % cb:
            return None
        out[tuple(rest)] = c // cb
    return _norm(out)


def _wrap(poly: tuple, value: int):
    if not poly:
        return 0
    if len(poly) == 1 and poly[0][0] == ():
        return poly[0][1]
    return SymInt(value, poly)


class SymInt(int):
    """An integer known at run time (see the module docstring)."""

    def __new__(cls, value: int, poly: tuple):
        obj = int.__new__(cls, value)
        obj.poly = poly
        return obj

    @classmethod
    def dim(cls, name: str) -> "SymInt":
        return cls(trace_value(check_name(name)), (((name,), 1),))

    # arithmetic builds expressions; the int value follows along
    def __add__(self, o):
        return _wrap(_add(self.poly, _poly(o)), int(self) + int(o)) if isinstance(o, int) else NotImplemented

    __radd__ = __add__

    def __sub__(self, o):
        return _wrap(_add(self.poly, _poly(o), -1), int(self) - int(o)) if isinstance(o, int) else NotImplemented

    def __rsub__(self, o):
        return _wrap(_add(_poly(o), self.poly, -1), int(o) - int(self)) if isinstance(o, int) else NotImplemented

    def __mul__(self, o):
        return _wrap(_mul(self.poly, _poly(o)), int(self) * int(o)) if isinstance(o, int) else NotImplemented

    __rmul__ = __mul__

    def __neg__(self):
        return _wrap(_mul(self.poly, _poly(-1)), -int(self))

    def __pos__(self):
        return self

    def __floordiv__(self, o):
        return _floordiv(self, o) if isinstance(o, int) else NotImplemented

    def __rfloordiv__(self, o):
        return _floordiv(o, self) if isinstance(o, int) else NotImplemented

    def __mod__(self, o):
        return _mod(self, o) if isinstance(o, int) else NotImplemented

    def __rmod__(self, o):
        return _mod(o, self) if isinstance(o, int) else NotImplemented

    def __truediv__(self, o):
        raise ShapeError(f"the run-time size {self!r} cannot be divided into a Python float; "
                         "read it as a tensor with sf.dim_size(...) instead")

    __rtruediv__ = __truediv__

    def __bool__(self):
        # True only where no size >= 1 makes it 0: its truth value at the trace value
        # would decide code for one size (a vector tail emitted or not)
        if _monotone(self.poly, 1) and _eval(self.poly, {n: 1 for n in _names(self.poly)}) > 0:
            return True
        raise ShapeError(f"internal: whether the run-time size {self!r} is 0 depends on the call; "
                         "please report this")

    def __float__(self):
        raise ShapeError(f"the run-time size {self!r} has no value until the function is called")

    # comparisons compare trace values; inside an op's type rule they are recorded
    # (``recording``): the graph holds only for sizes where each comes out the same
    def __lt__(self, o):
        return _compared(self, "<", o, int.__lt__(self, o))

    def __le__(self, o):
        return _compared(self, "<=", o, int.__le__(self, o))

    def __gt__(self, o):
        return _compared(self, ">", o, int.__gt__(self, o))

    def __ge__(self, o):
        return _compared(self, ">=", o, int.__ge__(self, o))

    __hash__ = int.__hash__

    def __pow__(self, o, mod=None):
        if mod is None and type(o) is int and o >= 0:
            out = 1
            for _ in range(o):
                out = out * self
            return out
        return NotImplemented

    # printing: C for code generators, the IR's spelling for people
    def __str__(self) -> str:
        return c_expr(self.poly)

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else int.__format__(int(self), spec)

    def __repr__(self) -> str:
        return ir_expr(self.poly)

    def __reduce__(self):
        raise TypeError(f"run-time size {self!r} cannot be pickled")

    def evaluate(self, env: Mapping[str, int]) -> int:
        return _eval(self.poly, env)

    @property
    def names(self) -> frozenset:
        return frozenset(_names(self.poly))


# while an op's type rule runs: () (recording, nothing yet: every op's build passes
# here, and most compare no run-time size) or the comparisons made; else None
_ASSUMED: list | tuple | None = None
_COMPARE = {"<": int.__lt__, "<=": int.__le__, ">": int.__gt__, ">=": int.__ge__}


def _compared(a, op: str, b, result):
    global _ASSUMED
    if _ASSUMED is not None and result is not NotImplemented and isinstance(b, int):
        if _ASSUMED == ():
            _ASSUMED = []
        _ASSUMED.append((a, op, b, result))
    return result


class Assumption:
    """A comparison an op's type rule made of a run-time size (a slice's bound
    against the batch): each call must make it come out the same."""

    __slots__ = ("a", "op", "b", "result")

    def __init__(self, a, op, b, result):
        self.a, self.op, self.b, self.result = a, op, b, bool(result)

    def holds(self, env) -> bool:
        return _COMPARE[self.op](concrete(self.a, env), concrete(self.b, env)) == self.result

    def __repr__(self) -> str:
        flip = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
        return f"{self.a!r} {self.op if self.result else flip[self.op]} {self.b!r}"


def start_recording():
    """Record the comparisons of run-time sizes until ``stop_recording``."""
    global _ASSUMED
    prev, _ASSUMED = _ASSUMED, ()
    return prev


def stop_recording(prev) -> tuple:
    """The recorded comparisons a size of 1 would not repeat (the others hold for
    every size from 1 to the trace value: the expressions only grow with it)."""
    global _ASSUMED
    got, _ASSUMED = _ASSUMED, prev
    if not got:
        return ()
    out = []
    for a, op, b, r in got:
        x = Assumption(a, op, b, r)
        diff = _poly(a - b)
        # a difference that only grows (or only falls) with the sizes keeps its sign from
        # size 1 up to the trace value when it has it at both ends: no condition on a call
        if not diff or (_monotone(diff, 1) or _monotone(_mul(diff, _poly(-1)), 1)) \
                and x.holds({n: 1 for n in (*_names(_poly(a)), *_names(_poly(b)))}):
            continue
        if not any(repr(x) == repr(y) for y in out):
            out.append(x)
    return tuple(out)


def _monotone(poly, sign) -> bool:
    """Non-decreasing in every size: each term a non-negative multiple of sizes and of
    ``p // q`` with p such a polynomial and q a positive constant (the constant term
    may have any sign)."""
    for m, c in poly:
        if m == ():
            continue
        if c < 0:
            return False
        for atom in m:
            if isinstance(atom, str):
                continue
            op, num, den = atom
            if op != "//" or not (len(den) == 1 and den[0][0] == () and den[0][1] > 0) or not _monotone(num, 1):
                return False
    return True


def _floordiv(a, b):
    pa, pb = _poly(a), _poly(b)
    q = _divides(pa, pb)
    if q is not None:
        return _wrap(q, int(a) // int(b))
    if not isinstance(a, SymInt) and int(a) == 0:
        return 0
    if pb == (((), 1),):
        return a
    return SymInt(int(a) // int(b), (((("//", pa, pb),), 1),))


def _mod(a, b):
    pa, pb = _poly(a), _poly(b)
    if _divides(pa, pb) is not None:
        return 0
    if not isinstance(a, SymInt) and int(a) == 0:
        return 0
    return SymInt(int(a) % int(b), (((("%", pa, pb),), 1),))


def _atom_names(atom):
    if isinstance(atom, str):
        yield atom
    else:
        yield from _names(atom[1])
        yield from _names(atom[2])


def _names(poly):
    for m, _ in poly:
        for atom in m:
            yield from _atom_names(atom)


def _eval(poly, env) -> int:
    total = 0
    for m, c in poly:
        v = c
        for atom in m:
            if isinstance(atom, str):
                v *= env[atom]
            else:
                x, y = _eval(atom[1], env), _eval(atom[2], env)
                v *= x // y if atom[0] == "//" else x % y
        total += v
    return total


def _render(poly, atom_text) -> str:
    if not poly:
        return "0"
    text = ""
    for m, c in sorted(poly, key=lambda mc: mc[0] == ()):      # the constant last: batch - 1
        factors = [atom_text(a) for a in m]
        if abs(c) != 1 or not factors:
            factors.append(str(abs(c)))
        term = "*".join(factors)
        text = (("-" if c < 0 else "") + term if not text else f"{text} {'-' if c < 0 else '+'} {term}")
    simple = len(poly) == 1 and len(poly[0][0]) <= 1 and poly[0][1] == 1
    return text if simple else "(" + text + ")"


def c_expr(poly) -> str:
    def atom(a):
        if isinstance(a, str):
            return C_PREFIX + a
        return f"({c_expr(a[1])}{'/' if a[0] == '//' else '%'}{c_expr(a[2])})"
    return _render(poly, atom)


def ir_expr(poly) -> str:
    def atom(a):
        if isinstance(a, str):
            return a
        return f"({ir_expr(a[1])}{a[0]}{ir_expr(a[2])})"
    return _render(poly, atom)


# --------------------------------------------------------------------------- helpers
def spelled(x):
    """``x`` (a size, or lists/tuples/dicts holding sizes) with each run-time size as
    its IR spelling: plain data for JSON, which would write an int subclass as its
    (trace) value."""
    if type(x) is SymInt:
        return repr(x)
    if isinstance(x, dict):
        return {k: spelled(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [spelled(v) for v in x]
    return x


def maybe_nonzero(x) -> bool:
    """``x != 0`` for a static size; True for a run-time one (take the general path)."""
    return type(x) is SymInt or x != 0


def is_symbolic(shape) -> bool:
    for s in shape:
        if type(s) is SymInt:
            return True
    return False


def names_of(shape) -> frozenset:
    out: frozenset = frozenset()
    for s in shape:
        if type(s) is SymInt:
            out |= s.names
    return out


def concrete(x, env: Mapping[str, int]):
    """``x`` (an int, a SymInt, or tuples/lists/dicts of them) at the sizes of ``env``."""
    if type(x) is SymInt:
        return x.evaluate(env)
    if isinstance(x, tuple):
        return tuple(concrete(v, env) for v in x)
    if isinstance(x, list):
        return [concrete(v, env) for v in x]
    if isinstance(x, dict):
        return {k: concrete(v, env) for k, v in x.items()}
    return x


def has_symbolic(x) -> bool:
    if type(x) is SymInt:
        return True
    if isinstance(x, (tuple, list)):
        return any(has_symbolic(v) for v in x)
    if isinstance(x, dict):
        return any(has_symbolic(v) for v in x.values())
    return False


def parse_dim(text: str, env_names=None):
    """The IR spelling back to a size: ``784``, ``batch``, ``(batch*784 + 3)``, ``((batch*3)//2)``."""
    toks = re.findall(r"\d+|[A-Za-z_][A-Za-z0-9_]*|//|[-+*%()]", text)
    if "".join(toks) != re.sub(r"\s+", "", text):
        raise ShapeError(f"cannot read the size {text!r}")
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take():
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def atom():
        t = take()
        if t == "(":
            v = expr()
            if take() != ")":
                raise ShapeError(f"cannot read the size {text!r}")
            return v
        if t == "-":
            return -atom()
        if t.isdigit():
            return int(t)
        return SymInt.dim(t)

    def term():
        v = atom()
        while peek() in ("*", "//", "%"):
            op, r = take(), atom()
            v = v * r if op == "*" else v // r if op == "//" else v % r
        return v

    def expr():
        v = term()
        while peek() in ("+", "-"):
            op, r = take(), term()
            v = v + r if op == "+" else v - r
        return v

    out = expr()
    if pos != len(toks):
        raise ShapeError(f"cannot read the size {text!r}")
    return out


def aligned_bound(n, align: int):
    """An upper bound of ``n`` that is a multiple of ``align`` at every size: each
    coefficient rounded up (exact for a static ``n``)."""
    if type(n) is not SymInt:
        return -(-max(int(n), 1) // align) * align
    out = 0
    for mono, coef in n.poly:
        term = -(-coef // align) * align
        for atom in mono:
            if not isinstance(atom, str):
                raise ShapeError(f"cannot bound the size {n!r}")
            term = term * SymInt.dim(atom)
        out = out + term
    return out


# --------------------------------------------------------------------------- generated code
_INT_LITERAL = re.compile(r"(?<![\w.])(\d{6,})(?:\.0*)?(?![\w.])")


def check_generated(source: str, where: str, names=None) -> None:
    """Refuse generated code that holds a trace value (or a multiple of one) as a
    literal: a size computed from a run-time dimension lost its expression on the
    way (an ``int()``), and the code would be right for one size only. ``names``:
    the sizes to look for (default: every one of the process)."""
    traces = tuple(_TRACE[n] for n in names) if names is not None else tuple(_TRACE.values())
    if not traces:
        return
    for m in _INT_LITERAL.finditer(source):
        v = int(m.group(1))
        for t in traces:
            if v % t == 0:
                name = _BY_TRACE[t]
                line = source.count("\n", 0, m.start()) + 1
                raise ShapeError(f"internal: {where} holds the literal {v} (line {line}), a size computed from "
                                 f"the run-time dimension {name!r} as if it were static; please report this")


def trace_multiple(arr, names=None):
    """The name of the run-time size (of ``names``; default: any) whose trace value a
    nonzero integral element of ``arr`` is a multiple of (a size that became a
    number), else None."""
    import numpy as np
    traces = {_TRACE[n]: n for n in names} if names is not None else _BY_TRACE
    v = np.asarray(arr)
    if not traces or v.dtype.kind not in "iuf" or not v.size:
        return None
    big = v[np.abs(v.astype(np.float64)) >= min(traces)].astype(np.float64)
    for t, name in traces.items():
        if big.size and np.any((np.mod(big, t) == 0) & (big != 0)):
            return name
    return None


def check_constants(fn, names) -> None:
    """Refuse a function whose constants hold a multiple of a trace value: a pass
    folded a size computed from a run-time dimension into a number."""
    def walk(ops):
        for op in ops:
            if op.opdef.name == "constant":
                name = trace_multiple(op.attrs["value"], names)
                if name is not None:
                    raise ShapeError(f"internal: a constant of @{fn.name} holds a multiple of the trace value of "
                                     f"the run-time size {name!r} (a pass folded the size as if it were static); "
                                     "please report this")
            for r in op.regions:
                walk(r.ops)
    walk(fn.ops)


# the sizes of the call being evaluated by the interpreter (``evaluate``)
current_sizes: contextvars.ContextVar = contextvars.ContextVar("symfuse_sizes", default=None)


class RuntimeSizes:
    """A function's run-time sizes: their names (the order of the entry's ``dims``
    argument), the largest value each may take (None: any), and the values that
    get literal-size builds of their own (``specialize=``)."""

    __slots__ = ("names", "maximum", "specialize", "assumed")

    def __init__(self, names: tuple, maximum: int | None, specialize: tuple = (), assumed: tuple = ()):
        self.names, self.specialize = tuple(names), tuple(specialize)
        self.maximum = None if maximum is None else int(maximum)
        self.assumed = tuple(assumed)     # (Assumption, op name, source location) a call must satisfy

    @property
    def at_max(self) -> dict | None:
        return None if self.maximum is None else {n: self.maximum for n in self.names}

    def values(self, env: Mapping[str, int]) -> tuple:
        return tuple(env[n] for n in self.names)

    def __repr__(self) -> str:
        return f"RuntimeSizes({', '.join(self.names)} <= {self.maximum}, specialize={list(self.specialize)})"

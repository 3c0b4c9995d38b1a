"""SSA core: OpDef (what an op is), Op (one application), Value, Region, Function.

The IR is an immutable DAG. A Value is defined once, by one Op (or it is a
parameter). Passes never mutate: they build new Ops and map old Values to new
ones. A Function is its parameters and results; its op list is derived by a
deterministic topological sort, which doubles as dead-code elimination.
"""
from __future__ import annotations

import itertools
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import SymfuseError, VerifyError
from .symdim import start_recording, stop_recording
from .types import DType, TensorType

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_ids = itertools.count()


# --------------------------------------------------------------------------- locations
class _LocState:
    override: tuple | None = None
    # labels of the layers whose forward is building ops, innermost last
    # ("Conv2D 'conv0' (zoo.py:42)"): symfuse.nn's Module.__call__ pushes them
    scopes: list = []


_LOC = _LocState()


def user_location() -> tuple | None:
    """(file, line) of the innermost frame outside the symfuse package, and the
    innermost layer being called as a third item when there is one."""
    loc = _LOC.override
    if loc is None:
        f = sys._getframe(2)
        while f is not None and _inside_package(f.f_code.co_filename):
            f = f.f_back
        loc = (f.f_code.co_filename, f.f_lineno) if f is not None else None
    if _LOC.scopes:
        return (loc[0], loc[1], _LOC.scopes[-1]) if loc else ("<symfuse>", 0, _LOC.scopes[-1])
    return loc


class layer_scope:
    """Context manager: ops built inside carry ``label`` (a layer and where it was
    defined) beside the user's line that called it."""

    __slots__ = ("label",)

    def __init__(self, label: str):
        self.label = label

    def __enter__(self):
        _LOC.scopes.append(self.label)
        return self

    def __exit__(self, *exc):
        _LOC.scopes.pop()
        return False


_INSIDE: dict[str, bool] = {}


def _inside_package(filename: str) -> bool:
    """Memoised per file name: co_filename may be relative or unnormalised."""
    r = _INSIDE.get(filename)
    if r is None:
        r = _INSIDE[filename] = os.path.realpath(filename).startswith(_PKG_DIR + os.sep)
    return r


class location:
    """Context manager: ops built inside inherit ``loc`` (used by passes, so that
    rewritten ops point at the user's line that produced the original)."""

    __slots__ = ("loc", "prev")

    def __init__(self, loc):
        self.loc = loc

    def __enter__(self):
        self.prev = _LOC.override
        _LOC.override = self.loc if self.loc is not None else ("<symfuse>", 0)
        return self

    def __exit__(self, *exc):
        _LOC.override = self.prev
        return False


def format_loc(loc, short: bool = False) -> str:
    """``file:line``, ``file:line in <layer>`` or ``<layer>`` (an op of a layer called
    from inside symfuse, such as a zoo model built by the CLI); ``short``: the file's
    base name only."""
    if not loc:
        return ""
    where = "" if loc[0] == "<symfuse>" else f"{os.path.basename(loc[0]) if short else loc[0]}:{loc[1]}"
    if len(loc) > 2 and loc[2]:
        return f"{where} in {loc[2]}" if where else loc[2]
    return where


# --------------------------------------------------------------------------- op definitions
FUSION_CLASSES = ("pointwise", "view", "reduce", "constant", "library", "control")


@dataclass
class OpDef:
    """Everything about one op, in one place.

    infer(in_types, attrs) -> tuple of result TensorTypes. It may canonicalise
        ``attrs`` in place (negative axes, defaults) and raises ShapeError /
        DTypeError with a message naming operands and shapes.
    ref(arrays, attrs) -> array or tuple of arrays: the numpy semantics.
    vjp(op, cotangents) -> per-input cotangent Value or None (zero), written
        with symfuse ops so the result is ordinary IR.
    c_expr: for elementwise ops, the scalar C expression with ``{0}``, ``{1}``
        for operands and ``{T}`` for the C scalar type of the result (C and CUDA).
    fusion: how kernel fusion treats the op -- "pointwise" (fused into its
        consumer's loop), "view" (index arithmetic on a load), "reduce" (a
        reduction loop with a fused prologue and epilogue), "constant", or
        "library" (one call of a runtime library function), or "control" (an op
        with regions that a backend runs as a loop or branch). Default: pointwise
        for elementwise ops, library for the rest.
    reduction: for a fusable reduction, (identity, C statement combining ``x``
        into ``acc``); the identity may name ``{lo}`` / ``{hi}``, the dtype's
        lowest / highest value.
    arity: the number of operands, where it is fixed (elementwise ops).
    gemm_like: a matrix-product-shaped library op (matmul, the convolutions): its
        kernels cost a GEMM's compile and run time (NVRTC unit balancing).
    regions: the number of nested bodies (``Region``) the op takes: control flow.
    differentiable: False for an op with no VJP because its gradient is zero or
        undefined (comparisons, rounding, argmax, random draws: piecewise
        constant); differentiation treats it as zero gradient. A
        differentiable op must have a ``vjp``, so every new op says which it is.
    onnx: how ``sf.onnx.save`` writes the op (None: it has no ONNX equivalent, and
        exporting a graph that uses it is refused, naming the op and its line).
        Either an ONNX op type (``"Relu"``) for an op whose operands, result and
        semantics are ONNX's one-to-one with no attributes, or a rule
        ``(g, op, names) -> list[str]``: ``names`` are the ONNX names of the op's
        operands; it emits nodes through the export builder ``g``
        (``symfuse.onnx.export.GraphBuilder``: ``g.node(op_type, inputs, outputs=1,
        **attrs) -> names``, ``g.const(array) -> name``, ``g.ints``, ``g.scalar``,
        ``g.dtype``, ``g.reduce``, ``g.inline``, ``g.subgraph``, ``g.unsupported``) and
        returns one name per result. The IR never imports onnx: only ``g`` does.
    """

    name: str
    infer: Callable
    ref: Callable
    vjp: Callable | None = None
    kind: str = "other"             # elementwise | reduce | shape | linalg | nn | random | special
    attrs: dict = field(default_factory=dict)   # name -> default, printed in this order
    c_expr: str | None = None
    foldable: bool = True           # may constant-fold when all inputs are constants
    commutative: bool = False
    # operand positions a library lowering can read through a swap of their last two
    # axes (BLAS's trans_a / trans_b), so fusion may pass such a transpose's buffer as is
    transposable_operands: tuple = ()
    fusion: str | None = None
    reduction: tuple | None = None
    arity: int | None = None
    gemm_like: bool = False
    differentiable: bool = True
    # nested bodies the op takes (control flow); its ``infer`` and ``ref`` then also
    # receive the op's regions: infer(types, attrs, regions), ref(arrays, attrs, regions)
    regions: int = 0
    attrs_to_text: Callable | None = None    # (attrs) -> attrs for printing
    attrs_from_text: Callable | None = None  # (attrs, out_types) -> attrs after parsing
    onnx: str | Callable | None = None       # ONNX export: an op type or a rule (g, op, names) -> names
    doc: str = ""

    def __post_init__(self):
        if self.fusion is None:
            self.fusion = "pointwise" if self.kind == "elementwise" else "library"
        if self.fusion not in FUSION_CLASSES:
            raise ValueError(f"op {self.name!r}: fusion must be one of {', '.join(FUSION_CLASSES)}, "
                             f"got {self.fusion!r}")
        if self.fusion == "reduce" and self.reduction is None:
            raise ValueError(f"op {self.name!r}: a fusable reduction needs its (identity, combine) rule")
        if self.differentiable and self.vjp is None:
            msg = (f"op {self.name!r} has no vjp: give it one, or pass differentiable=False if its gradient "
                   "is zero or undefined (differentiation then treats it as zero)")
            raise ValueError(msg)

    def __repr__(self):
        return f"OpDef({self.name})"


OPS: dict[str, OpDef] = {}
# op names become parts of kernel names in generated C and CUDA, and IR identifiers
_OP_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}\Z")


def register(opdef: OpDef) -> OpDef:
    if not isinstance(opdef.name, str) or not _OP_NAME.match(opdef.name):
        raise ValueError(f"op name {opdef.name!r}: lower-case letters, digits and '_', starting with a letter "
                         "or '_', at most 64 characters")
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name!r} is already registered")
    OPS[opdef.name] = opdef
    return opdef


def defop(name: str, **kw) -> OpDef:
    return register(OpDef(name=name, **kw))


def is_builtin(opdef: OpDef) -> bool:
    """Defined by symfuse itself (its code identity covers it), not by a user."""
    return (getattr(opdef.infer, "__module__", None) or "").startswith("symfuse.")


def _code_fingerprint(f, h) -> None:
    code = getattr(f, "__code__", None)
    if code is None:
        h.update(repr(f).encode())
        return
    stack = [code]
    while stack:                          # the function and its nested functions: code, not line numbers
        c = stack.pop()
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for k in c.co_consts:
            if hasattr(k, "co_code"):
                stack.append(k)
            else:
                h.update(repr(k).encode())
    for cell in getattr(f, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:                # an empty cell
            continue
        if callable(v):
            _code_fingerprint(v, h)
        else:
            h.update(repr(v).encode())


def opdef_fingerprint(opdef: OpDef) -> str:
    """What a user op's definition decides, for the graph-cache key: its table entry
    and the code (not the file or line) of its type rule, reference and VJP."""
    import hashlib
    h = hashlib.sha256(repr((opdef.name, opdef.kind, opdef.fusion, opdef.arity, opdef.c_expr, opdef.attrs,
                             opdef.reduction, opdef.commutative, opdef.foldable)).encode())
    for f in (opdef.infer, opdef.ref, opdef.vjp):
        _code_fingerprint(f, h)
    return h.hexdigest()


def get_opdef(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise VerifyError(f"unknown op {name!r}") from None


# --------------------------------------------------------------------------- values and ops
class Value:
    """An SSA value: defined once, by ``op`` (output ``index``), or a parameter."""

    __slots__ = ("type", "op", "index", "name", "id", "__weakref__")
    __array_priority__ = 1000  # numpy scalars defer to our operators

    def __init__(self, type: TensorType, op: "Op | None" = None, index: int = 0, name: str | None = None):
        self.type = type
        self.op = op
        self.index = index
        self.name = name
        self.id = next(_ids)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.type.shape)

    @property
    def size(self) -> int:
        return self.type.size

    def __len__(self):
        if not self.type.shape:
            raise TypeError("len() of a 0-d symbolic tensor")
        return self.type.shape[0]

    def __iter__(self):
        raise TypeError("symbolic tensors are not iterable; index them with static indices")

    def __bool__(self):
        raise TypeError("the truth value of a symbolic tensor is unknown until it runs; "
                        "use sf.where for data-dependent choices")

    def __repr__(self):
        what = self.op.opdef.name if self.op is not None else "param"
        label = f" {self.name!r}" if self.name else ""
        return f"<Value{label} {self.type} from {what}>"


class Op:
    """One application of an OpDef to input Values, producing output Values."""

    __slots__ = ("opdef", "inputs", "attrs", "outputs", "regions", "loc", "_key", "assumed")

    def __init__(self, opdef: OpDef, inputs: Sequence[Value], attrs: dict,
                 out_types: Sequence[TensorType], regions: Sequence["Region"] = (), loc=None):
        self.opdef = opdef
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.regions = tuple(regions)
        self.loc = loc
        self._key = None
        self.assumed = ()       # comparisons of run-time sizes its type rule made (symdim.Assumption)
        if len(out_types) == 1:   # the common case, without a generator
            self.outputs = (Value(out_types[0], self, 0),)
        else:
            self.outputs = tuple(Value(t, self, i) for i, t in enumerate(out_types))

    @property
    def name(self) -> str:
        return self.opdef.name

    def key(self):
        """Structural identity for CSE: op, input identities, attributes."""
        if self._key is None:
            self._key = (self.opdef.name, tuple(v.id for v in self.inputs),
                         attrs_key(self.attrs), tuple(id(r) for r in self.regions))
        return self._key

    def __repr__(self):
        return f"<Op {self.opdef.name} {[str(v.type) for v in self.inputs]} -> {[str(v.type) for v in self.outputs]}>"


def attrs_key(attrs: dict):
    items = []
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            v = (v.dtype.str, v.shape, v.tobytes())
        elif isinstance(v, float) and v != v:
            v = "nan"
        items.append((k, v))
    return tuple(items)


def _normalize_attr(v):
    if isinstance(v, (list, tuple)):
        return tuple(_normalize_attr(x) for x in v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def apply(opdef: OpDef | str, inputs: Sequence[Value], attrs: dict | None = None,
          regions: Sequence["Region"] = (), loc=None):
    """Type-check and build one op; returns its single output Value or a tuple."""
    if isinstance(opdef, str):
        opdef = get_opdef(opdef)
    a = dict(opdef.attrs)
    if attrs:
        for k, v in attrs.items():
            if k not in a:
                raise VerifyError(f"{opdef.name}: unknown attribute {k!r}; "
                                  f"known: {', '.join(a) or 'none'}")
            a[k] = _normalize_attr(v)
    for i, v in enumerate(inputs):
        if not isinstance(v, Value):
            raise TypeError(f"{opdef.name}: operand {i} is {type(v).__name__}, not a symbolic tensor")
    if loc is None:
        loc = user_location()
    if len(regions) != opdef.regions:
        raise VerifyError(f"{opdef.name}: takes {opdef.regions} region(s), got {len(regions)}")
    prev = start_recording()
    try:
        out_types = infer_types(opdef, tuple(v.type for v in inputs), a, regions)
    except SymfuseError as e:
        where = format_loc(loc)
        raise type(e)(f"{opdef.name}: {e}" + (f" (at {where})" if where else "")) from None
    finally:
        assumed = stop_recording(prev)
    op = Op(opdef, inputs, a, out_types, regions, loc)
    if assumed:
        op.assumed = assumed
    return op.outputs[0] if len(op.outputs) == 1 else op.outputs


def infer_types(opdef: OpDef, types: tuple, attrs: dict, regions=()) -> tuple:
    """The op's type rule (with its regions, for an op that takes some)."""
    if opdef.regions:
        return opdef.infer(types, attrs, tuple(regions))
    return opdef.infer(types, attrs)


def run_ref(op: "Op", arrays: list, attrs: dict | None = None):
    """The op's numpy semantics on ``arrays`` (with its regions, for an op that takes
    some); ``attrs``: the op's attributes with run-time sizes given their values."""
    attrs = op.attrs if attrs is None else attrs
    if op.regions:
        return op.opdef.ref(arrays, attrs, op.regions)
    return op.opdef.ref(arrays, attrs)


def rebuild(op: Op, inputs: Sequence[Value]) -> Op:
    """The same op applied to new inputs. Skips type inference when the input
    types are unchanged (the common case in passes; types are interned)."""
    for a, b in zip(inputs, op.inputs):   # a plain loop: this is the hottest line of every pass
        if a.type is not b.type:
            break
    else:
        return Op(op.opdef, inputs, op.attrs, [o.type for o in op.outputs], op.regions, op.loc)
    with location(op.loc):
        out = apply(op.opdef, inputs, dict(op.attrs), op.regions, op.loc)
    return (out if isinstance(out, Value) else out[0]).op


# --------------------------------------------------------------------------- functions
def ancestors(v: Value) -> set[int]:
    """ids of every Value that ``v`` depends on, ``v`` included."""
    seen = {id(v)}
    stack = [v]
    while stack:
        op = stack.pop().op
        if op is None:
            continue
        for x in op.inputs:
            if id(x) not in seen:
                seen.add(id(x))
                stack.append(x)
    return seen


def toposort(results: Sequence[Value], params: Sequence[Value] = (), allow_free: bool = False) -> list[Op]:
    """Ops reachable from ``results``, each after its inputs; deterministic.

    Iterative DFS (graphs of 10^4+ ops exceed Python's recursion limit). A
    parameter-less value that is not in ``params`` is a free variable: error."""
    order: list[Op] = []
    done: set[int] = set()
    param_ids = {id(p) for p in params}
    for r in results:
        op = r.op
        if op is None:
            if id(r) not in param_ids and not allow_free:
                raise _free_variable(r)
            continue
        if id(op) in done or id(r) in param_ids:
            continue
        done.add(id(op))
        # parallel stacks of ops and of iterators over their inputs: resuming a
        # partly consumed iterator is the cheapest DFS step in CPython
        stack, its = [op], [iter(op.inputs)]
        while stack:
            for v in its[-1]:
                p = v.op
                if p is None or id(v) in param_ids:
                    if p is None and id(v) not in param_ids and not allow_free:
                        raise _free_variable(v, stack[-1])
                    continue
                if id(p) not in done:
                    done.add(id(p))
                    stack.append(p)
                    its.append(iter(p.inputs))
                    break
            else:
                its.pop()
                order.append(stack.pop())
    return order


def _free_variable(v: Value, user: Op | None = None) -> VerifyError:
    where = f" used by {user.opdef.name}" if user is not None else ""
    loc = format_loc(user.loc) if user is not None else ""
    return VerifyError(f"value {v.name or '<unnamed>'} ({v.type}){where} is not a parameter of the "
                       f"function: list it among the inputs" + (f" (at {loc})" if loc else ""))


class Region:
    """A nested body (block parameters, ops, yielded results) for control-flow ops."""

    __slots__ = ("params", "results", "ops")

    def __init__(self, params: Sequence[Value], results: Sequence[Value]):
        self.params = tuple(params)
        self.results = tuple(results)
        self.ops = toposort(self.results, self.params)


class Function(Region):
    """A named SSA function: parameters in, results out."""

    __slots__ = ("name",)

    def __init__(self, params: Sequence[Value], results: Sequence[Value], name: str = "main"):
        super().__init__(params, results)
        self.name = name

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    def __str__(self):
        from .printer import print_function
        return print_function(self)

    def __eq__(self, other):
        return isinstance(other, Function) and str(self) == str(other)

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<Function @{self.name}: {len(self.params)} params, {len(self.ops)} ops, {len(self.results)} results>"

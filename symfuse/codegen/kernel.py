"""The kernel record: what lowering one fused group produces (``lower.py``) and
what each renderer turns into code (``render_c.CRenderer``,
``render_cuda.CudaRenderer``).

A ``Kernel`` is plain frozen data: its loop nest, index expressions already
written out, the scalar statements, the reduction, the library call, and its
buffers described by dtype, size and role. It holds no IR object, so one
record serves every target and nothing below lowering looks at the graph. The
scalar language of the statements is C (valid CUDA C++ too): ``c_type`` is the
one mapping from a dtype to its C element type.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple


def c_type(dtype) -> str:
    """C element type of a dtype (numpy bools are one byte: uint8_t)."""
    if dtype.is_bool:
        return "uint8_t"
    if dtype.name == "float16":
        return "_Float16"
    return dtype.c_type


def c_literal(x, dtype) -> str:
    """``x`` as a C expression of ``dtype``'s type (a cast literal)."""
    if dtype.is_float:
        f = float(x)
        if math.isnan(f):
            return "NAN"
        if math.isinf(f):
            return "INFINITY" if f > 0 else "(-INFINITY)"
        return f"(({c_type(dtype)}){f!r})"
    if dtype.is_bool:
        return "1" if x else "0"
    return f"(({c_type(dtype)}){int(x)})"


def _float_literal(x, dtype) -> str:
    """A float constant as a C literal (``0.5f`` for float32)."""
    f = float(x)
    if math.isnan(f):
        return "NAN"
    if math.isinf(f):
        return "INFINITY" if f > 0 else "(-INFINITY)"
    return repr(f) + ("f" if dtype.name == "float32" else "")


def value_literal(x, dtype) -> str:
    """A Python number converted to ``dtype`` as numpy's np.full would."""
    if dtype.is_bool:
        return "1" if x else "0"
    if dtype.is_float:
        return _float_literal(x, dtype)
    return f"(({c_type(dtype)}){int(x)})"


# A fused kernel's body is a list of statements kept as data: the C renderer prints
# them, and the CUDA renderer re-emits them per vector lane without parsing C.
@dataclass(frozen=True)
class Load:
    """``const ctype var = buf[index];``"""
    ctype: str
    var: str
    buf: str
    index: str

    def __str__(self):
        return f"const {self.ctype} {self.var} = {self.buf}[{self.index}];"


@dataclass(frozen=True)
class Compute:
    """``const ctype var = (ctype)template(args);``: an op's scalar expression
    (``{0}``, ``{1}``, ... its operands, variables or literals; ``{T}`` the type)."""
    ctype: str
    var: str
    template: str
    args: tuple
    cast: bool = True                 # converted to ctype (an op's result); False: a plain alias

    def renamed(self, rename: dict) -> "Compute":
        return Compute(self.ctype, rename.get(self.var, self.var), self.template,
                       tuple(rename.get(a, a) for a in self.args), self.cast)

    def __str__(self):
        T = self.ctype
        return f"const {T} {self.var} = {f'({T})' if self.cast else ''}{self.template.format(*self.args, T=T)};"


@dataclass(frozen=True)
class Store:
    """``buf[index] = var;``"""
    buf: str
    index: str
    var: str

    def __str__(self):
        return f"{self.buf}[{self.index}] = {self.var};"


class Loop(NamedTuple):
    """One loop of a nest: its variable and trip count."""
    var: str
    size: int


@dataclass(frozen=True)
class Buffer:
    """A kernel parameter: ``in<k>`` (read) or ``out<k>`` (written)."""
    name: str
    dtype: object                     # ir.types.DType
    size: int                         # elements
    role: str                         # "input" | "output"

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass(frozen=True)
class Reduction:
    """How a reduce kernel combines: ``acc`` starts at ``init`` and takes each
    element ``x`` by ``combine``; the kept dims are ``oloops`` (one output
    each), the reduced ones ``rloops``; the ``epilogue`` statements run once
    per output on ``red`` (the accumulator in the output type), and ``result``
    is what is stored at ``out_index``."""
    op: str                           # sum | prod | max | min
    size: int                         # reduced elements per output
    acc_type: str
    init: str
    combine: str
    out_type: str
    oloops: tuple[Loop, ...]
    rloops: tuple[Loop, ...]
    input_index: str                  # flat input index in the loop variables
    out_index: str                    # flat output index in the kept loop variables
    epilogue: tuple = ()
    result: str = "red"


@dataclass(frozen=True)
class Part:
    """One part of a multi kernel, wired to the multi kernel's parameters:
    ``inputs[j]`` / ``outputs[j]`` is the parent's parameter index of the
    part's ``in<j>`` / ``out<j>``."""
    kernel: "Kernel"
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class LibraryCall:
    """A library op as the target's library table lowered it: the C runtime's
    ``call`` (and the shape-specialised ``helpers`` it passes, ``c_library.Helper``),
    or the CUDA ``launches`` (``cuda_library.Launch``, run in order) with the
    device ``scratch_bytes`` they share. ``precompiled``: every launch runs a
    kernel of the precompiled CUDA library."""
    op: str
    call: str = ""
    helpers: tuple = ()
    launches: tuple = ()
    scratch_bytes: int = 0
    precompiled: bool = False
    wait: str = ""              # a collective started here: the statement that completes it (c_collective)
    collective: bool = False


@dataclass(frozen=True)
class Kernel:
    """One fused group, lowered. ``kind`` says which fields are set:
    pointwise (``loops``, ``flat``, ``stmts`` ending in the stores), reduce
    (``stmts`` the reduction loop's body, ``reduction``), multi (``parts``),
    library (``library``)."""
    name: str
    kind: str
    fused_ops: tuple[str, ...]        # op names of the group, schedule order
    provenance: tuple[str, ...]       # "op type  (file:line)" per fused op
    inputs: tuple[Buffer, ...]
    outputs: tuple[Buffer, ...]
    size: int                         # output elements (multi: the parts' sum)
    bytes_read: int                   # of the distinct buffers read
    bytes_written: int
    loops: tuple[Loop, ...] = ()
    flat: str = "i"
    stmts: tuple = ()
    reduction: Reduction | None = None
    parts: tuple[Part, ...] = ()
    library: LibraryCall | None = None

    @property
    def scratch_bytes(self) -> int:
        """Device scratch memory the kernel needs while it runs (a CUDA library op's)."""
        return self.library.scratch_bytes if self.library is not None else 0

    @property
    def space(self) -> int:
        """Points of the iteration space (a reduction's input elements)."""
        return self.size * self.reduction.size if self.reduction is not None else self.size

    def named(self, name: str) -> "Kernel":
        """The same kernel called ``name`` (its parts ``<name>_p<j>``)."""
        parts = tuple(dataclasses.replace(p, kernel=p.kernel.named(f"{name}_p{j}")) for j, p in enumerate(self.parts))
        return dataclasses.replace(self, name=name, parts=parts)

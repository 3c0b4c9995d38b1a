"""Lowering table for the CUDA runtime library (``symfuse/templates/cuda/runtime.cuh``).

``CUDA_LIBRARY[op_name](op, ins, outs, hints) -> Lowering`` covers exactly the
ops of ``c_library.LIBRARY``, with the same argument conventions:

* ``ins`` / ``outs`` are C expressions naming the operand / result pointers.
  The caller emits one ``extern "C" __global__`` kernel per :class:`Launch`
  whose parameters are ``in0, in1, ...`` (``const T* __restrict__``), then
  ``out0, ...`` (``T* __restrict__``) and, when ``Lowering.scratch_bytes > 0``,
  ``char* __restrict__ scratch`` last; ``Launch.body`` is that kernel's body
  (one braced block calling a ``__device__`` template of runtime.cuh). Element
  types are ``c_library.c_type`` (bool is ``uint8_t``).
* ``hints`` is optional; matmul reads ``trans_a`` / ``trans_b`` / ``a_shape`` /
  ``b_shape`` exactly as c_library does. Tuning hints (tests use them to reach
  every path): ``tile`` (32 or 64: GEMM tile of matmul / conv), ``splits``
  (split-K count of conv2d_grad_weight), ``rowwise`` ("warp", "block" or
  "column": the softmax-family scheme), ``arg`` (argmax/argmin scheme, same
  names).
* Launches run in order on one stream (stages of one op). ``scratch_bytes`` of
  device memory is needed during them (the caller allocates it, 16-byte
  aligned); it holds split-K partial sums of conv2d_grad_weight and the window
  argmaxes of max_pool2d_grad. An empty result gives no launches.

Launch shapes are decided here and written into the body as literals: every
size is a literal argument (so index arithmetic is by constants), tile sizes
and dimension counts are template arguments, and the index type is ``int``
when every extent of the op fits comfortably in 31 bits, else ``int64_t``.
The GEMM-class, pooling, one_hot and warp-per-row softmax-family launches also
carry ``Launch.lib``: the same work as a kernel of the precompiled library
(``LIB_KERNELS``; sizes and fast-divmod magic as scalar kernel arguments), which
the backends launch instead when it exists (float32, ``int`` indexing; the
softmax family for the (values per lane, lanes) of ``LIB_ROWWISE``).
Element-wise style kernels (copies, pooling, gathers, random) use 256-thread
blocks, one element per thread, with the grid capped at ``GRID_CAP`` blocks
(the kernels loop grid-stride, so any grid is correct); a copy that is a
transpose (unit source stride on another dim than the innermost) goes through
32x32 shared-memory tiles with (32, 8) blocks. GEMMs (matmul, the
three convolutions as implicit GEMMs: patches are gathered into shared-memory
tiles on the fly, no im2col buffer) use 256 threads on a 64x64 tile (4x4 per
thread, BK = 16, next tile prefetched into registers) when that gives at least
``SM_COUNT`` tiles, else a 32x32 tile (2x2), with the tiles on grid.x and
batches / groups (x split-K splits) on grid.z. conv2d_grad_weight reduces over
N*HO*WO; with few output tiles that reduction is split into contiguous ranges
(a first launch writes one partial dw per range into scratch, a second adds
them in range order: deterministic).
The softmax family runs a warp per row for rows up to 1024 elements (512 for
float64; rows shorter than 32 get a group of 2..16 lanes of a warp), a block
per row above that, and a thread per column for strided rows (inner > 1) with
many columns. No kernel uses float atomics: results do not depend on the
schedule.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

from .c_library import _collapse, _split, _value_lit, c_type
from .index import row_major_strides

INCLUDE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates", "cuda")
RUNTIME_HEADER = os.path.join(INCLUDE_DIR, "runtime.cuh")

BLOCK = 256                 # threads of element-wise style kernels
GRID_CAP = 4096             # blocks of grid-stride kernels (a few waves on the largest GPUs)
SM_COUNT = 132              # H100/H200: tile-count heuristics aim at a full wave
MAX_GRID_YZ = 65535
INT_LIMIT = 1 << 30         # extents up to this use 32-bit indexing
GEMM_TILES = {64: (64, 64, 16, 4, 4), 32: (32, 32, 16, 2, 2)}   # BM, BN, BK, TM, TN (256 threads)
WARP_ROW_MAX = {"float": 1024, "double": 512}   # longest row a warp keeps in registers (32 / 16 a lane)
ROW_BLOCK = 512             # threads of a block-per-row kernel
ARG_BLOCK = 1024


@dataclass
class LibCall:
    """The same launch as a kernel of the precompiled library: its name in
    ``LIB_KERNELS`` and the scalar arguments after the pointers, (value, C type)."""
    kernel: str
    args: list[tuple[int, str]]


@dataclass
class Launch:
    body: str                          # the body of an extern "C" __global__ kernel (see module doc)
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int = 0              # dynamic shared memory
    lib: LibCall | None = None         # set where a library kernel does the same with runtime sizes


@dataclass
class Lowering:
    launches: list[Launch] = field(default_factory=list)   # run in order
    scratch_bytes: int = 0             # device scratch needed during the launches


NUMERIC = ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64")


# =========================================================================== helpers
def _ctype(dtype) -> str:
    if dtype.name == "float16":
        raise NotImplementedError("the cuda backend has no float16 kernels yet")
    return c_type(dtype)


def _numeric(dtype, op) -> str:
    if dtype.name not in NUMERIC:
        raise NotImplementedError(f"the CUDA runtime has no {op.opdef.name} for {dtype}")
    return c_type(dtype)


def _float(dtype, op) -> str:
    if dtype.name not in ("float32", "float64"):
        raise NotImplementedError(f"the CUDA runtime implements {op.opdef.name} for float32/float64 only, "
                                  f"got {dtype}")
    return c_type(dtype)


def _itype(*sizes) -> str:
    """Index type for an op whose tensors / iteration spaces have these element counts."""
    return "int" if max([1, *[int(s) for s in sizes]]) <= INT_LIMIT else "int64_t"


def _cdiv(a, b) -> int:
    return -(-int(a) // int(b))


def _grid(total, block=BLOCK) -> tuple[int, int, int]:
    return (max(1, min(_cdiv(total, block), GRID_CAP)), 1, 1)


def _lits(xs) -> str:
    return ", ".join(str(int(x)) for x in xs)


def _arrays(itype, **arrays) -> str:
    """Local constant arrays (``const I name[n] = {...};``) for the call that follows."""
    return " ".join(f"const {itype} {name}[{len(v)}] = {{{_lits(v)}}};" for name, v in arrays.items())


def _one(body, grid, block) -> Lowering:
    return Lowering([Launch("{ " + body + " }", tuple(grid), tuple(block))])


def _empty(op) -> bool:
    return any(o.type.size == 0 for o in op.outputs)



def _elementwise(call: str, total: int, prelude: str = "") -> Lowering:
    return _one((prelude + " " if prelude else "") + call, _grid(total), (BLOCK, 1, 1))


# =========================================================================== GEMM configuration
def _gemm_tile(rows, cols, nz, hints) -> tuple[int, int, int, int, int]:
    t = hints.get("tile")
    if t is None:
        t = 64 if _cdiv(rows, 64) * _cdiv(cols, 64) * nz >= SM_COUNT else 32
    return GEMM_TILES[int(t)]


def _gemm_launch(body, rows, cols, nz, cfg) -> Launch:
    bm, bn, _, tm, tn = cfg
    tiles = _cdiv(rows, bm) * _cdiv(cols, bn)
    return Launch("{ " + body + " }", (max(1, min(tiles, (1 << 31) - 1)), 1, max(1, min(nz, MAX_GRID_YZ))),
                  ((bm // tm) * (bn // tn), 1, 1))


def _cfg_args(cfg) -> str:
    return _lits(cfg)


# =========================================================================== the precompiled library
# NVRTC spends 0.1-0.25 s on each shape-specialised tiled GEMM / implicit-GEMM
# convolution, so these (and the split-K sum that follows a split grad-weight)
# also exist as kernels whose sizes are kernel arguments, compiled once per
# installation, NVRTC and arch (runtime/cuda_runtime.py) like cuBLAS/CUTLASS
# kernels; only element type, index type, tile and transposition flags are
# template arguments. Sizes divide indices through SfFastDiv (magic numbers
# from fast_divmod). What the table below does not hold (float64, 64-bit
# indexing, matmul batches of more than LIB_MATMUL_ND collapsed dims) keeps
# the shape-specialised body: every Launch has one, ``lib`` is the alternative.
KINDS = {"softmax": 0, "log_softmax": 1, "logsumexp": 2, "softmax_xent": 3}   # sf_rowwise_* KIND
KIND_NAMES = {v: k for k, v in KINDS.items()}
LIB_MATMUL_ND = 3           # batch dims of the library matmul (fewer are padded with size-1 dims)
LIB_TYPES = {("float", "int"): "f32"}     # (T, I) the library is instantiated for -> name tag
# scalar kernel arguments of each family after the pointers: (ints, divisors); a
# divisor is three arguments, name_d (int), name_m and name_s (unsigned).
CONV_ARGS = (("N", "C", "H", "W", "O", "KH", "KW", "SH", "SW", "PH", "PW", "DH", "DW", "G", "HO", "WO", "kper"),
             ("ntl", "HOWO", "dWO", "HW", "dW", "KK", "dKW", "dSH", "dSW", "S"))   # SfConvShape field order
POOL_ARGS = (("planes", "H", "W", "KH", "KW", "SH", "SW", "PH", "PW", "HO", "WO"),
             ("dWO", "dHO", "HW", "dW", "dSH", "dSW"))                         # SfPoolShape field order
LIB_ARGS = {
    "matmul": (("M", "N", "K") + tuple(f"as{d}" for d in range(LIB_MATMUL_ND)) +
               tuple(f"bs{d}" for d in range(LIB_MATMUL_ND)), ("ntl",) + tuple(f"b{d}" for d in range(LIB_MATMUL_ND))),
    "conv2d": CONV_ARGS, "conv2d_grad_input": CONV_ARGS, "conv2d_grad_weight": CONV_ARGS,
    "sum_partials": (("count", "S"), ()),
    "max_pool2d": POOL_ARGS, "max_pool2d_argmax": POOL_ARGS, "max_pool2d_grad": POOL_ARGS,
    "avg_pool2d": POOL_ARGS, "avg_pool2d_grad": POOL_ARGS,
    "rowwise_warp": (("rows", "n", "inner"), ()), "one_hot": (("m", "depth"), ()),
}
# (elements per lane, lanes) of the warp-per-row softmax-family kernels in the library:
# rows of up to 256 elements (NVRTC took ~28 ms on each of these; a model's classifier
# head is one or two of them); longer rows get a shape-specialised kernel
LIB_ROWWISE = ((1, 2), (1, 4), (1, 8), (1, 16), (1, 32), (2, 32), (4, 32), (8, 32))
LIB_ONE_HOT_INDEX = ("int32_t", "int64_t")
# tensor operands of each family (the op's inputs, in order; default 2)
LIB_INPUTS = {"max_pool2d": 1, "avg_pool2d": 1, "avg_pool2d_grad": 1, "max_pool2d_argmax": 3, "max_pool2d_grad": 3,
              "one_hot": 1}
LIB_SCRATCH = {"conv2d_grad_weight", "sum_partials", "max_pool2d_argmax", "max_pool2d_grad"}  # (null when unused)
LIB_POOL = {"max_pool2d", "max_pool2d_argmax", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad"}
LIB_GEMM = {"matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight"}


@dataclass(frozen=True)
class LibKernel:
    """One kernel of the precompiled library (``templates/cuda/lib_kernel.cu.j2``)."""
    family: str                 # a LIB_ARGS key
    T: str = "float"
    I: str = "int"
    tile: int = 0               # GEMM_TILES key (GEMM families)
    ta: bool = False            # matmul: A / B buffers hold the transposes
    tb: bool = False
    kind: int = 0               # rowwise_warp: the KINDS value
    per: int = 0                # rowwise_warp: elements per lane, lanes per row (LIB_ROWWISE)
    lanes: int = 0
    index: str = ""             # one_hot: C type of the indices

    @property
    def name(self) -> str:
        tag = LIB_TYPES[(self.T, self.I)]
        if self.family == "rowwise_warp":
            return f"sf_lib_{KIND_NAMES[self.kind]}_warp_{tag}_l{self.lanes}p{self.per}"
        if self.family == "one_hot":
            return f"sf_lib_one_hot_{tag}_{self.index.replace('_t', '')}"
        tile = f"_t{self.tile}" if self.tile else ""
        trans = f"_{'t' if self.ta else 'n'}{'t' if self.tb else 'n'}" if self.family == "matmul" else ""
        return f"sf_lib_{self.family}_{tag}{tile}{trans}"

    @property
    def cfg(self) -> str:
        return _cfg_args(GEMM_TILES[self.tile]) if self.tile else ""

    @property
    def scratch(self) -> bool:
        return self.family in LIB_SCRATCH

    @property
    def n_inputs(self) -> int:
        if self.family == "rowwise_warp":
            return 2 if self.kind == KINDS["softmax_xent"] else 1
        return LIB_INPUTS.get(self.family, 2)

    @property
    def params(self) -> list[tuple[str, str]]:
        """(C type, name) of the scalar arguments, in order."""
        ints, divs = LIB_ARGS[self.family]
        return [("int", n) for n in ints] + [p for n in divs for p in
                                             (("int", f"{n}_d"), ("unsigned", f"{n}_m"), ("unsigned", f"{n}_s"))]

    @property
    def signature(self) -> str:
        ptrs = [f"const {self.index or self.T}* __restrict__ in0"] + \
               [f"const {self.T}* __restrict__ in{j}" for j in range(1, self.n_inputs)] + \
               [f"{self.T}* __restrict__ out0"] + (["char* __restrict__ scratch"] if self.scratch else [])
        return ", ".join(ptrs + [f"{t} {n}" for t, n in self.params])

    @property
    def shape_init(self) -> str:
        """The SfConvShape / SfPoolShape initialiser from the kernel's arguments."""
        ints, divs = LIB_ARGS[self.family]
        return ", ".join(list(ints) + [f"SF_FASTDIV({n})" for n in divs])


LIB_KERNELS: dict[str, LibKernel] = {k.name: k for k in (
    [LibKernel("matmul", T, I, t, ta, tb) for (T, I) in LIB_TYPES for t in GEMM_TILES
     for ta in (False, True) for tb in (False, True)] +
    [LibKernel(f, T, I, t) for (T, I) in LIB_TYPES for f in ("conv2d", "conv2d_grad_input", "conv2d_grad_weight")
     for t in GEMM_TILES] +
    [LibKernel(f, T, I) for (T, I) in LIB_TYPES for f in ["sum_partials", *sorted(LIB_POOL)]] +
    [LibKernel("rowwise_warp", T, I, kind=kind, per=per, lanes=lanes) for (T, I) in LIB_TYPES
     for kind in sorted(KIND_NAMES) for per, lanes in LIB_ROWWISE] +
    [LibKernel("one_hot", T, I, index=ix) for (T, I) in LIB_TYPES for ix in LIB_ONE_HOT_INDEX])}


def fast_divmod(d: int) -> tuple[int, int]:
    """(mul, shift) with n // d == umulhi(2n, mul) >> shift for 0 <= n < 2**31,
    1 <= d <= 2**31 (SfFastDiv in runtime.cuh): shift = ceil(log2 d) and mul =
    ceil(2**(31 + shift) / d) < 2**32; the rounding error mul*d - 2**(31+shift)
    is below d, so it never reaches the next multiple of d for n < 2**31."""
    d = int(d)
    if not 1 <= d <= 1 << 31:
        raise ValueError(f"fast_divmod: divisor {d} out of range")
    shift = (d - 1).bit_length()
    return -(-(1 << (31 + shift)) // d), shift


def _lib_call(k: LibKernel, vals: dict) -> LibCall | None:
    """The launch as a library call, or None when the library has no such kernel
    (another element or index type)."""
    if (k.T, k.I) not in LIB_TYPES or k.name not in LIB_KERNELS:
        return None
    ints, divs = LIB_ARGS[k.family]
    args = [(int(vals[n]), "int") for n in ints]
    for n in divs:
        d = int(vals[n])
        mul, shift = fast_divmod(max(d, 1))
        args += [(d, "int"), (mul, "unsigned"), (shift, "unsigned")]
    return LibCall(k.name, args)


# =========================================================================== matmul
def lower_matmul(op, ins, outs, hints, acc: str = "") -> Lowering:
    """``acc``: for gemm, the extra arguments ``Z, alpha, beta`` of sf_matmul's
    accumulating store (shape-specialised only: the library has no such kernel)."""
    a_t, b_t = op.inputs[0].type, op.inputs[1].type
    ta, tb = bool(hints.get("trans_a", False)), bool(hints.get("trans_b", False))
    a_shape = tuple(hints.get("a_shape") or a_t.shape)
    b_shape = tuple(hints.get("b_shape") or b_t.shape)

    def logical(shape, t):
        return shape[:-2] + (shape[-1], shape[-2]) if t else shape

    if logical(a_shape, ta) != a_t.shape or logical(b_shape, tb) != b_t.shape:
        raise ValueError(f"matmul hints {hints} do not match operands {a_t} @ {b_t}")
    T = _numeric(op.outputs[0].type.dtype, op)
    if _empty(op):
        return Lowering()
    M, K = a_t.shape[-2:]
    N = b_t.shape[-1]
    batch = op.outputs[0].type.shape[:-2]
    nbd = len(batch)

    def batch_strides(shape):
        bs = (1,) * (nbd - (len(shape) - 2)) + shape[:-2]
        st = row_major_strides(bs)
        mat = shape[-2] * shape[-1]
        return [0 if d == 1 else s * mat for d, s in zip(bs, st)]

    bshape, ast, bst = _collapse(batch, batch_strides(a_shape), batch_strides(b_shape))
    if len(bshape) == 1 and not ta and bst[0] == 0 and ast[0] == M * K:
        M, bshape, ast, bst = M * bshape[0], [], [], []   # shared B: one gemm over all rows of A
    if not bshape:
        bshape, ast, bst = [1], [0], [0]
    nb = math.prod(bshape)
    I = _itype(a_t.size, b_t.size, op.outputs[0].type.size, nb * M * N)
    cfg = _gemm_tile(M, N, nb, hints)
    nd = len(bshape)
    ntl = _cdiv(N, cfg[1])
    body = (f"const SfDivLit<{I}> sf_bd[{nd}] = {{{', '.join('{%d}' % d for d in bshape)}}}; " +
            _arrays(I, sf_as=ast, sf_bst=bst) +
            f" sf_matmul<{T}, {I}, {_cfg_args(cfg)}, {str(ta).lower()}, {str(tb).lower()}, {nd}>"
            f"({ins[0]}, {ins[1]}, {outs[0]}, {M}, {N}, {K}, sf_bd, sf_as, sf_bst, SfDivLit<{I}>{{{ntl}}}{acc});")
    launch = _gemm_launch(body, M, N, nb, cfg)
    if nd <= LIB_MATMUL_ND and not acc:
        pad = LIB_MATMUL_ND - nd
        bshape, ast, bst = [1] * pad + list(bshape), [0] * pad + list(ast), [0] * pad + list(bst)
        vals = dict(M=M, N=N, K=K, ntl=ntl, **{f"as{d}": ast[d] for d in range(LIB_MATMUL_ND)},
                    **{f"bs{d}": bst[d] for d in range(LIB_MATMUL_ND)},
                    **{f"b{d}": bshape[d] for d in range(LIB_MATMUL_ND)})
        launch.lib = _lib_call(LibKernel("matmul", T, I, cfg[0], ta, tb), vals)
    return Lowering([launch])


def lower_gemm(op, ins, outs, hints) -> Lowering:
    """C = alpha * A @ B + beta * Z (formed by the cpu backend's BLAS lowering,
    or written in IR text): the tiled GEMM with an accumulating store."""
    T = _float(op.outputs[0].type.dtype, op)
    if _empty(op) and op.outputs[0].type.size:     # an empty contraction: C = beta * Z
        n = op.outputs[0].type.size
        return _elementwise(f"sf_scale<{T}, {_itype(n)}>({ins[2]}, {outs[0]}, {n}, ({T}){float(op.attrs['beta'])!r});",
                            n)
    alpha, beta = (f"({T}){float(op.attrs[k])!r}" for k in ("alpha", "beta"))
    return lower_matmul(op, ins, outs, hints, acc=f", {ins[2]}, {alpha}, {beta}")


# =========================================================================== softmax family
def _rowwise_scheme(outer, n, inner, T, hints) -> str:
    s = hints.get("rowwise")
    if s is not None:
        return s
    if inner > 1 and (outer * inner >= 2048 or n < 32):
        return "column"
    return "warp" if n <= WARP_ROW_MAX[T] else "block"


def _rowwise(name):
    kind = KINDS[name]

    def lower(op, ins, outs, hints) -> Lowering:
        x = op.inputs[0].type
        T = _float(x.dtype, op)
        if _empty(op) or x.size == 0:
            return Lowering()
        outer, n, inner = _split(x.shape, op.attrs["axis"])
        rows = outer * inner
        I = _itype(x.size)
        t = ins[1] if kind == 3 else "(const " + T + "*)0"
        args = f"({ins[0]}, {t}, {outs[0]}, {rows}, {n}, {inner})"
        scheme = _rowwise_scheme(outer, n, inner, T, hints)
        if scheme == "warp":
            if n > WARP_ROW_MAX[T]:
                raise ValueError(f"warp-per-row {name} keeps at most {WARP_ROW_MAX[T]} elements of {T}, got {n}")
            lanes = 32 if n >= 32 else 1 << max(1, (n - 1).bit_length())   # short rows: a group of lanes
            per = _cdiv(n, lanes)
            rows_per_block = (BLOCK // 32) * (32 // lanes)
            low = _one(f"sf_rowwise_warp<{kind}, {T}, {I}, {per}, {lanes}>{args};",
                       (max(1, min(_cdiv(rows, rows_per_block), GRID_CAP)), 1, 1), (BLOCK, 1, 1))
            low.launches[0].lib = _lib_call(LibKernel("rowwise_warp", T, I, kind=kind, per=per, lanes=lanes),
                                            dict(rows=rows, n=n, inner=inner))
            return low
        if scheme == "block":
            threads = ROW_BLOCK if n >= ROW_BLOCK else max(32, _cdiv(n, 32) * 32)
            return _one(f"sf_rowwise_block<{kind}, {T}, {I}>{args};", (max(1, min(rows, GRID_CAP)), 1, 1),
                        (threads, 1, 1))
        if scheme == "column":
            return _one(f"sf_rowwise_column<{kind}, {T}, {I}>{args};", _grid(rows), (BLOCK, 1, 1))
        raise ValueError(f"unknown rowwise scheme {scheme!r}")
    return lower


# =========================================================================== convolution
def _conv_values(xs, ws, ys, a, ntl, splits=1, kper=0) -> dict:
    """The SfConvShape fields (sizes and divisors; runtime.cuh) by name."""
    n, c, h, w = xs
    o, _, kh, kw = ws
    ho, wo = ys[2:]
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    return dict(N=n, C=c, H=h, W=w, O=o, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, DH=dh, DW=dw, G=a["groups"],
                HO=ho, WO=wo, kper=kper, ntl=ntl, HOWO=ho * wo, dWO=wo, HW=h * w, dW=w, KK=kh * kw, dKW=kw, dSH=sh,
                dSW=sw, S=splits)


def _conv_shape(I, vals) -> str:
    """The shape-specialised kernel's SfConvShape: every size and divisor a literal."""
    ints = ", ".join(str(int(vals[n])) for n in CONV_ARGS[0])
    divs = ", ".join("{%d}" % int(vals[n]) for n in CONV_ARGS[1])
    return f"const SfConvShape<{I}, SfDivLit<{I}>> sf_cs = {{{ints}, {divs}}};"


def _conv_launch(family, T, I, cfg, vals, call, rows, cols, nz, hints) -> Launch:
    launch = _gemm_launch(_conv_shape(I, vals) + " " + call, rows, cols, nz, cfg)
    launch.lib = _lib_call(LibKernel(family, T, I, cfg[0]), vals)
    return launch


def lower_conv2d(op, ins, outs, hints) -> Lowering:
    x, w = op.inputs
    y = op.outputs[0]
    T = _float(x.type.dtype, op)
    if _empty(op):
        return Lowering()
    n, c = x.shape[:2]
    o = w.shape[0]
    g = op.attrs["groups"]
    ho, wo = y.shape[2:]
    kk = w.shape[2] * w.shape[3]
    I = _itype(x.type.size, w.type.size, y.type.size, (c // g) * kk * n * ho * wo)
    cfg = _gemm_tile(o // g, n * ho * wo, g, hints)
    vals = _conv_values(x.shape, w.shape, y.shape, op.attrs, _cdiv(n * ho * wo, cfg[1]))
    call = f"sf_conv2d<{T}, {I}, {_cfg_args(cfg)}>({ins[0]}, {ins[1]}, {outs[0]}, sf_cs);"
    return Lowering([_conv_launch("conv2d", T, I, cfg, vals, call, o // g, n * ho * wo, g, hints)])


def lower_conv2d_grad_input(op, ins, outs, hints) -> Lowering:
    gy, w = op.inputs
    T = _float(gy.type.dtype, op)
    if _empty(op):
        return Lowering()
    xs = op.attrs["input_shape"]
    n, c, h, wd = xs
    g = op.attrs["groups"]
    I = _itype(gy.type.size, w.type.size, math.prod(xs))
    cfg = _gemm_tile(c // g, n * h * wd, g, hints)
    vals = _conv_values(xs, w.shape, gy.shape, op.attrs, _cdiv(n * h * wd, cfg[1]))
    call = f"sf_conv2d_grad_input<{T}, {I}, {_cfg_args(cfg)}>({ins[0]}, {ins[1]}, {outs[0]}, sf_cs);"
    return Lowering([_conv_launch("conv2d_grad_input", T, I, cfg, vals, call, c // g, n * h * wd, g, hints)])


def lower_conv2d_grad_weight(op, ins, outs, hints) -> Lowering:
    x, gy = op.inputs
    T = _float(x.type.dtype, op)
    if _empty(op):
        return Lowering()
    ws = op.attrs["weight_shape"]
    o, ci, kh, kw = ws
    g = op.attrs["groups"]
    n, _, ho, wo = gy.shape
    og, r, nq = o // g, ci * kh * kw, n * ho * wo
    cfg = _gemm_tile(og, r, g, hints)
    bm, bn, bk = cfg[:3]
    tiles = _cdiv(og, bm) * _cdiv(r, bn) * g
    nkt = _cdiv(nq, bk)
    splits = hints.get("splits")
    if splits is None:
        splits = 1
        if tiles < 2 * SM_COUNT:      # too few tiles for the GPU: split the long reduction
            splits = max(1, min(_cdiv(2 * SM_COUNT, tiles), nkt // 8, 64))
    splits = max(1, min(int(splits), max(nkt, 1)))
    kper = _cdiv(max(nkt, 1), splits) * bk
    splits = max(1, _cdiv(nq, kper))
    wsize = o * r
    I = _itype(x.type.size, gy.type.size, splits * wsize, nq * max(og, r))
    vals = _conv_values(x.shape, ws, gy.shape, op.attrs, _cdiv(r, bn), splits, kper)
    dst = f"({T}*)scratch" if splits > 1 else outs[0]
    call = f"sf_conv2d_grad_weight<{T}, {I}, {_cfg_args(cfg)}>({ins[0]}, {ins[1]}, {dst}, sf_cs);"
    launches = [_conv_launch("conv2d_grad_weight", T, I, cfg, vals, call, og, r, g * splits, hints)]
    if splits == 1:
        return Lowering(launches)
    total = Launch(f"{{ sf_sum_partials<{T}, {I}>((const {T}*)scratch, {outs[0]}, {wsize}, {splits}); }}",
                   _grid(wsize), (BLOCK, 1, 1))
    total.lib = _lib_call(LibKernel("sum_partials", T, I), dict(count=wsize, S=splits))
    launches.append(total)
    return Lowering(launches, scratch_bytes=splits * wsize * x.type.dtype.itemsize)


# =========================================================================== pooling
def _pool_values(xs, ys, a) -> dict:
    """The SfPoolShape fields (sizes and divisors; runtime.cuh) by name."""
    n, c, h, w = xs
    ho, wo = ys[2:]
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    return dict(planes=n * c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo,
                dWO=wo, dHO=ho, HW=h * w, dW=w, dSH=sh, dSW=sw)


def _pool_shape(I, vals) -> str:
    """The shape-specialised kernel's SfPoolShape: every size and divisor a literal."""
    ints = ", ".join(str(int(vals[n])) for n in POOL_ARGS[0])
    divs = ", ".join("{%d}" % int(vals[n]) for n in POOL_ARGS[1])
    return f"const SfPoolShape<{I}, SfDivLit<{I}>> sf_ps = {{{ints}, {divs}}};"


def _pool_launch(family, T, I, vals, call, total) -> Launch:
    launch = Launch(f"{{ {_pool_shape(I, vals)} {call} }}", _grid(total), (BLOCK, 1, 1))
    launch.lib = _lib_call(LibKernel(family, T, I), vals)
    return launch


def lower_max_pool2d(op, ins, outs, hints) -> Lowering:
    x, y = op.inputs[0].type, op.outputs[0].type
    T = _float(x.dtype, op)
    if _empty(op):
        return Lowering()
    I = _itype(x.size, y.size)
    vals = _pool_values(x.shape, y.shape, op.attrs)
    return Lowering([_pool_launch("max_pool2d", T, I, vals, f"sf_max_pool2d<{T}, {I}>({ins[0]}, {outs[0]}, sf_ps);",
                                  y.size)])


def lower_max_pool2d_grad(op, ins, outs, hints) -> Lowering:
    x, _, g = (v.type for v in op.inputs)
    T = _float(x.dtype, op)
    if _empty(op):
        return Lowering()
    I = _itype(x.size, g.size)
    vals = _pool_values(x.shape, g.shape, op.attrs)
    stage1 = _pool_launch("max_pool2d_argmax", T, I, vals,
                          f"sf_max_pool2d_argmax<{T}, {I}>({ins[0]}, (int*)scratch, sf_ps);", g.size)
    stage2 = _pool_launch("max_pool2d_grad", T, I, vals,
                          f"sf_max_pool2d_grad<{T}, {I}>((const int*)scratch, {ins[2]}, {outs[0]}, sf_ps);", x.size)
    return Lowering([stage1, stage2], scratch_bytes=4 * g.size)


def lower_avg_pool2d(op, ins, outs, hints) -> Lowering:
    x, y = op.inputs[0].type, op.outputs[0].type
    T = _float(x.dtype, op)
    if _empty(op):
        return Lowering()
    I = _itype(x.size, y.size)
    vals = _pool_values(x.shape, y.shape, op.attrs)
    return Lowering([_pool_launch("avg_pool2d", T, I, vals, f"sf_avg_pool2d<{T}, {I}>({ins[0]}, {outs[0]}, sf_ps);",
                                  y.size)])


def lower_avg_pool2d_grad(op, ins, outs, hints) -> Lowering:
    g = op.inputs[0].type
    T = _float(g.dtype, op)
    if _empty(op):
        return Lowering()
    xs = op.attrs["input_shape"]
    I = _itype(g.size, math.prod(xs))
    vals = _pool_values(xs, g.shape, op.attrs)
    return Lowering([_pool_launch("avg_pool2d_grad", T, I, vals,
                                  f"sf_avg_pool2d_grad<{T}, {I}>({ins[0]}, {outs[0]}, sf_ps);", math.prod(xs))])


# =========================================================================== gather / one-hot
def lower_take(op, ins, outs, hints) -> Lowering:
    x, idx = (v.type for v in op.inputs)
    out = op.outputs[0].type
    T, Ii = _ctype(x.dtype), _ctype(idx.dtype)
    if _empty(op):
        return Lowering()
    pre, n, post = _split(x.shape, op.attrs["axis"])
    I = _itype(x.size, out.size)
    return _elementwise(f"sf_take<{T}, {Ii}, {I}>({ins[0]}, {ins[1]}, {outs[0]}, {pre}, {n}, {idx.size}, {post});",
                        out.size)


def lower_take_grad(op, ins, outs, hints) -> Lowering:
    g, idx = (v.type for v in op.inputs)
    out = op.outputs[0].type
    T, Ii = _float(g.dtype, op), _ctype(idx.dtype)
    if _empty(op):
        return Lowering()
    ax, n = op.attrs["axis"], op.attrs["size"]
    pre, post = math.prod(g.shape[:ax]), math.prod(g.shape[ax + idx.ndim:])
    I = _itype(g.size, out.size, idx.size)
    if post == 0 or pre == 0:
        return Lowering()
    v = max(1, min(4, _cdiv(post, 32)))
    warps = pre * n * _cdiv(post, 32 * v)
    wpb = BLOCK // 32
    return _one(f"sf_take_grad<{T}, {Ii}, {I}, {v}>({ins[0]}, {ins[1]}, {outs[0]}, {pre}, {n}, {idx.size}, {post});",
                (max(1, min(_cdiv(warps, wpb), GRID_CAP)), 1, 1), (BLOCK, 1, 1))


def lower_one_hot(op, ins, outs, hints) -> Lowering:
    idx, out = op.inputs[0].type, op.outputs[0].type
    T, Ii = _ctype(out.dtype), _ctype(idx.dtype)
    if _empty(op):
        return Lowering()
    I = _itype(out.size)
    low = _elementwise(f"sf_one_hot<{T}, {Ii}, {I}>({ins[0]}, {outs[0]}, {idx.size}, {op.attrs['depth']});",
                       out.size)
    low.launches[0].lib = _lib_call(LibKernel("one_hot", T, I, index=Ii), dict(m=idx.size, depth=op.attrs["depth"]))
    return low


# =========================================================================== argmax / argmin
def _arg(name):
    is_max = "true" if name == "argmax" else "false"

    def lower(op, ins, outs, hints) -> Lowering:
        x = op.inputs[0].type
        T = _numeric(x.dtype, op)
        ax = op.attrs["axis"]
        outer, n, inner = (1, x.size, 1) if ax is None else _split(x.shape, ax)
        rows = outer * inner
        if rows == 0:
            return Lowering()
        I = _itype(x.size)
        scheme = hints.get("arg")
        if scheme is None:
            if inner > 1 or n < 32:
                scheme = "column"
            elif n >= 8192 and outer < 2 * SM_COUNT:
                scheme = "block"
            else:
                scheme = "warp"
        if scheme == "column":
            return _one(f"sf_arg_column<{is_max}, {T}, {I}>({ins[0]}, {outs[0]}, {rows}, {n}, {inner});",
                        _grid(rows), (BLOCK, 1, 1))
        if inner != 1:
            raise ValueError(f"argmax scheme {scheme!r} needs contiguous rows")
        if scheme == "warp":
            wpb = BLOCK // 32
            return _one(f"sf_arg_warp<{is_max}, {T}, {I}>({ins[0]}, {outs[0]}, {rows}, {n});",
                        (max(1, min(_cdiv(rows, wpb), GRID_CAP)), 1, 1), (BLOCK, 1, 1))
        if scheme == "block":
            threads = min(ARG_BLOCK, max(32, _cdiv(n, 32) * 32))
            return _one(f"sf_arg_block<{is_max}, {T}, {I}>({ins[0]}, {outs[0]}, {rows}, {n});",
                        (max(1, min(rows, GRID_CAP)), 1, 1), (threads, 1, 1))
        raise ValueError(f"unknown argmax scheme {scheme!r}")
    return lower


# =========================================================================== random
def _seed(expr) -> str:
    return f"(uint32_t)(({expr})[0])"


def _random(name):
    def lower(op, ins, outs, hints) -> Lowering:
        out = op.outputs[0].type
        T = _float(out.dtype, op)
        if out.size == 0:
            return Lowering()
        I = _itype(out.size)
        return _elementwise(f"sf_{name}<{T}, {I}>({_seed(ins[0])}, {op.attrs['salt']}u, {outs[0]}, {out.size});",
                            out.size)
    return lower


def lower_random_bernoulli(op, ins, outs, hints) -> Lowering:
    out = op.outputs[0].type
    p = op.inputs[1].type
    T = _float(out.dtype, op)
    if p.dtype.name not in ("float32", "float64"):
        raise NotImplementedError(f"random_bernoulli: p must be float32/float64, got {p.dtype}")
    if out.size == 0:
        return Lowering()
    shape = out.shape
    ps = (1,) * (len(shape) - p.ndim) + p.shape
    pst = [0 if d == 1 else s for d, s in zip(ps, row_major_strides(ps))]
    oshape, pst = _collapse(shape, pst)
    if not oshape:
        oshape, pst = [1], [0]
    I = _itype(out.size)
    return _elementwise(f"sf_random_bernoulli<{T}, {c_type(p.dtype)}, {I}, {len(oshape)}>({_seed(ins[0])}, "
                        f"{op.attrs['salt']}u, {ins[1]}, {outs[0]}, {out.size}, sf_os, sf_pst);", out.size,
                        _arrays(I, sf_os=oshape, sf_pst=pst))


# =========================================================================== data movement
def _gather(T, src, dst, shape, sst) -> Lowering:
    """dst (contiguous, shape) = src read with element strides sst."""
    size = math.prod(shape)
    shape, sst, _ = _collapse(shape, sst, row_major_strides(shape))
    if not shape:
        shape, sst = [1], [1]
    I = _itype(size, sum(abs(s) * (d - 1) for s, d in zip(sst, shape)) + 1)
    if len(shape) == 1 and sst == [1]:
        return _elementwise(f"sf_copy<{T}, {I}>({src}, {dst}, {size});", size)
    if sst[-1] != 1 and sst[:-1].count(1) == 1 and shape[-1] >= 8 and shape[sst.index(1)] >= 8:
        b = sst.index(1)                  # a transpose: tile it through shared memory
        tiles = _cdiv(shape[-1], 32) * _cdiv(shape[b], 32) * (size // (shape[-1] * shape[b]))
        return _one(_arrays(I, sf_sh=shape, sf_st=sst) +
                    f" sf_transpose_tiled<{T}, {I}, {len(shape)}>({src}, {dst}, sf_sh, sf_st, {b});",
                    (max(1, min(tiles, GRID_CAP)), 1, 1), (32, 8, 1))
    return _elementwise(f"sf_gather_copy<{T}, {I}, {len(shape)}>({src}, {dst}, {size}, sf_sh, sf_st);", size,
                        _arrays(I, sf_sh=shape, sf_st=sst))


def _view(op, ins, outs, src_strides, base) -> Lowering:
    out = op.outputs[0].type
    T = _ctype(out.dtype)
    if out.size == 0:
        return Lowering()
    src = ins[0] if base == 0 else f"({ins[0]} + {base})"
    return _gather(T, src, outs[0], out.shape, src_strides)


def lower_transpose(op, ins, outs, hints) -> Lowering:
    st = row_major_strides(op.inputs[0].type.shape)
    return _view(op, ins, outs, [st[p] for p in op.attrs["perm"]], 0)


def lower_broadcast_to(op, ins, outs, hints) -> Lowering:
    x = op.inputs[0].type
    shape = op.outputs[0].type.shape
    xs = (1,) * (len(shape) - x.ndim) + x.shape
    return _view(op, ins, outs, [0 if d == 1 else s for d, s in zip(xs, row_major_strides(xs))], 0)


def lower_slice(op, ins, outs, hints) -> Lowering:
    st = row_major_strides(op.inputs[0].type.shape)
    a = op.attrs
    return _view(op, ins, outs, [s * k for s, k in zip(st, a["step"])], sum(b * s for b, s in zip(a["start"], st)))


def lower_flip(op, ins, outs, hints) -> Lowering:
    x = op.inputs[0].type
    st = row_major_strides(x.shape)
    axes = set(op.attrs["axes"])
    return _view(op, ins, outs, [-s if d in axes else s for d, s in enumerate(st)],
                 sum((x.shape[d] - 1) * st[d] for d in axes))


def lower_reshape(op, ins, outs, hints) -> Lowering:
    out = op.outputs[0].type
    T = _ctype(out.dtype)
    if out.size == 0:
        return Lowering()
    I = _itype(out.size)
    return _elementwise(f"sf_copy<{T}, {I}>({ins[0]}, {outs[0]}, {out.size});", out.size)


def lower_concatenate(op, ins, outs, hints) -> Lowering:
    out = op.outputs[0].type
    T = _ctype(out.dtype)
    if out.size == 0:
        return Lowering()
    ax = op.attrs["axis"]
    outer, total, inner = _split(out.shape, ax)
    I = _itype(out.size)
    cases, off, biggest = [], 0, 1
    for e, v in zip(ins, op.inputs):
        n = v.type.shape[ax]
        if n:
            cases.append(f"case {len(cases)}: sf_copy_rows<{T}, {I}>({e}, {outs[0]} + {off}, {outer}, {n * inner}, "
                         f"{total * inner}); break;")
            biggest = max(biggest, outer * n * inner)
        off += n * inner
    if len(cases) > MAX_GRID_YZ:
        raise NotImplementedError(f"concatenate of {len(cases)} operands")
    body = "switch (blockIdx.y) { " + " ".join(cases) + " default: break; }"
    return Lowering([Launch("{ " + body + " }", (_grid(biggest)[0], len(cases), 1), (BLOCK, 1, 1))])


def lower_pad(op, ins, outs, hints) -> Lowering:
    x, out = op.inputs[0].type, op.outputs[0].type
    T = _ctype(out.dtype)
    if out.size == 0:
        return Lowering()
    a = op.attrs
    value = _value_lit(a["value"], out.dtype)
    # dims as (out extent, lo, step, x extent); merge a dim into its outer neighbour when
    # the inner one is unpadded and the outer one has no interior padding
    dims = [(o, lo, i + 1, d) for o, lo, i, d in zip(out.shape, a["lo"], a["interior"], x.shape)
            if not (o == 1 and d == 1)]
    merged: list = []
    for o, lo, st, d in dims:
        if merged and o == d and lo == 0 and merged[-1][2] == 1:
            po, plo, pst, pd = merged[-1]
            merged[-1] = (po * o, plo * o, 1, pd * d)
        else:
            merged.append((o, lo, st, d))
    if not merged:
        merged = [(1, 0, 1, 1)]
    I = _itype(out.size, x.size + 1)
    arrs = _arrays(I, sf_os=[m[0] for m in merged], sf_lo=[m[1] for m in merged], sf_step=[m[2] for m in merged],
                   sf_xs=[m[3] for m in merged])
    return _elementwise(f"sf_pad<{T}, {I}, {len(merged)}>({ins[0]}, {outs[0]}, {out.size}, sf_os, sf_lo, sf_step, "
                        f"sf_xs, ({T})({value}));", out.size, arrs)


# =========================================================================== the table
CUDA_LIBRARY: dict[str, Callable] = {
    "matmul": lower_matmul,
    "gemm": lower_gemm,
    "softmax_xent": _rowwise("softmax_xent"),
    "softmax": _rowwise("softmax"),
    "log_softmax": _rowwise("log_softmax"),
    "logsumexp": _rowwise("logsumexp"),
    "conv2d": lower_conv2d,
    "conv2d_grad_input": lower_conv2d_grad_input,
    "conv2d_grad_weight": lower_conv2d_grad_weight,
    "max_pool2d": lower_max_pool2d,
    "max_pool2d_grad": lower_max_pool2d_grad,
    "avg_pool2d": lower_avg_pool2d,
    "avg_pool2d_grad": lower_avg_pool2d_grad,
    "one_hot": lower_one_hot,
    "take": lower_take,
    "take_grad": lower_take_grad,
    "argmax": _arg("argmax"),
    "argmin": _arg("argmin"),
    "random_uniform": _random("random_uniform"),
    "random_normal": _random("random_normal"),
    "random_bernoulli": lower_random_bernoulli,
    "concatenate": lower_concatenate,
    "pad": lower_pad,
    "transpose": lower_transpose,
    "broadcast_to": lower_broadcast_to,
    "slice": lower_slice,
    "flip": lower_flip,
    "reshape": lower_reshape,
}

__all__ = ["CUDA_LIBRARY", "Launch", "Lowering", "INCLUDE_DIR", "RUNTIME_HEADER", "BLOCK", "GRID_CAP", "SM_COUNT"]

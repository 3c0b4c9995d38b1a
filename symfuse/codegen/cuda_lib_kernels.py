"""The precompiled CUDA runtime library's kernel table (``LIB_KERNELS``): what
``runtime/cuda_runtime.py`` builds once per installation, NVRTC and arch, and
``lib_call``, which turns a shape-specialised launch into a call of one of its
kernels. The library's build key hashes this file: everything that decides the
library's code is here or in its templates."""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.symdim import SymInt

GEMM_TILES = {64: (64, 64, 16, 4, 4), 32: (32, 32, 16, 2, 2)}   # BM, BN, BK, TM, TN (256 threads)


def lits(xs) -> str:
    return ", ".join(str(x) if type(x) is SymInt else str(int(x)) for x in xs)   # a run-time size: its C expression


def cfg_args(cfg) -> str:
    """A GEMM tile configuration as template arguments."""
    return lits(cfg)


@dataclass(frozen=True)
class LibCall:
    """The same launch as a kernel of the precompiled library: its name in
    ``LIB_KERNELS`` and the scalar arguments after the pointers, (value, C type)."""
    kernel: str
    args: tuple[tuple[int, str], ...]


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
        return cfg_args(GEMM_TILES[self.tile]) if self.tile else ""

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


def lib_call(k: LibKernel, vals: dict) -> LibCall | None:
    """The launch as a library call, or None when the library has no such kernel
    (another element or index type)."""
    if (k.T, k.I) not in LIB_TYPES or k.name not in LIB_KERNELS:
        return None
    if any(type(v) is SymInt for v in vals.values()):
        return None     # a run-time size: the divisors' magic would be the host's per call
    ints, divs = LIB_ARGS[k.family]
    args = [(int(vals[n]), "int") for n in ints]
    for n in divs:
        d = int(vals[n])
        mul, shift = fast_divmod(max(d, 1))
        args += [(d, "int"), (mul, "unsigned"), (shift, "unsigned")]
    return LibCall(k.name, tuple(args))

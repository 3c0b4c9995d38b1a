"""Lowering table for the CUDA runtime library (``symfuse/templates/cuda/runtime.cuh``).

``CUDA_LIBRARY[op_name](op, ins, outs, hints) -> Lowering`` covers exactly the
ops of ``c_library.LIBRARY``, with the same argument conventions:

* ``ins`` / ``outs`` are C expressions naming the operand / result pointers.
  The caller emits one ``extern "C" __global__`` kernel per :class:`Launch`
  whose parameters are ``in0, in1, ...`` (``const T* __restrict__``), then
  ``out0, ...`` (``T* __restrict__``) and, when ``Lowering.scratch_bytes > 0``,
  ``char* __restrict__ scratch`` last; ``Launch.body`` is that kernel's body
  (one braced block calling a ``__device__`` template of runtime.cuh). Element
  types are ``kernel.c_type`` (bool is ``uint8_t``).
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

The lowerings live by family in ``cuda_library_gemm.py``, ``cuda_library_nn.py``
and ``cuda_library_data.py``; the precompiled library's kernels in
``cuda_lib_kernels.py``.
"""
from __future__ import annotations

from typing import Callable

from .c_collective import COLLECTIVE
from .cuda_lib_kernels import LIB_GEMM, LIB_KERNELS, LibCall, LibKernel, fast_divmod
from .cuda_library_base import BLOCK, GRID_CAP, INCLUDE_DIR, INT_LIMIT, RUNTIME_HEADER, SM_COUNT, Launch, Lowering
from .cuda_library_data import (lower_broadcast_to, lower_concatenate, lower_flip, lower_pad, lower_reshape,
                                lower_slice, lower_transpose)
from .cuda_library_gemm import (lower_conv2d, lower_conv2d_grad_input, lower_conv2d_grad_weight, lower_gemm,
                                lower_matmul)
from .cuda_library_nn import (argminmax, lower_avg_pool2d, lower_avg_pool2d_grad, lower_max_pool2d,
                              lower_max_pool2d_grad, lower_one_hot, lower_random_bernoulli, lower_take, lower_take_grad,
                              random_draw, rowwise)


CUDA_LIBRARY: dict[str, Callable] = {
    "matmul": lower_matmul,
    "gemm": lower_gemm,
    "softmax_xent": rowwise("softmax_xent"),
    "softmax": rowwise("softmax"),
    "log_softmax": rowwise("log_softmax"),
    "logsumexp": rowwise("logsumexp"),
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
    "argmax": argminmax("argmax"),
    "argmin": argminmax("argmin"),
    "random_uniform": random_draw("random_uniform"),
    "random_normal": random_draw("random_normal"),
    "random_bernoulli": lower_random_bernoulli,
    "concatenate": lower_concatenate,
    "pad": lower_pad,
    "transpose": lower_transpose,
    "broadcast_to": lower_broadcast_to,
    "slice": lower_slice,
    "flip": lower_flip,
    "reshape": lower_reshape,
    # collectives: a host step of the schedule (MPI through mpi4py on staged copies)
    **{name: (lambda op, ins, outs, hints: Lowering(collective=True)) for name in COLLECTIVE},
}

__all__ = ["CUDA_LIBRARY", "Launch", "Lowering", "LibCall", "LibKernel", "LIB_KERNELS", "LIB_GEMM", "fast_divmod",
           "INCLUDE_DIR", "RUNTIME_HEADER", "BLOCK", "GRID_CAP", "SM_COUNT", "INT_LIMIT"]

"""The kernel record (codegen/kernel.py) below fusion: lowered once per group,
plain frozen data without IR objects, the same for both renderers except a
library op's lowering, and rendered by either renderer into the one record
``f.kernels`` shows (KernelInfo)."""
import dataclasses

import numpy as np
import pytest

import symfuse as sf
from symfuse.codegen import c_library, cuda_library_base, kernel
from symfuse.codegen.lower import lower_partition
from symfuse.codegen.render_c import CRenderer
from symfuse.codegen.render_cuda import CudaRenderer
from symfuse.compiler.fusion import fuse
from symfuse.compiler.kernel_info import KernelInfo
from symfuse.compiler.pipeline import optimize
from symfuse.compiler.options import Options
from symfuse.compiler.report import CompileReport
from symfuse.ir.core import Function, Op, Value
from symfuse.ir.types import DType


def _step():
    """An SGD-with-momentum step of a small dense layer: library, pointwise,
    reduce and multi kernels."""
    rng = np.random.default_rng(0)
    W = sf.shared(rng.normal(size=(6, 4)).astype(np.float32), name="W")
    b = sf.shared(np.zeros(4, np.float32), name="b")
    v = sf.shared(np.zeros((6, 4), np.float32), name="v")
    x = sf.tensor("x", (8, 6))
    y = sf.tensor("y", (8,), "int32")
    loss = sf.softmax_cross_entropy(sf.tanh(x @ W + b), y).mean()
    gW, gb = sf.grad(loss, [W, b])
    v2 = 0.9 * v - 0.1 * gW
    fn = Function([x, y, W, b, v], [loss, W + v2, b - 0.1 * gb, v2], "step")
    return fuse(optimize(fn, Options(), CompileReport("step")), horizontal=True)


@pytest.fixture(scope="module")
def partition():
    return _step()


def _walk(x):
    """Every value reachable from a record."""
    yield x
    if dataclasses.is_dataclass(x):
        for f in dataclasses.fields(x):
            yield from _walk(getattr(x, f.name))
    elif isinstance(x, (tuple, list)):
        for y in x:
            yield from _walk(y)


def test_records_are_plain_frozen_data(partition):
    lowered = lower_partition(partition, CRenderer())
    assert {lk.kernel.kind for lk in lowered} >= {"library", "pointwise", "reduce", "multi"}
    for lk in lowered:
        for x in _walk(lk.kernel):
            assert not isinstance(x, (Value, Op)), (lk.kernel.name, x)
            assert x is None or isinstance(x, (str, int, float, tuple, DType)) or (
                dataclasses.is_dataclass(x) and x.__dataclass_params__.frozen), (lk.kernel.name, type(x))
        with pytest.raises(dataclasses.FrozenInstanceError):
            lk.kernel.name = "other"
        # what the backend wires: the IR Values beside the record, one per parameter
        assert len(lk.inputs) == len(lk.kernel.inputs) and len(lk.outputs) == len(lk.kernel.outputs)
        assert all(isinstance(v, Value) for v in lk.inputs + lk.outputs)
        assert [b.size for b in lk.kernel.inputs] == [v.type.size for v in lk.inputs]


def test_one_lowering_for_both_targets(partition):
    """Only a library op's lowering depends on the target's library table."""
    c = lower_partition(partition, CRenderer())
    cuda = lower_partition(partition, CudaRenderer(16))
    assert [lk.kernel.name for lk in c] == [lk.kernel.name for lk in cuda]
    for a, b in zip(c, cuda):
        if a.kernel.kind != "library":
            assert a.kernel == b.kernel
        else:
            assert a.kernel.library.call and not a.kernel.library.launches
            assert b.kernel.library.launches and not b.kernel.library.call


def test_both_renderers_give_the_same_record_type(partition):
    c = [CRenderer().render(lk.kernel) for lk in lower_partition(partition, CRenderer())]
    g = [CudaRenderer(16).render(lk.kernel) for lk in lower_partition(partition, CudaRenderer(16))]
    assert all(type(k) is KernelInfo for k in c + g)
    assert [(k.name, k.kind, k.fused_ops, k.provenance, k.size, k.bytes_read) for k in c] == \
        [(k.name, k.kind, k.fused_ops, k.provenance, k.size, k.bytes_read) for k in g]
    assert all(not k.launches and not k.in_library for k in c) and all(k.launches for k in g)
    multi = next(k for k in c if k.kind == "multi")
    assert multi.parts and all(p.name.startswith(multi.name + "_p") for p in multi.parts)
    assert "__global__" in g[0].source and "SF_KERNEL" in c[0].source


def test_aliasing_changes_only_the_qualifiers(partition):
    """An output written over its input (the in-place plan) drops restrict /
    __restrict__ from the signature; the renderer is told, it never edits text."""
    k = next(lk.kernel for lk in lower_partition(partition, CRenderer()) if lk.kernel.kind == "pointwise")
    for r, q in ((CRenderer(), " restrict"), (CudaRenderer(16), " __restrict__")):
        plain, aliased = r.render(k).source, r.render(k, aliased=True).source
        assert q in plain and q not in aliased and plain.replace(q, "") == aliased


def test_one_c_type():
    assert c_library.c_type is kernel.c_type and cuda_library_base.c_type is kernel.c_type
    assert kernel.c_type(sf.bool_) == "uint8_t" and kernel.c_type(sf.float16) == "_Float16"

"""How a call hands arrays over (runtime/function.py): results the backend made
fresh are kept without a copy, a shared variable's previous storage is recycled
by the cpu backend for the next call's update, and no two holders ever share
memory -- checked against the interpreter, which never recycles."""
import numpy as np
import pytest

import symfuse as sf


def _step(device, same_expr=False):
    rng = np.random.default_rng(3)
    W = sf.shared(rng.normal(size=(24, 16)).astype(np.float32), name="W")
    V = sf.shared(rng.normal(size=(24, 16)).astype(np.float32), name="V")
    x = sf.tensor("x", (8, 24))
    loss = sf.tanh(x @ W).sum()
    g = sf.grad(loss, W)
    new_w = W - 0.1 * g
    # V gets the same value as W (one result array for two shared variables) or its own
    updates = [(W, new_w), (V, new_w if same_expr else V * 0.5 + W)]
    f = sf.function([x], [loss, new_w, W], updates=updates, device=device)
    return f, W, V, rng.normal(size=(8, 24)).astype(np.float32)


@pytest.mark.parametrize("same_expr", [False, True])
def test_outputs_updates_and_recycled_buffers_agree_with_the_interpreter(same_expr):
    got = {}
    for device in ("interp", "cpu"):
        f, W, V, xv = _step(device, same_expr)
        outs = [f(xv) for _ in range(5)]
        # no storage is shared: between the shared variables, or with anything returned
        assert not np.shares_memory(W._value, V._value)
        for o in outs:
            for a in o:
                assert not np.shares_memory(a, W._value) and not np.shares_memory(a, V._value)
        got[device] = (outs, W.get_value(), V.get_value())
    (oi, wi, vi), (oc, wc, vc) = got["interp"], got["cpu"]
    np.testing.assert_allclose(wc, wi, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vc, vi, rtol=1e-5, atol=1e-6)
    for a_call, c_call in zip(oi, oc):     # outputs of earlier calls were not overwritten later
        for a, c in zip(a_call, c_call):
            np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-6)


def test_cpu_update_storage_alternates_between_two_buffers():
    f, W, V, xv = _step("cpu")
    seen = set()
    for _ in range(6):
        f(xv)
        seen.add(W._value.ctypes.data)
    assert len(seen) == 2


def test_a_value_held_elsewhere_is_not_recycled():
    f, W, V, xv = _step("cpu")
    f(xv)
    held = W._value            # another reference: this buffer must never be written again
    snapshot = held.copy()
    for _ in range(4):
        f(xv)
    np.testing.assert_array_equal(held, snapshot)


@pytest.mark.parametrize("nbytes", [0, 1, 4096 * 3 + 17, 18 << 20])
def test_arena_is_zeroed_aligned_and_writable_to_its_end(nbytes):
    import ctypes
    from symfuse.runtime.cpu import _arena
    owner, addr = _arena(nbytes)
    assert addr % 64 == 0
    n = max(nbytes, 1)
    view = np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(addr))
    assert not view.any()
    view[:] = 0xA5                      # every byte, the last one included, is mapped and writable
    assert int(view[-1]) == 0xA5 and int(view.sum(dtype=np.int64)) == 0xA5 * n
    owner2, addr2 = _arena(nbytes)      # a second arena is fresh memory, not the first one again
    assert addr2 != addr
    assert not np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(addr2)).any()


def test_an_arena_that_cannot_be_mapped_is_a_clear_memory_error(monkeypatch):
    import errno
    import mmap
    from symfuse.runtime import cpu

    def refuse(*a, **k):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")
    monkeypatch.setattr(mmap, "mmap", refuse)
    with pytest.raises(MemoryError, match=r"cannot map the function's 3072\.0 MiB arena .*Cannot allocate memory"):
        cpu._arena(3 << 30)

"""Run-time sizes (issue 17 item 1): ``sf.tensor("x", ("batch", 784))`` compiles once
and serves any batch. Oracles: the same model built with the batch as a number and
run by the interpreter (a static graph, another compile path), and numpy."""
import json

import numpy as np
import pytest

import symfuse as sf
from symfuse.ir.parser import parse
from symfuse.ir.printer import print_function
from symfuse.ir.symdim import SymInt, check_generated, parse_dim
from symfuse.nn import zoo

SIZES = (1, 7, 32, 128)


def _static_twin(name, b, state):
    """The model's training step with batch ``b`` as a number on the interpreter,
    from the given state (parameters and optimiser slots, in the step's order)."""
    m = zoo.get(name, batch=b, seed=0)
    step = m.train_function("interp")
    assert len(step.shared) == len(state)
    for s, v in zip(step.shared, state):
        s.set_value(v)
    return step


@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_one_compile_serves_every_batch_like_static_builds(name):
    """One training step per batch size, each from the parameters the last left:
    outputs and updated parameters equal the static graph's on the interpreter."""
    m = zoo.get(name, batch="batch", seed=0)
    f = m.train_function("cpu")
    assert f.sizes.names == ("batch",)
    for b in SIZES:
        data = m.example_batch(seed=b, size=b)
        twin = _static_twin(name, b, [s.get_value() for s in f.shared])
        want = twin(*data)
        got = f(*data)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{name} batch {b}")
        for p, q in zip(f.shared, twin.shared):
            np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=2e-5, atol=2e-6,
                                       err_msg=f"{name} batch {b}: {p.name}")


@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_predict_at_every_batch_equals_interpreter(name):
    m = zoo.get(name, batch="batch", seed=0)
    cpu, interp = m.predict_function("cpu"), m.predict_function("interp")
    for b in SIZES:
        x = m.example_batch(seed=b, size=b)[0]
        got = cpu(x)
        assert got.shape == (b, 10)
        np.testing.assert_allclose(got, interp(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.sum(axis=1), np.ones(b), rtol=1e-5)


def _mlp_graph():
    x = sf.tensor("x", ("batch", 6))
    y = sf.tensor("y", ("batch",), "int32")
    w = sf.shared(np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32), name="w")
    logits = x @ w
    loss = sf.mean(sf.logsumexp(logits, axis=1) - sf.sum(logits * sf.one_hot(y, 3), axis=1))
    return x, y, w, logits, loss


def test_specialize_dispatches_to_the_literal_build(monkeypatch):
    x, y, w, logits, loss = _mlp_graph()
    f = sf.function([x, y], [logits, loss], device="cpu", specialize=[4, 16])
    run = f._run
    assert sorted(run.variants) == [(4,), (16,)]
    assert any("literal sizes [4, 16]" in (s.note or "") for s in f.report.stages)
    calls = []
    for key, entry in list(run.variants.items()):
        def counted(*a, _e=entry, _k=key):
            calls.append(_k[0])
            return _e(*a)
        run.variants[key] = counted
    generic = run.entry
    run.entry = lambda *a: (calls.append("generic"), generic(*a))[1]
    ref = sf.function([x, y], [logits, loss], device="interp")
    rng = np.random.default_rng(1)
    for b in (4, 5, 16):
        xs, ys = rng.standard_normal((b, 6)).astype(np.float32), rng.integers(0, 3, b).astype(np.int32)
        for g, r in zip(f(xs, ys), ref(xs, ys)):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    assert calls == [4, "generic", 16]


def test_shape_errors_name_the_dimension():
    x, y, w, logits, loss = _mlp_graph()
    f = sf.function([x, y], loss, device="cpu", max_batch=8)
    xs, ys = np.zeros((5, 6), np.float32), np.zeros(5, np.int32)
    with pytest.raises(sf.InputError, match=r"dimension 1 must be 6 .*got shape \(5, 7\)"):
        f(np.zeros((5, 7), np.float32), ys)
    with pytest.raises(sf.InputError, match=r"run-time size 'batch', which argument 0 \('x'\) gave as 5; got 4"):
        f(xs, np.zeros(4, np.int32))
    with pytest.raises(sf.InputError, match=r"'batch' is 9 .*above max_batch=8"):
        f(np.zeros((9, 6), np.float32), np.zeros(9, np.int32))
    with pytest.raises(sf.InputError, match="at least 1"):
        f(np.zeros((0, 6), np.float32), np.zeros(0, np.int32))
    assert np.isfinite(f(xs, ys))


def _static_only_device(monkeypatch) -> str:
    """A device whose backend compiles static shapes only (every built-in one has run-time sizes)."""
    from symfuse.runtime import backends
    from symfuse.runtime.interp import InterpBackend

    class StaticOnly(InterpBackend):
        name = "static-only"
        runtime_sizes = False
    monkeypatch.setitem(backends.BACKENDS, StaticOnly.name, StaticOnly())
    return StaticOnly.name


def test_bad_declarations_are_refused(monkeypatch):
    with pytest.raises(sf.ShapeError, match="identifier"):
        sf.tensor("x", ("bad name", 3))
    x = sf.tensor("x", ("batch", 3))
    with pytest.raises(sf.InputError, match="no input has one"):
        z = sf.tensor("z", (2, 3))
        sf.function([z], z * 2, device="interp", max_batch=4)
    with pytest.raises(sf.InputError, match="static shapes only"):
        sf.function([x], x * 2, device=_static_only_device(monkeypatch))
    with pytest.raises(sf.InputError, match="exceeds max_batch"):
        sf.function([x], x * 2, device="cpu", max_batch=4, specialize=[8])
    with pytest.raises(sf.ShapeError, match="Python float"):
        x.shape[0] / 2
    with pytest.raises(sf.ShapeError, match="no value until"):
        float(x.shape[0])


def test_a_size_in_arithmetic_is_the_calls_size():
    """``x / x.shape[0]`` and ``x * (x.shape[0] - 1)`` read the size of each call."""
    x = sf.tensor("x", ("batch", 3))
    f = sf.function([x], [sf.sum(x, axis=0) / x.shape[0], x * (x.shape[0] - 1)], device="cpu")
    for b in (1, 5):
        xs = np.arange(b * 3, dtype=np.float32).reshape(b, 3)
        mean, scaled = f(xs)
        np.testing.assert_allclose(mean, xs.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(scaled, xs * (b - 1))


def test_arena_is_a_function_of_the_batch():
    m = zoo.get("lenet", batch="batch", seed=0)
    f = m.train_function("cpu")
    mem = f.report.info["memory"]
    arena = parse_dim(mem["arena_bytes"])
    assert mem["sizes"]["arena"] == mem["arena_bytes"]
    assert type(arena) is SymInt
    at = mem["sizes"]["arena_bytes_at"]
    assert at["1"] < at["32"] < at["128"] == arena.evaluate({"batch": 128})
    # every buffer of the plan lies inside the arena at each size, and buffers alive together never overlap
    bufs = [(parse_dim(str(b["offset"])), parse_dim(str(b["bytes"])), b["first_step"], b["last_step"])
            for b in mem["buffers"]]
    for n in (1, 3, 128):
        env = {"batch": n}
        spans = [(o if type(o) is int else o.evaluate(env), s if type(s) is int else s.evaluate(env), a, z)
                 for o, s, a, z in bufs]
        assert max(o + s for o, s, _, _ in spans) <= arena.evaluate(env)
        in_place = {(b["name"], b["in_place_of"]) for b in mem["buffers"] if b["in_place_of"]}
        names = [b["name"] for b in mem["buffers"]]
        for i, (o1, s1, a1, z1) in enumerate(spans):
            for j, (o2, s2, a2, z2) in enumerate(spans[:i]):
                if a1 <= z2 and a2 <= z1 and (names[i], names[j]) not in in_place \
                        and (names[j], names[i]) not in in_place:
                    assert o1 + s1 <= o2 or o2 + s2 <= o1, (names[i], names[j], n)
    assert "x batch" in next(s.note for s in f.report.stages if s.name == "memory plan")
    json.dumps(f.report.info["memory"])       # plain data
    check_generated(f.report.to_json(), "the report")    # sizes spelled, never their trace values


def test_the_ir_prints_and_parses_back():
    x, y, w, logits, loss = _mlp_graph()
    f = sf.function([x, y], [logits, loss], device="interp")
    text = f.ir()
    assert "f32[batch,6]" in text and "sf_dim" not in text
    again = parse(text)
    assert print_function(again) == text
    assert again.params[0].type.shape[0] == x.type.shape[0] and type(again.params[0].type.shape[0]) is SymInt


def test_size_expressions():
    b = SymInt.dim("batch")
    assert type(b * 784 // 784) is SymInt and repr(b * 784 // 784) == "batch"
    assert (b * 16) % 8 == 0 and type((b * 16) % 8) is int
    e = (b * 10 + 6) // 4
    assert e.evaluate({"batch": 3}) == 9 and str(e).count("sf_dim_batch") == 1
    assert parse_dim(repr(e)).evaluate({"batch": 5}) == e.evaluate({"batch": 5})
    assert b * 3 - b * 3 == 0 and type(b * 3 - b * 3) is int


def test_a_trace_value_in_generated_code_is_refused():
    b = SymInt.dim("batch")
    check_generated(f"for (i = 0; i < {b * 4}; i++) x[i] = 123456;", "test")
    with pytest.raises(sf.ShapeError, match="run-time dimension 'batch'"):
        check_generated(f"for (i = 0; i < {int(b) * 4}; i++) ;", "test")


def test_fit_with_a_run_time_batch_trains_like_the_static_model():
    """nn.fit with batch_size on a model whose batch is a name: the same epochs, to
    the printed digits, as the model built with that batch; one predict function
    evaluates the whole test set."""
    from symfuse.nn import data, train
    d = data.digits()
    kw = dict(dims=(64, 32, 10), input_shape=(1, 8, 8), seed=0)
    sized = train.fit(zoo.get("mlp", batch="batch", **kw), d, epochs=2, batch_size=64, verbose=False)
    static = train.fit(zoo.get("mlp", batch=64, **kw), d, epochs=2, verbose=False)
    assert len(sized) == len(static) == 2
    for a, b in zip(sized, static):
        for k in ("loss", "accuracy", "test_loss", "test_accuracy"):
            assert round(a[k], 4) == round(b[k], 4), (k, a, b)
    with pytest.raises(ValueError, match="give fit a batch_size"):
        train.fit(zoo.get("mlp", batch="batch", **kw), d, epochs=1, verbose=False)


def test_the_graph_cache_restores_a_sized_function(tmp_path, monkeypatch):
    """A second compile of the same graph is a graph-cache hit: the same sizes, the
    specialised build, the same results; the entry's sizes are read, never run."""
    from symfuse.runtime import plain
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(cache))
    outs = []
    for k in range(2):
        m = zoo.get("mlp", batch="batch", seed=0)
        f = m.train_function("cpu", specialize=[7])
        assert f.report.info["graph_cache"] == ("miss" if k == 0 else "hit")
        assert sorted(f._run.variants) == [(7,)]
        outs.append([np.asarray(f(*m.example_batch(seed=3, size=b))[0]) for b in (5, 7)])
    assert outs[0] == outs[1]
    b = SymInt.dim("batch") * 784 + 3
    assert repr(plain.loads(plain.dumps({"s": (b, 4)}))["s"][0]) == repr(b)
    for bad in ('{"$sym": "__import__(1)"}', '{"$sym": 5}', '{"$sym": "batch name"}'):
        with pytest.raises(plain.PlainDataError):
            plain.loads(bad.encode())


def test_a_recurrent_model_with_a_run_time_batch():
    """The zoo's LSTM (one sf.scan over the rows, carries of (batch, hidden)): a
    training step at two batch sizes equals the static build's on the interpreter."""
    m = zoo.get("seqdigits", batch="batch", seed=0)
    f = m.train_function("cpu")
    for b in (3, 5):
        data = m.example_batch(seed=b, size=b)
        twin = zoo.get("seqdigits", batch=b, seed=0).train_function("interp")
        for s, v in zip(twin.shared, f.shared):
            s.set_value(v.get_value())
        # float32 sums through 8 recurrent steps in another order than numpy's: 1e-5 of the weights' scale
        for g, w in zip(f(*data), twin(*data)):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5, err_msg=f"batch {b}")
        for p, q in zip(f.shared, twin.shared):
            np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=1e-4, atol=2e-5, err_msg=p.name)


def test_functions_sharing_a_library_run_from_threads_at_different_sizes():
    """Two functions of one graph load one library, whose sizes are its globals: from
    two threads at different batch sizes each still gives what it gives alone."""
    import threading
    fs = [zoo.get("mlp", batch="batch", seed=0).predict_function("cpu") for _ in range(2)]
    assert fs[0]._run.lib._handle == fs[1]._run.lib._handle
    xs = [zoo.get("mlp", batch=1).example_batch(seed=b, size=b)[0] for b in (3, 200)]
    want = [f(x) for f, x in zip(fs, xs)]
    bad = []

    def work(k):
        for _ in range(100):
            if not np.array_equal(fs[k](xs[k]), want[k]):
                bad.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad

"""A user op is a first-class op (docs/custom_ops.md): the tutorial's code runs on
every backend against numpy and finite differences, and the graph cache sees a
change of the op's definition."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symfuse as sf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "custom_ops.md")


def _tutorial_code() -> str:
    """The tutorial's first code block, as the page shows it."""
    text = open(DOC).read()
    start = text.index("```python\n") + len("```python\n")
    return text[start:text.index("```", start)]


TUTORIAL = _tutorial_code()
_ns: dict = {}
exec(compile(TUTORIAL, DOC, "exec"), _ns)
softsign = _ns["softsign"]


def _softsign(x):
    return x / (1 + np.abs(x))


@pytest.mark.parametrize("device", ["interp", "cpu", "cuda-emu"])
def test_tutorial_op_matches_numpy_and_finite_differences(device, rng):
    x = sf.tensor("x", (4, 5), "float64")
    W = sf.tensor("W", (5, 3), "float64")
    loss = (softsign(x @ W) ** 2).sum()
    f = sf.function([x, W], [loss, sf.grad(loss, W)], device=device)
    xv, Wv = rng.normal(size=(4, 5)), rng.normal(size=(5, 3))
    got_loss, got_g = f(xv, Wv)
    np.testing.assert_allclose(got_loss, (_softsign(xv @ Wv) ** 2).sum(), rtol=1e-12)
    fd = np.zeros_like(Wv)
    for k in np.ndindex(Wv.shape):
        e = np.zeros_like(Wv)
        e[k] = 1e-6
        fd[k] = ((_softsign(xv @ (Wv + e)) ** 2).sum() - (_softsign(xv @ (Wv - e)) ** 2).sum()) / 2e-6
    np.testing.assert_allclose(got_g, fd, rtol=1e-6, atol=1e-8)
    assert "softsign" in f.ir()
    if device != "interp":      # fused into a generated kernel with its neighbours, not a library call
        src = "\n".join(k.source for k in f.kernels)
        assert "fabs" in src


def test_tutorial_op_round_trips_through_the_ir_text():
    x = sf.tensor("x", (3,))
    f = sf.function([x], softsign(x) * 2, device="interp")
    g = sf.ir.parse(f.ir())
    from symfuse.runtime.interp import evaluate
    xv = np.array([-2.0, 0.0, 3.0], np.float32)
    np.testing.assert_allclose(evaluate(g, [xv])[0], 2 * _softsign(xv), rtol=1e-6)


def test_tutorial_op_refuses_an_int_operand_at_the_users_line():
    # the user's line is the apply in their wrapper (here: the tutorial's code block)
    with pytest.raises(sf.DTypeError, match=r"softsign needs a floating point operand.*custom_ops.md:\d+\)"):
        softsign(sf.tensor("i", (3,), "int32"))


CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import symfuse as sf
    sf.defop("user_scale", kind="elementwise", arity=1, infer=lambda t, a: (t[0],),
             ref=lambda xs, a: xs[0] * FACTOR, c_expr="({0} * ({T})FACTOR)", differentiable=False)
    x = sf.tensor("x", (4,))
    f = sf.function([x], sf.apply("user_scale", [x]), device=sys.argv[1])
    print(json.dumps({"out": f(np.ones(4, np.float32)).tolist(), "hit": f.report.info.get("graph_cache")}))
""")


@pytest.mark.parametrize("device", ["cpu", "cuda-emu"])
def test_changing_a_user_ops_definition_recompiles(device, tmp_path):
    """The graph-cache key covers user op definitions: the same graph with another
    C expression in a new process is a miss, with the new result."""
    env = dict(os.environ, SYMFUSE_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)

    def run(factor):
        code = CHILD.replace("FACTOR", str(factor))
        out = subprocess.run([sys.executable, "-c", code, device], capture_output=True, text=True, env=env,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, again, changed = run(2), run(2), run(3)
    assert first["out"] == [2.0] * 4 and again["hit"] == "hit"
    assert changed["out"] == [3.0] * 4 and changed["hit"] == "miss"


def test_defop_refuses_a_name_that_is_taken():
    with pytest.raises(ValueError, match="already registered"):
        sf.defop("exp", kind="elementwise", arity=1, infer=lambda t, a: (t[0],), ref=lambda xs, a: xs[0],
                 differentiable=False)


def test_defop_asks_for_a_vjp_or_differentiable_false():
    with pytest.raises(ValueError, match="has no vjp: give it one, or pass differentiable=False"):
        sf.defop("user_no_vjp", kind="elementwise", arity=1, infer=lambda t, a: (t[0],), ref=lambda xs, a: xs[0])

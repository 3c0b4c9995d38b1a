"""The graph cache keys on what a graph computes, not where it was written
(issue 14, item 5): adding lines above a model is a hit, and the hit shows the new
lines in the IR text and in every kernel's provenance."""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL = textwrap.dedent("""
    import json, sys
    import numpy as np
    import symfuse as sf
    x = sf.tensor("x", (4, 6)); W = sf.tensor("W", (6, 3))
    h = sf.tanh(x @ W)
    loss = (h * h).sum()
    f = sf.function([x, W], [loss, sf.grad(loss, W)], device=sys.argv[1])
    rng = np.random.default_rng(0)
    xv, Wv = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    l, g = f(xv, Wv)
    t = np.tanh(xv @ Wv)
    ok = bool(np.allclose(l, (t * t).sum(), rtol=1e-4) and np.allclose(g, xv.T @ (2 * t * (1 - t * t)), atol=1e-4))
    prov = [p for k in f.kernels for p in k.provenance]
    print(json.dumps({"ok": ok, "hit": f.report.info.get("graph_cache"), "ir": f.ir(locations=True),
                      "prov": prov, "source": f.source or "", "ksrc": [k.source for k in f.kernels]}))
""")


def _run(tmp_path, text, device):
    path = tmp_path / "model.py"
    path.write_text(text)
    env = dict(os.environ, SYMFUSE_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, str(path), device], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("device", ["cpu", "cuda-emu"])
def test_lines_added_above_a_model_are_a_hit_with_the_new_provenance(tmp_path, device):
    first = _run(tmp_path, MODEL, device)
    moved = _run(tmp_path, "# a comment\n# and another\n\n" + MODEL, device)
    assert first["ok"] and first["hit"] == "miss"
    assert moved["ok"] and moved["hit"] == "hit"
    lines = lambda text: {int(n) for n in re.findall(r"model\.py\D{1,2}(\d+)", text)}  # noqa: E731
    old, new = lines(first["ir"]), lines(moved["ir"])
    assert old and new == {n + 3 for n in old}
    assert {int(n) for p in moved["prov"] for n in re.findall(r"model\.py:(\d+)", p)} == \
        {int(n) + 3 for p in first["prov"] for n in re.findall(r"model\.py:(\d+)", p)}
    for before, after in zip(first["ksrc"], moved["ksrc"]):
        assert re.sub(r"model\.py:(\d+)", lambda m: f"model.py:{int(m.group(1)) + 3}", before) == after


def test_a_changed_graph_is_still_a_miss(tmp_path):
    first = _run(tmp_path, MODEL, "cpu")
    other = _run(tmp_path, MODEL.replace("(h * h).sum()", "(h * h * 2).sum() / 2"), "cpu")
    assert first["hit"] == "miss" and other["hit"] == "miss" and other["ok"]

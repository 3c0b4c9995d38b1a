"""The compile report's stages nest: children under the stage they ran inside, siblings
adding up to at most their parent and the top level to at most the total."""
import json
import re
import time

import pytest

import symfuse as sf
from symfuse.compiler.report import CompileReport

SLACK = 2e-4    # seconds: the timer reads of a parent enclose its children's, plus a little


def _check_sums(report):
    for i, parent in enumerate(report.stages):
        kids = report.children(i)
        assert sum(k.seconds for k in kids) <= parent.seconds + SLACK, (parent.name, [k.name for k in kids])
        assert all(k.depth == parent.depth + 1 for k in kids)
    top = report.children(None)
    assert top and all(s.depth == 0 for s in top)
    assert sum(s.seconds for s in top) <= report.total_seconds + SLACK


def _compile():
    x = sf.tensor("x", (32, 32))
    return sf.function([x], sf.tanh(x @ x).sum(), device="cpu", name="nesting")


def test_cold_and_warm_compile_nest(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    cold = _compile().report
    assert cold.info["graph_cache"] == "miss"
    _check_sums(cold)
    warm = _compile().report
    assert warm.info["graph_cache"] == "hit"
    _check_sums(warm)
    names = [s.name for s in warm.stages]
    cache, load = warm.stages[names.index("graph cache")], warm.stages[names.index("load")]
    assert warm.stages[load.parent] is cache and load.depth == 1
    lines = warm.table().splitlines()
    row = next(ln for ln in lines if ln.strip().startswith("load"))
    assert row.startswith("  load")
    assert next(ln for ln in lines if ln.startswith("graph cache"))
    data = json.loads(warm.to_json())
    loaded = next(s for s in data["stages"] if s["name"] == "load")
    assert data["stages"][loaded["parent"]]["name"] == "graph cache" and loaded["depth"] == 1


def test_nested_stages_and_add_stage():
    r = CompileReport("t")
    with r.stage("outer"):
        with r.stage("inner"):
            time.sleep(0.002)
        with r.stage("inner"):
            with r.stage("deep"):
                pass
        r.add_stage("timed elsewhere", 0.0)
    t0 = time.perf_counter()
    with r.stage("swallowed"):
        time.sleep(0.001)
    r.add_stage("wrapper", since=t0)    # began before "swallowed": its parent
    r.finish()
    by = {s.name: s for s in r.stages}
    idx = {s.name: i for i, s in enumerate(r.stages)}
    assert by["outer"].parent is None and by["inner"].parent == idx["outer"]
    assert by["deep"].parent == [i for i, s in enumerate(r.stages) if s.name == "inner"][1]
    assert by["deep"].depth == 2 and by["timed elsewhere"].parent == idx["outer"]
    assert by["swallowed"].parent == idx["wrapper"] and by["swallowed"].depth == 1
    assert [s.name for s in r.children(None)] == ["outer", "wrapper"]
    _check_sums(r)
    rows = [ln for ln in r.table().splitlines()[3:] if not ln.startswith("-")]
    names = [" " * (len(ln) - len(ln.lstrip())) + re.split(r"\s{2,}", ln.lstrip())[0] for ln in rows]
    assert names[:6] == ["outer", "  inner x2", "    deep", "  timed elsewhere", "wrapper", "  swallowed"]

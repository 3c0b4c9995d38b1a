"""The `symfuse` command's edges: options that must not be silently ignored,
usage errors (exit 2) that name their flag, Ctrl-C (exit 130), the -o directory,
and output meant for people (cache info) next to output meant for programs."""
import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from symfuse.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sym(*args, cache=None, cwd=ROOT, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    if cache is not None:
        env["SYMFUSE_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, "-m", "symfuse.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.fixture
def run(tmp_path, monkeypatch):
    """The command in this process through click's test runner, with a cache of its own."""
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path / "cache"))

    def invoke(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    return invoke


# ----------------------------------------------------------------------------- train
@pytest.mark.parametrize("lr", ["0", "-0.1", "nan"])
def test_train_refuses_a_learning_rate_that_is_not_positive(run, lr):
    out = run("train", "mlp", "--lr", lr)
    assert out.exit_code == 2 and "--lr" in out.output and "> 0" in out.output, out.output


def test_python_m_symfuse_nn_refuses_lr_0_too():
    from symfuse.nn import __main__ as nn_main
    with pytest.raises(SystemExit) as e:
        nn_main.main(["mlp", "--lr", "0"])
    assert e.value.code == 2


def test_a_small_lr_reaches_the_optimiser(monkeypatch):
    """--lr is passed on whatever its value (it was dropped when falsy) and used."""
    from symfuse.nn import __main__ as nn_main
    from symfuse.nn import optim
    argvs, optimisers = [], []
    real_main, real_get = nn_main.main, optim.get
    monkeypatch.setattr(nn_main, "main", lambda argv: argvs.append(argv) or 0)
    out = CliRunner().invoke(main, ["train", "mlp", "--lr", "1e-9"])
    assert out.exit_code == 0, out.output
    assert argvs[0][argvs[0].index("--lr") + 1] == "1e-09"
    monkeypatch.setattr(optim, "get", lambda name, **kw: optimisers.append(kw) or real_get(name, **kw))
    monkeypatch.setattr(nn_main.train, "fit", lambda *a, **k: None)
    assert real_main(["mlp", "--lr", "1e-9", "--epochs", "1", "--data", "synthetic"]) == 0
    assert optimisers[0]["lr"] == pytest.approx(1e-9)


def test_train_documents_target_and_still_accepts_device(run):
    text = run("train", "--help").output
    assert "--target" in text and "--device" not in text
    for flag in ("--target", "--device"):
        out = run("train", "lenet", flag, "cuda")
        if out.exit_code == 0:
            pytest.skip("a GPU is here: cuda is usable")
        assert out.exit_code == 2 and f"use {flag} cpu" in out.output, out.output
    out = run("train", "mlp", "--target", "cpu", "--device", "interp")
    assert out.exit_code == 2 and "disagree" in out.output


def test_train_samples_is_for_the_rbm_only(run):
    out = run("train", "mlp", "--samples", "x.png")
    assert out.exit_code == 2 and "--samples" in out.output and "rbm" in out.output


# ----------------------------------------------------------------------------- cache info
def test_cache_info_is_for_people_and_json_for_programs(run, tmp_path):
    assert run("compile", "mlp", "--batch", "4").exit_code == 0
    text = run("cache", "info").output
    assert "{" not in text and "cache: " in text and "total: " in text, text
    assert any(unit in text for unit in (" KiB", " MiB")), text
    info = json.loads(run("cache", "info", "--json").output)
    assert info["entries"] > 0 and isinstance(info["bytes"], int) and info["namespaces"]


def test_human_sizes():
    from symfuse.cli.tools import human_size
    assert human_size(0) == "0 B" and human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB" and human_size(3 << 30) == "3.0 GiB" and human_size(5 << 40) == "5120.0 GiB"

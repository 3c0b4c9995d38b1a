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


@pytest.mark.parametrize("argv,needle", [(["mlp", "--lr", "0"], "> 0"), (["mlp", "--lr", "x"], "not a number"),
                                         (["mlp", "--samples", "s.png"], "--samples is for the rbm")])
def test_python_m_symfuse_nn_refuses_them_before_training(capsys, argv, needle):
    from symfuse.nn import __main__ as nn_main
    with pytest.raises(SystemExit) as e:
        nn_main.main(argv)
    assert e.value.code == 2 and needle in capsys.readouterr().err


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
    from symfuse.nn import zoo
    text = run("train", "--help").output
    assert "--target" in text and "--device" not in text
    assert all(name in text for name in zoo.ZOO), text
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


def test_rbm_samples_say_where_they_went(tmp_path):
    out = sym("train", "rbm", "--epochs", "1", "--no-progress", cache=tmp_path / "c", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    png = tmp_path / "rbm_samples.png"
    assert png.exists() and str(png) in out.stdout, out.stdout


# ----------------------------------------------------------------------------- Ctrl-C
def _interrupt_after_first_epoch(args, cache, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", SYMFUSE_CACHE_DIR=str(cache))
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 1/"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + out, err


@pytest.mark.parametrize("command", [["symfuse.cli", "train"], ["symfuse.nn"]])
def test_ctrl_c_exits_130_and_save_keeps_the_last_completed_epoch(tmp_path, command):
    npz = tmp_path / "w.npz"
    rc, out, err = _interrupt_after_first_epoch(
        [*command, "mlp", "--epochs", "500", "--no-progress", "--save", str(npz)], tmp_path / "c", tmp_path)
    assert rc == 130, (rc, out, err)
    assert "Traceback" not in err and "interrupted" in err, err
    assert npz.exists() and "after epoch" in err, err
    import numpy as np
    with np.load(npz) as z:
        assert len(z.files) == 6


def test_ctrl_c_anywhere_in_the_cli_is_130(monkeypatch):
    from symfuse.cli import common

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(common.Graph, "function", interrupted)
    out = CliRunner().invoke(main, ["compile", "mlp", "--batch", "2"])
    assert out.exit_code == 130 and "interrupted" in out.output


# ----------------------------------------------------------------------------- the -o directory
def test_o_that_cannot_be_a_directory_is_refused_before_compiling(run, tmp_path, monkeypatch):
    from symfuse.cli import build, export_cmd
    for mod in (build, export_cmd):
        monkeypatch.setattr(mod, "_compile", lambda *a, **k: pytest.fail("compiled before checking -o"))
    f = tmp_path / "afile"
    f.write_text("")
    for cmd in ("compile", "export"):
        for o, needle in ((f, "is a file"), (f / "sub", "is not a directory"), ("", "empty path")):
            out = run(cmd, "mlp", "-o", str(o))
            assert out.exit_code == 2 and needle in out.output and str(o) in out.output, out.output


def test_an_unwritable_o_is_refused_before_compiling(run, tmp_path, monkeypatch):
    from symfuse.cli import build
    ro = tmp_path / "ro"
    ro.mkdir()
    # root may write anywhere: what os.access says is what is checked
    real_access = os.access
    monkeypatch.setattr(build.os, "access", lambda path, mode: real_access(path, mode) and not (
        mode & os.W_OK and os.path.realpath(path) == str(ro.resolve())))
    for o in (ro, ro / "sub"):
        out = run("compile", "mlp", "-o", str(o))
        assert out.exit_code == 2 and "not writable" in out.output, out.output


def test_a_missing_o_is_created(run, tmp_path):
    out = run("compile", "mlp", "--batch", "2", "-o", str(tmp_path / "a" / "b"))
    assert out.exit_code == 0, out.output
    assert (tmp_path / "a" / "b" / "report.json").exists()


def test_reusing_o_replaces_what_symfuse_wrote_and_refuses_other_files(run, tmp_path):
    o = tmp_path / "o"
    assert run("compile", "mlp", "--batch", "2", "-o", str(o)).exit_code == 0
    assert (o / "module.so").exists() and list((o / "kernels").glob("*.c"))
    assert run("compile", "mlp", "--batch", "2", "--target", "interp", "-o", str(o)).exit_code == 0
    left = sorted(p.name for p in o.rglob("*") if p.is_file())
    assert "module.so" not in left and "module.c" not in left and not list((o / "kernels").glob("*")), left
    assert json.loads((o / "report.json").read_text())["function"] == "mlp_predict"

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    out = run("compile", "mlp", "--batch", "2", "-o", str(foreign))
    assert out.exit_code == 2 and "--force" in out.output, out.output
    assert run("compile", "mlp", "--batch", "2", "-o", str(foreign), "--force").exit_code == 0
    assert (foreign / "notes.txt").read_text() == "keep" and (foreign / "report.json").exists()


def test_a_manifest_cannot_make_compile_delete_outside_o(run, tmp_path):
    o = tmp_path / "o"
    o.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    (o / ".symfuse-compile.json").write_text(json.dumps(["../victim.txt", str(victim)]))
    assert run("compile", "mlp", "--batch", "2", "-o", str(o)).exit_code == 0
    assert victim.exists()


# ----------------------------------------------------------------------------- options that do not apply
USER_MODEL = '''
import symfuse as sf
def step():
    x = sf.tensor("x", (4, 3))
    w = sf.shared([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], name="w")
    y = sf.tanh(x @ w).sum()
    return [x], [y], [(w, w - 0.1 * sf.grad(y, w))]
'''


@pytest.mark.parametrize("cmd", ["compile", "inspect", "graph", "time"])
def test_batch_and_train_are_refused_for_a_model_file(run, tmp_path, cmd):
    path = tmp_path / "m.py"
    path.write_text(USER_MODEL)
    for flag in (["--batch", "8"], ["--train"]):
        out = run(cmd, f"{path}:step", *flag)
        assert out.exit_code == 2 and flag[0] in out.output, out.output


@pytest.mark.parametrize("cmd", ["compile", "inspect", "time"])
def test_arch_is_refused_without_a_cuda_target(run, cmd):
    for target in ("cpu", "interp"):
        out = run(cmd, "mlp", "--target", target, "--arch", "sm_90")
        assert out.exit_code == 2 and "--arch" in out.output and "cuda" in out.output, out.output


def test_time_calls_a_model_files_training_step_train(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(USER_MODEL)
    out = sym("time", f"{path}:step", "--repeat", "1", cache=tmp_path / "c")
    assert out.returncode == 0, out.stderr
    assert "(train, cpu)" in out.stdout, out.stdout


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize("cmd", ["compile", "inspect", "time", "graph", "export"])
def test_model_is_explained_in_help(run, cmd):
    from symfuse.nn import zoo
    text = " ".join(run(cmd, "--help").output.split())
    assert "MODEL is a zoo model" in text and "file.py:function" in text and ".onnx" in text, text
    assert all(name in text for name in zoo.ZOO), text


def test_every_option_has_help_text():
    import click
    missing = []

    def visit(cmd, path):
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden and not p.help:
                missing.append(f"{path} {p.opts[0]}")
        for name, sub in getattr(cmd, "commands", {}).items():
            if not sub.hidden:
                visit(sub, f"{path} {name}")
    visit(main, "symfuse")
    assert not missing, missing


# ----------------------------------------------------------------------------- errors in a model file
def test_an_error_in_a_model_file_is_its_message_and_line_not_a_traceback(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import symfuse as sf\n\ndef model():\n    x = sf.tensor('x', (2,))\n"
                    "    return [x], [x + undefined_name]\n")
    out = sym("compile", f"{path}:model", cache=tmp_path / "c")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and f"{path}:5" in out.stderr and "undefined_name" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


# ----------------------------------------------------------------------------- --ptx/--sass --kernel
@pytest.mark.parametrize("what,own,start", [("--sass", ".text.E_4x512_add_relu,", "//-"),
                                            ("--ptx", ".entry E_4x512_add_relu(", ".visible .entry")])
def test_one_kernels_listing_is_that_kernels_only(run, what, own, start):
    """E_4x512_add_relu is a prefix of E_4x512_add_relu_1, the unit's next kernel."""
    out = run("inspect", "mlp", "--batch", "4", "--target", "cuda", "--arch", "sm_90", what, "--kernel",
              "E_4x512_add_relu")
    if out.exit_code == 1 and "nvdisasm" in out.output:
        pytest.skip("no nvdisasm here")
    assert out.exit_code == 0, out.output
    assert own in out.output and out.output.startswith(start), out.output[:500]
    assert "E_4x512_add_relu_1" not in out.output and "E_4x10_add" not in out.output


# ----------------------------------------------------------------------------- memory_plan.json
def test_memory_plan_json_has_every_buffer(run, tmp_path):
    for o in ("miss", "hit"):      # the second compile comes from the graph cache
        assert run("compile", "mlp", "--batch", "4", "--train", "-o", str(tmp_path / o)).exit_code == 0
        plan = json.loads((tmp_path / o / "memory_plan.json").read_text())
        bufs = plan["buffers"]
        assert bufs and {"arena_bytes", "naive_bytes", "lower_bound_bytes"} <= set(plan)
        for b in bufs:
            assert 0 <= b["offset"] and b["offset"] + b["bytes"] <= plan["arena_bytes"]
            assert b["first_step"] <= b["last_step"]
        by_name = {b["name"]: b for b in bufs}
        shared = [b for b in bufs if b["in_place_of"]]
        assert shared and all(by_name[b["in_place_of"]]["offset"] == b["offset"] for b in shared)
        for a in bufs:          # live at once and not in place: disjoint bytes
            for b in bufs:
                if a is b or a["in_place_of"] == b["name"] or b["in_place_of"] == a["name"]:
                    continue
                if a["first_step"] <= b["last_step"] and b["first_step"] <= a["last_step"]:
                    assert a["offset"] + a["bytes"] <= b["offset"] or b["offset"] + b["bytes"] <= a["offset"]
        if o == "hit":
            assert plan == first
        first = plan


def test_an_interrupted_compiles_sources_are_not_counted_as_entries(run, tmp_path):
    build = tmp_path / "cache" / "cpu-lib" / "93" / ".tmp-build-x1"
    build.mkdir(parents=True)
    (build / "module.c").write_text("int x;\n" * 100)
    text = run("cache", "info").output
    assert "total: 0 entries, 0 B" in text and "1 unfinished build(s), 700 B" in text, text
    info = json.loads(run("cache", "info", "--json").output)
    assert info["entries"] == 0 and info["unfinished_builds"] == {"count": 1, "bytes": 700}


@pytest.mark.parametrize("args,needle", [(["--ir", "--kernel", "E_4x10_add"], "--ir"),
                                         (["--source", "--json"], "--json"),
                                         (["--ir", "--json"], "--json")])
def test_inspect_refuses_options_it_would_ignore(run, args, needle):
    out = run("inspect", "mlp", "--batch", "4", *args)
    assert out.exit_code == 2 and needle in out.output, out.output


def test_a_missing_package_is_not_a_usage_error(run, monkeypatch):
    """Exit 2 is for the command line's mistakes; a package the machine lacks exits 1."""
    from symfuse.nn import __main__ as nn_main

    def lacking(argv):
        raise ImportError("this needs somepackage: pip install somepackage")
    monkeypatch.setattr(nn_main, "main", lacking)
    r = run("train", "mlp", "--epochs", "1")
    assert r.exit_code == 1 and "pip install somepackage" in r.output

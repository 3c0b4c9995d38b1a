"""sf.export(..., target="cuda") / `symfuse export --target cuda` (issue 17): the
CUDA export builds and links with no CUDA anywhere, reports "no driver" cleanly
from C, and -- through a fake libcuda.so.1 (export_c/fake_libcuda.c) whose
kernels are the cuda-emu builds of the same CUDA source -- runs its launch plan
end to end: the same launches as the Python plan, the same numbers as the cpu
backend, training updates kept in the handle, cuda_graph capture and replay,
and the variant (CUBIN per arch, or PTX) chosen by the GPU's compute
capability. Every C program runs in a fresh `env -i PATH=/usr/bin:/bin` process
from a moved copy of the directory."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import symfuse as sf
from symfuse.codegen import cuda_module
from symfuse.nn import zoo
from symfuse.runtime.export import read_params
from symfuse.runtime.export.cuda import all_launches
from symfuse.runtime.toolchain import VERSION

CC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="export tests compile C programs with gcc")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "c")
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export_c")
NO_CUDA = ("libcuda", "libcudart", "libnvrtc")
NO_DRIVER, NO_DEVICE, ARCH = 15, 16, 17


def _nvrtc_or_skip():
    from symfuse.runtime.backends import get_backend
    if get_backend("cuda").missing():
        pytest.skip("the cuda export compiles CUBINs with NVRTC (symfuse[cuda])")


def _exported_copy(f, tmp_path, **kw):
    """Export ``f`` for cuda, move the directory to a fresh path, return (dir, Exported)."""
    _nvrtc_or_skip()
    first = tmp_path / "first"
    done = sf.export(f, str(first), target="cuda", **kw)
    moved = tmp_path / "moved" / "model"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    return str(moved), done


def _build(src, d, name, out, *extra):
    exe = os.path.join(d, out)
    subprocess.run([CC, "-O2", "-Wall", "-Werror", src, "-I", d, f'-DSF_MODEL_HEADER="{name}.h"', "-L", d,
                    f"-l{name}", "-Wl,-rpath,$ORIGIN", *extra, "-o", exe], check=True, capture_output=True, text=True)
    return exe


def _run_c(args, env=()):
    return subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", *env, *args], capture_output=True, text=True,
                          timeout=600)


def _write(d, arrays, stem="in"):
    paths = []
    for i, a in enumerate(arrays):
        paths.append(os.path.join(d, f"{stem}{i}.bin"))
        np.ascontiguousarray(a).tofile(paths[-1])
    return paths


@pytest.fixture(scope="module")
def fake_driver(tmp_path_factory):
    """The fake libcuda.so.1, built once."""
    d = tmp_path_factory.mktemp("fake_driver")
    lib = str(d / "libcuda.so.1")
    subprocess.run([CC, "-O2", "-Wall", "-Werror", "-shared", "-fPIC", os.path.join(HERE, "fake_libcuda.c"), "-o",
                    lib, "-ldl"], check=True, capture_output=True, text=True)
    return lib


def _fake_env(fake_driver, prog, where, **extra):
    """The environment that makes an export run on the fake driver: the kernel table of
    ``prog``'s cuda-emu builds (its unit and the library kernels it launches)."""
    from symfuse.runtime.cuda_emu import EmuModule
    lines = []
    unit = EmuModule(prog.source, name=prog.name, include_dirs=[cuda_module.TEMPLATE_DIR])
    lines += [f"{k} {i} {unit.lib_path}" for i, k in enumerate(unit.kernel_names)]
    names = sorted({ln.kernel for ln, _ in all_launches(prog.launches) if ln.library})
    if names:
        lib = EmuModule(cuda_module.library_source(names, version=VERSION), name="export_library",
                        include_dirs=[cuda_module.TEMPLATE_DIR])
        lines += [f"{k} {i} {lib.lib_path}" for i, k in enumerate(lib.kernel_names)]
    table, log = os.path.join(where, "kernels.txt"), os.path.join(where, "driver.log")
    with open(table, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    env = {"SF_CUDA_DRIVER_PATH": fake_driver, "FAKE_CUDA_KERNELS": table, "FAKE_CUDA_LOG": log, **extra}
    return [f"{k}={v}" for k, v in env.items()], log


def _log(path):
    with open(path) as fh:
        lines = fh.read().splitlines()
    os.remove(path)
    return lines


def _plan(prog):
    """The Python launch plan as the fake driver logs it."""
    out = []
    for ln, _ in prog.launches:
        g = (tuple(ln.grid) + (1, 1))[:3]
        b = (tuple(ln.block) + (1, 1))[:3]
        out.append(f"launch {ln.kernel} {' '.join(map(str, g + b))} {ln.shared_bytes}")
    return out


@pytest.fixture(scope="module")
def mlp_export(tmp_path_factory):
    m = zoo.get("mlp", batch=8)
    f = m.predict_function("cuda", arch="sm_90")
    d, done = _exported_copy(f, tmp_path_factory.mktemp("mlp"), arch="sm_90")
    return m, f, d, done


def test_builds_and_links_with_no_cuda(mlp_export):
    _, f, d, done = mlp_export
    name = done.name
    assert sorted(os.listdir(d)) == sorted([f"lib{name}.so", f"{name}.h", f"{name}.json", f"{name}.params"])
    lib = os.path.join(d, f"lib{name}.so")
    exported = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    symbols = {line.split()[-1] for line in exported.splitlines() if line.strip()}
    from symfuse.runtime.export.api import FUNCTIONS
    assert symbols == {f"{name}_{fn}" for fn in FUNCTIONS + ("run_device",)}
    dyn = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
    assert re.findall(r"R(?:UN)?PATH.*\[(.*)\]", dyn) == ["$ORIGIN"]
    needed = re.findall(r"NEEDED.*\[(.*)\]", dyn)
    assert needed and not any(n.startswith(NO_CUDA) for n in needed), needed
    ldd = _run_c(["ldd", lib]).stdout
    assert "not found" not in ldd and not any(n in ldd for n in NO_CUDA), ldd
    manifest = json.load(open(os.path.join(d, f"{name}.json")))
    t = manifest["target"]
    assert t["kind"] == "cuda" and t["arches"] == ["sm_90"] and t["ptx"] == "compute_90"
    assert re.fullmatch(r"\d+\.\d+", t["nvrtc"])
    assert t["images"]["sm_90"]["unit"] > 1000 and t["images"]["sm_90"]["library"] > 1000
    assert set(t["images"]) == {"sm_90", "compute_90"}
    launched = {ln.kernel for ln, _ in f._run.launches}
    assert set(t["resources"]["sm_90"]) == launched == set(manifest["kernels"])
    assert all(r["registers"] > 0 and r["spill_stores"] == 0 for r in t["resources"]["sm_90"].values())
    assert [(ln["kernel"], tuple(ln["grid"])) for ln in manifest["launches"]] == \
        [(ln.kernel, (tuple(ln.grid) + (1, 1))[:3]) for ln, _ in f._run.launches]
    header = open(os.path.join(d, f"{name}.h")).read()
    assert f"int {name}_run_device(" in header and "SF_ERR_NO_CUDA_DRIVER = 15" in header


def test_without_a_driver_create_fails_cleanly(mlp_export, tmp_path):
    m, f, d, done = mlp_export
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, done.name, "predict")
    x = m.example_batch(0)[0]
    proc = _run_c([exe, *_write(d, [x]), os.path.join(d, "out0.bin")])
    assert proc.returncode == NO_DRIVER, proc.stderr
    assert "no CUDA driver" in proc.stderr and "libcuda.so.1" in proc.stderr
    probe = _build(os.path.join(HERE, "cuda_nodriver.c"), d, done.name, "nodriver")
    proc = _run_c([probe])
    assert proc.returncode == NO_DRIVER, proc.stdout + proc.stderr
    got = {line.split(" ", 2)[0]: (int(line.split(" ", 2)[1]), line.split(" ", 2)[2])
           for line in proc.stdout.splitlines()}
    assert "create handle-not-null" not in proc.stdout
    assert {k: v[0] for k, v in got.items()} == {
        "create": NO_DRIVER, "create_again": NO_DRIVER, "create_null_out": 1, "run_null_handle": 1,
        "run_device_null_handle": 1, "get_null_handle": 1, "save_null_handle": 1, "load_null_handle": 1,
        "num_inputs": 1}
    assert "libcuda.so.1" in got["create"][1] and got["create_again"][1] == got["create"][1]
    assert "run_device: handle is NULL" in got["run_device_null_handle"][1]
    # a driver library that is not one: still a status, not a crash
    proc = _run_c([probe], env=[f"SF_CUDA_DRIVER_PATH={os.path.join(d, done.name + '.params')}"])
    assert proc.returncode == NO_DRIVER and ".params" in proc.stdout


def test_launch_plan_runs_end_to_end_on_the_fake_driver(mlp_export, fake_driver, tmp_path):
    m, f, d, done = mlp_export
    env, log = _fake_env(fake_driver, f._run, str(tmp_path))
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, done.name, "predict")
    x = m.example_batch(0)[0]
    out = os.path.join(d, "out0.bin")
    proc = _run_c([exe, *_write(d, [x]), out], env)
    assert proc.returncode == 0, proc.stderr
    want = m.predict_function("cpu")(x)
    np.testing.assert_allclose(np.fromfile(out, want.dtype).reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    lines = _log(log)
    assert lines[:2] == ["module cubin sm_90", "module cubin sm_90"]     # the unit's, the library kernels'
    assert [ln for ln in lines if ln.startswith("launch")] == _plan(f._run)
    assert lines[-1] == "release 0 live allocations, 0 modules"         # destroy frees everything


def test_bad_use_from_c_with_the_fake_driver(mlp_export, fake_driver, tmp_path):
    """The cpu export's misuse cases give the same codes on a CUDA export."""
    m, f, d, done = mlp_export
    env, _ = _fake_env(fake_driver, f._run, str(tmp_path))
    other = sf.export(zoo.get("lenet", batch=8).predict_function("cpu"), str(tmp_path / "other"))
    params = open(os.path.join(d, f"{done.name}.params"), "rb").read()
    blobs = {"truncated": params[:-1000], "bad_magic": b"XX" + params[2:],
             "checksum": params[:-10] + bytes([params[-10] ^ 0xFF]) + params[-9:]}
    for k, blob in blobs.items():
        (tmp_path / f"{k}.params").write_bytes(blob)
    paths = [str(tmp_path / "missing.params"), str(tmp_path / "truncated.params"), other.files["params"],
             str(tmp_path / "bad_magic.params"), str(tmp_path / "checksum.params")]
    exe = _build(os.path.join(HERE, "misuse.c"), d, done.name, "misuse")
    proc = _run_c([exe, *paths], env)
    assert proc.returncode == 0, proc.stderr
    got = {line.split(" ", 2)[0]: int(line.split(" ", 2)[1]) for line in proc.stdout.splitlines()}
    assert got == {"missing": 7, "truncated": 11, "other_model": 10, "bad_magic": 8, "checksum": 12,
                   "create_null_out": 1, "create_default": 0, "run_null_handle": 1, "run_null_input0": 1,
                   "run_null_inputs": 1, "run_small_input": 3, "run_big_output": 3, "run_count": 2,
                   "run_overlap": 4, "get_unknown": 6, "get_wrong_size": 3, "set_null_buf": 1,
                   "load_other_model": 10, "query_out_of_range": 0, "run_after_errors": 0}, proc.stdout


@pytest.fixture(scope="module")
def lenet_two_arches(tmp_path_factory):
    m = zoo.get("lenet", batch=8)
    f = m.predict_function("cuda", arch="sm_80")
    d, done = _exported_copy(f, tmp_path_factory.mktemp("lenet"), arch=["sm_80", "sm_90"])
    return m, f, d, done


def test_two_arches_and_ptx_pick_by_compute_capability(lenet_two_arches, fake_driver, tmp_path):
    m, f, d, done = lenet_two_arches
    t = done.manifest["target"]
    assert t["arches"] == ["sm_80", "sm_90"] and set(t["images"]) == {"sm_80", "sm_90", "compute_90"}
    assert all(t["resources"][a] for a in ("sm_80", "sm_90"))
    env, log = _fake_env(fake_driver, f._run, str(tmp_path))
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, done.name, "predict")
    x = m.example_batch(0)[0]
    inputs = _write(d, [x])
    out = os.path.join(d, "out0.bin")
    want = m.predict_function("cpu")(x)
    # (compute capability, what is loaded): the newest CUBIN of the same major version not newer
    # than the GPU, else the PTX (for a newer GPU), else nothing fits
    for cc, loaded in ((80, "module cubin sm_80"), (86, "module cubin sm_80"), (90, "module cubin sm_90"),
                       (120, "module ptx sm_90")):
        proc = _run_c([exe, *inputs, out], env + [f"FAKE_CUDA_CC={cc}"])
        assert proc.returncode == 0, (cc, proc.stderr)
        lines = _log(log)
        assert lines[0] == loaded, (cc, lines[:2])
        assert [ln for ln in lines if ln.startswith("launch")] == _plan(f._run)
        np.testing.assert_allclose(np.fromfile(out, want.dtype).reshape(want.shape), want, rtol=1e-4, atol=1e-6)
    proc = _run_c([exe, *inputs, out], env + ["FAKE_CUDA_CC=75"])
    assert proc.returncode == ARCH and "compute capability 7.5" in proc.stderr and "sm_80, sm_90" in proc.stderr
    for extra, code, text in ((["FAKE_CUDA_DEVICES=0"], NO_DEVICE, "sees no GPU"),
                              (["FAKE_CUDA_INIT=100"], NO_DEVICE, "CUDA_ERROR_NO_DEVICE"),
                              (["SF_CUDA_DEVICE=3"], NO_DEVICE, "SF_CUDA_DEVICE=3"),
                              (["FAKE_CUDA_INIT=46"], 18, "cuInit failed")):
        proc = _run_c([exe, *inputs, out], env + extra)
        assert proc.returncode == code and text in proc.stderr, (extra, proc.stderr)


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["eager", "cuda_graph"])
def test_training_steps_update_the_handle(cuda_graph, fake_driver, tmp_path):
    m = zoo.get("mlp", batch=8)
    f = m.train_function("cuda", arch="sm_90", **({"cuda_graph": True} if cuda_graph else {}))
    d, done = _exported_copy(f, tmp_path)        # the parameters before any step
    assert done.manifest["target"]["cuda_graph"] is cuda_graph and done.manifest["updates"]
    cpu = m.train_function("cpu")
    batch = m.example_batch(1)
    losses = [float(np.asarray(cpu(*batch)[0])) for _ in range(3)]
    env, log = _fake_env(fake_driver, f._run, str(tmp_path))
    exe = _build(os.path.join(EXAMPLES, "train.c"), d, done.name, "train")
    saved = os.path.join(d, "trained.params")
    proc = _run_c([exe, "-s", "3", "-o", saved, *_write(d, batch)], env)
    assert proc.returncode == 0, proc.stderr
    c_losses = [float(re.search(r"output0=(\S+)", ln).group(1)) for ln in proc.stdout.splitlines()]
    np.testing.assert_allclose(c_losses, losses, rtol=1e-4)
    trained = read_params(saved)
    for p, s in zip(done.manifest["params"], cpu.shared):
        np.testing.assert_allclose(trained[p["name"]], s.get_value(), rtol=1e-4, atol=1e-5, err_msg=p["name"])
    lines = _log(log)
    plan = _plan(f._run)
    launched = [ln for ln in lines if ln.startswith("launch")]
    assert launched == plan * 3
    captured = [ln for ln in lines if ln.startswith(("capture", "graph_launch"))]
    if cuda_graph:      # captured by the first step, then one graph launch a step
        assert captured == [f"capture {p.split()[1]}" for p in plan] + [f"graph_launch {len(plan)} launches"] * 3
    else:
        assert captured == []


def test_a_cpu_function_or_a_function_maker_is_compiled_for_cuda(mlp_export, tmp_path):
    """What is exported is the plan of the function compiled for cuda, whatever was given."""
    m, f, _, done = mlp_export
    _nvrtc_or_skip()
    for given in (m.predict_function("cpu"), m.predict_function):
        other = sf.export(given, str(tmp_path / "x"), target="cuda", arch="sm_90")
        assert other.manifest["launches"] == done.manifest["launches"]
        assert other.manifest["params_fingerprint"] == done.manifest["params_fingerprint"]
    graph = sf.export(f, str(tmp_path / "g"), target="cuda", cuda_graph=True)
    assert graph.manifest["target"]["cuda_graph"] is True and graph.manifest["target"]["arches"] == ["sm_90"]


def test_arch_and_target_are_checked(tmp_path):
    f = zoo.get("mlp", batch=8).predict_function("cpu")
    for bad in ("compute_90", "sm90", "gfx90a"):
        with pytest.raises(sf.InputError, match="not a CUDA GPU architecture"):
            sf.export(f, str(tmp_path / "x"), target="cuda", arch=bad)
    with pytest.raises(sf.InputError, match="target"):
        sf.export(f, str(tmp_path / "x"), target="rocm")
    with pytest.raises(sf.InputError, match="options of target='cuda'"):
        sf.export(f, str(tmp_path / "x"), arch="sm_90")


def test_cli_export_cuda(tmp_path):
    _nvrtc_or_skip()
    from click.testing import CliRunner
    from symfuse.cli import main
    res = CliRunner().invoke(main, ["export", "mlp", "--batch", "4", "--train", "--target", "cuda", "--arch", "sm_90",
                                    "--arch", "sm_80", "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    manifest = json.load(open(tmp_path / "e" / "mlp_train.json"))
    assert manifest["target"]["arches"] == ["sm_90", "sm_80"] and manifest["inputs"][0]["shape"][0] == 4
    assert "libcuda.so.1" in res.output
    res = CliRunner().invoke(main, ["export", "mlp", "--target", "cuda", "--cuda-graph", "-o", str(tmp_path / "h")])
    assert res.exit_code == 0, res.output
    target = json.load(open(tmp_path / "h" / "mlp_predict.json"))["target"]
    assert target["cuda_graph"] is True and target["arches"] == ["sm_90"]
    bad = CliRunner().invoke(main, ["export", "mlp", "--target", "cuda", "--arch", "compute_90", "-o",
                                    str(tmp_path / "f")])
    assert bad.exit_code == 2 and "not a GPU architecture" in bad.output
    bad = CliRunner().invoke(main, ["export", "mlp", "--arch", "sm_90", "-o", str(tmp_path / "g")])
    assert bad.exit_code == 2 and "--target cuda" in bad.output


def test_names_are_checked_and_escaped(fake_driver, tmp_path):
    x = sf.tensor('in "*/ ??/ x\n', (4, 3), "float32")
    w = sf.shared(np.arange(6, dtype=np.float32).reshape(3, 2), name='W"); abort(); /*')
    f = sf.function([x], x @ w + 1, device="cuda", arch="sm_90", name="tiny")
    with pytest.raises(sf.InputError, match="C identifier"):
        sf.export(f, str(tmp_path / "bad"), name="../evil", target="cuda")
    with pytest.raises(sf.InputError, match="reserved"):
        sf.export(f, str(tmp_path / "bad"), name="sf", target="cuda")
    d, done = _exported_copy(f, tmp_path, name="tiny_model")
    env, _ = _fake_env(fake_driver, f._run, str(tmp_path))
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, done.name, "predict")
    xv = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    out = os.path.join(d, "y.bin")
    proc = _run_c([exe, *_write(d, [xv]), out], env)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.fromfile(out, np.float32).reshape(4, 2), xv @ w.get_value() + 1, rtol=1e-6)
    assert list(read_params(os.path.join(d, "tiny_model.params"))) == ['W"); abort(); /*']


def test_results_that_are_arguments_or_constants_and_swapped_parameters(fake_driver, tmp_path):
    """Every source of a result: a kernel's slot, an input returned as is, a constant; kernels
    reading a constant buffer; updates that swap two parameters (each reads the other's old value)."""
    x = sf.tensor("x", (4, 3), "float32")
    a0, b0 = np.arange(6, dtype=np.float32).reshape(3, 2), np.full((3, 2), 5, np.float32)
    a, b = sf.shared(a0.copy(), name="a"), sf.shared(b0.copy(), name="b")
    k = sf.constant(np.arange(3, dtype=np.float32) * 0.5)
    f = sf.function([x], [x @ a + 1, x, sf.constant(np.arange(2, dtype=np.float32)), (x * x).sum(),
                          sf.where(x > k, x, k * x)], updates=[(a, b), (b, a)], device="cuda", arch="sm_90")
    kinds = {kind for kind, _ in f._run.layout.result_plan}
    refs = {r[0] for _, rs in f._run.launches for r in rs}
    assert kinds == {"slot", "param", "const"} and "const" in refs      # what this test is for
    d, done = _exported_copy(f, tmp_path, name="sources")
    env, _ = _fake_env(fake_driver, f._run, str(tmp_path))
    xv = np.random.default_rng(1).random((4, 3), dtype=np.float32) - 0.25
    want = [xv @ a0 + 1, xv, np.arange(2, dtype=np.float32), np.float32((xv * xv).sum()),
            np.where(xv > np.arange(3) * 0.5, xv, np.arange(3) * 0.5 * xv).astype(np.float32)]
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, done.name, "predict")
    outs = [os.path.join(d, f"out{j}.bin") for j in range(len(want))]
    proc = _run_c([exe, *_write(d, [xv]), *outs], env)
    assert proc.returncode == 0, proc.stderr
    for j, (path, w) in enumerate(zip(outs, want)):
        np.testing.assert_allclose(np.fromfile(path, np.float32).reshape(np.shape(w)), w, rtol=1e-5, err_msg=j)
    train = _build(os.path.join(EXAMPLES, "train.c"), d, done.name, "train")
    for steps, (wa, wb) in ((1, (b0, a0)), (2, (a0, b0))):
        saved = os.path.join(d, f"after{steps}.params")
        proc = _run_c([train, "-s", str(steps), "-o", saved, *_write(d, [xv])], env)
        assert proc.returncode == 0, proc.stderr
        got = read_params(saved)
        np.testing.assert_array_equal(got["a"], wa)
        np.testing.assert_array_equal(got["b"], wb)


def test_run_device_takes_device_pointers(mlp_export, fake_driver, tmp_path):
    """Under the fake driver device pointers are host addresses: run_device on them gives run's output."""
    m, f, d, done = mlp_export
    env, _ = _fake_env(fake_driver, f._run, str(tmp_path))
    exe = _build(os.path.join(HERE, "cuda_device.c"), d, done.name, "device")
    host, dev = os.path.join(d, "host.bin"), os.path.join(d, "device.bin")
    proc = _run_c([exe, host, dev], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dict(line.split() for line in proc.stdout.splitlines()) == {
        "run": "0", "run_device": "0", "run_device_count": "2", "run_device_null_outputs": "1",
        "run_device_zero_input": "1"}
    got = np.fromfile(host, np.float32)
    assert got.any() and np.array_equal(got, np.fromfile(dev, np.float32))


def _loops(device, **options):
    """A scan, a reverse scan, a while loop and a cond (both branches taken by some input)."""
    xs = sf.tensor("xs", (6, 4), "float32")
    x = sf.tensor("x", (4,), "float32")
    h, ys = sf.scan(lambda c, xt: (c * 0.5 + xt, (c * xt).sum()), sf.zeros((4,)), xs)
    r, _ = sf.scan(lambda c, xt: (c * 0.9 - xt, xt.sum()), x, xs, reverse=True)
    w = sf.while_loop(lambda c: c.sum() < 100, lambda c: c * c + 1, x)
    k = sf.cond(x.sum() > 0, lambda a: a * 2, lambda a: a - 1, x)
    return sf.function([xs, x], [h, ys, r, w, k], device=device, name="loops", **options)


def test_loops_and_branches_run_as_the_python_executor_runs_them(fake_driver, tmp_path):
    f = _loops("cuda", arch="sm_90", cuda_graph=True)
    d, done = _exported_copy(f, tmp_path)
    assert done.manifest["control"] == ["cond", "scan", "while_loop"]
    assert done.manifest["target"]["cuda_graph"] is False       # the host reads flags: eager, as in Python
    env, log = _fake_env(fake_driver, f._run, str(tmp_path))
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, done.name, "predict")
    cpu = _loops("cpu")
    xsv = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    trips = []
    for xv in (np.arange(4, dtype=np.float32) + 0.5, -np.arange(4, dtype=np.float32) - 1):
        want = cpu(xsv, xv)
        outs = [os.path.join(d, f"out{j}.bin") for j in range(len(want))]
        proc = _run_c([exe, *_write(d, [xsv, xv]), *outs], env)
        assert proc.returncode == 0, proc.stderr
        for j, w in enumerate(want):
            got = np.fromfile(outs[j], np.float32).reshape(np.shape(w))
            np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-6, err_msg=f"output {j}")
        trips.append([ln.split()[1] for ln in _log(log) if ln.startswith("launch")])
    assert trips[0] != trips[1]     # the while loop's trip count and the cond's branch follow the data


def test_a_scan_training_step_under_cuda_graph(fake_driver, tmp_path):
    """seqdigits' LSTM step (a scan, and the reverse scan of its gradient) captured with its
    loops unrolled: carry copies and launches in one graph, replayed each step."""
    m = zoo.get("seqdigits", batch=8)
    f = m.train_function("cuda", arch="sm_90", cuda_graph=True)
    d, done = _exported_copy(f, tmp_path)
    assert done.manifest["control"] == ["scan"] and done.manifest["target"]["cuda_graph"] is True
    cpu = m.train_function("cpu")
    batch = m.example_batch(1)
    losses = [float(np.asarray(cpu(*batch)[0])) for _ in range(3)]
    env, log = _fake_env(fake_driver, f._run, str(tmp_path))
    exe = _build(os.path.join(EXAMPLES, "train.c"), d, done.name, "train")
    saved = os.path.join(d, "trained.params")
    proc = _run_c([exe, "-s", "3", "-o", saved, *_write(d, batch)], env)
    assert proc.returncode == 0, proc.stderr
    c_losses = [float(re.search(r"output0=(\S+)", ln).group(1)) for ln in proc.stdout.splitlines()]
    np.testing.assert_allclose(c_losses, losses, rtol=1e-4)
    trained = read_params(saved)
    for p, s in zip(done.manifest["params"], cpu.shared):
        np.testing.assert_allclose(trained[p["name"]], s.get_value(), rtol=1e-4, atol=1e-5, err_msg=p["name"])
    lines = _log(log)
    captured = [ln for ln in lines if ln.startswith("capture ") and ln != "capture copy"]
    assert "capture copy" in lines and len(captured) > len(f._run.launches)       # unrolled
    assert [ln for ln in lines if ln.startswith("graph_launch")] == [f"graph_launch {len(captured)} launches"] * 3


def test_a_scalar_parameter_keeps_its_shape(tmp_path):
    """A 0-d shared variable (a step counter) is written with shape (), the layout the header checks."""
    x = sf.tensor("x", (3,), "float32")
    step = sf.shared(np.float32(0), name="step")
    f = sf.function([x], x * step, updates=[(step, step + 1)], device="cpu", name="counter")
    done = sf.export(f, str(tmp_path / "c"))
    assert read_params(done.files["params"])["step"].shape == ()
    assert done.manifest["params"][0]["shape"] == []


def _real_gpu() -> bool:
    import ctypes
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except OSError:
        return False


@pytest.mark.cuda
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["eager", "cuda_graph"])
def test_on_a_real_gpu(cuda_graph, tmp_path):
    """Where a GPU is lent: LeNet-5 inference and three MLP training steps from C on the real
    driver equal the cpu backend's."""
    assert _real_gpu(), "tests marked cuda need an NVIDIA GPU and its driver (pytest -m cuda where one is lent)"
    opts = {"cuda_graph": True} if cuda_graph else {}
    m = zoo.get("lenet", batch=8)
    d, done = _exported_copy(m.predict_function("cuda", arch="sm_90", **opts), tmp_path / "lenet",
                             arch=["sm_80", "sm_90"])
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, done.name, "predict")
    x = m.example_batch(0)[0]
    out = os.path.join(d, "out0.bin")
    proc = _run_c([exe, "-r", "20", *_write(d, [x]), out])
    assert proc.returncode == 0, proc.stderr
    want = m.predict_function("cpu")(x)
    np.testing.assert_allclose(np.fromfile(out, want.dtype).reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    m = zoo.get("mlp", batch=8)
    d, done = _exported_copy(m.train_function("cuda", arch="sm_90", **opts), tmp_path / "mlp", arch=["sm_80", "sm_90"])
    cpu = m.train_function("cpu")
    batch = m.example_batch(1)
    losses = [float(np.asarray(cpu(*batch)[0])) for _ in range(3)]
    exe = _build(os.path.join(EXAMPLES, "train.c"), d, done.name, "train")
    proc = _run_c([exe, "-s", "3", "-o", os.path.join(d, "t.params"), *_write(d, batch)])
    assert proc.returncode == 0, proc.stderr
    c_losses = [float(re.search(r"output0=(\S+)", ln).group(1)) for ln in proc.stdout.splitlines()]
    np.testing.assert_allclose(c_losses, losses, rtol=1e-4)

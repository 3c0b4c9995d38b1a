"""sf.export(..., r=True) / `symfuse export --r` (issue 17): the R wrapper of an
export. The directory is copied to a fresh place (the original removed) and each
R script runs with Rscript in a fresh process with `env -i PATH=/usr/bin:/bin`
(no venv, no LD_LIBRARY_PATH, the C locale). Arrays cross between Python and R
as little-endian files in C order; the R side indexes them with its own formula
(`read_c`, `write_c` below), not with the wrapper's aperm, so a layout mistake in
the wrapper cannot cancel out."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import symfuse as sf
from symfuse.nn import zoo
from symfuse.runtime.export import read_params

RSCRIPT = shutil.which("Rscript")
SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")
pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None, reason="export tests compile C with gcc"),
    pytest.mark.skipif(RSCRIPT is None, reason="Rscript not found: apt-get install r-base-core"),
]

R_HELPERS = r"""
c_offsets <- function(shape) {
  idx <- arrayInd(seq_len(prod(shape)), shape)
  off <- rep(0, nrow(idx))
  for (k in seq_along(shape)) off <- off * shape[k] + (idx[, k] - 1)
  off + 1
}
read_c <- function(path, shape, what = "double", size = 4L) {
  v <- readBin(path, what, n = prod(shape), size = size, endian = "little")
  if (length(shape) < 2L) return(v)
  x <- array(v[1], dim = shape)
  x[] <- v[c_offsets(shape)]
  x
}
write_c <- function(x, path) {
  v <- as.double(x)
  if (length(dim(x)) >= 2L) { v <- double(length(x)); v[c_offsets(dim(x))] <- as.double(x) }
  writeBin(v, path, size = 8L, endian = "little")
}
"""


def _exported_copy(f, tmp_path, name=None):
    first = tmp_path / "first"
    done = sf.export(f, str(first), name, r=True)
    moved = tmp_path / "moved" / "model"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    return str(moved), done.name


def _rscript(tmp_path, code, check=True):
    script = tmp_path / "script.R"
    script.write_text(R_HELPERS + code)
    proc = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", RSCRIPT, "--vanilla", str(script)],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _r_shape(shape):
    return "c(" + ", ".join(f"{d}L" for d in shape) + ")" if shape else "integer(0)"


def _read_r(path, shape):
    return np.fromfile(path, "<f8").reshape(shape)


@pytest.mark.parametrize("model", ["lenet", "mlp"])
def test_predict_from_r_equals_python(model, tmp_path):
    m = zoo.get(model, batch=8)
    f = m.predict_function("cpu")
    d, name = _exported_copy(f, tmp_path)
    x = m.example_batch(0)[0]
    want = f(x)
    # a matrix-or-higher parameter replaced from R: the layout of set_param, then of predict with it
    w = next(s for s in f.shared if len(s.get_value().shape) >= 2)
    w2 = np.random.default_rng(1).standard_normal(w.get_value().shape).astype(np.float32) * 0.05
    w.set_value(w2)
    want2 = f(x)
    x.astype("<f4").tofile(tmp_path / "x.bin")
    w2.astype("<f4").tofile(tmp_path / "w2.bin")
    proc = _rscript(tmp_path, f"""
source("{d}/{name}.R")
m <- {name}_load()
x <- read_c("x.bin", {_r_shape(x.shape)})
p <- predict(m, x)
cat("dim", dim(p), "\\n")
{'stopifnot(identical(predict(m, as.data.frame(x)), p))' if x.ndim == 2 else ''}
write_c(p, "p1.bin")
m2 <- {name}_load()                        # a second handle: the library stays loaded for the first
stopifnot(identical(predict(m2, x), p))
rm(m2); invisible(gc())
set_param(m, "{w.name}", read_c("w2.bin", {_r_shape(w2.shape)}))
write_c(get_param(m, "{w.name}"), "w2_back.bin")
write_c(predict(m, x), "p2.bin")
""")
    assert proc.stdout.split() == ["dim", *map(str, want.shape)]
    np.testing.assert_allclose(_read_r(tmp_path / "p1.bin", want.shape), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(_read_r(tmp_path / "w2_back.bin", w2.shape), w2)
    np.testing.assert_allclose(_read_r(tmp_path / "p2.bin", want2.shape), want2, rtol=1e-5, atol=1e-7)
    assert not np.allclose(want, want2)          # the parameter mattered
    manifest = json.load(open(os.path.join(d, f"{name}.json")))
    assert manifest["r"] == {"script": f"{name}.R", "library": f"lib{name}_r.so", "source": f"{name}_r.c"}
    dyn = subprocess.run(["readelf", "-d", os.path.join(d, f"lib{name}_r.so")], capture_output=True, text=True).stdout
    assert re.findall(r"R(?:UN)?PATH.*\[(.*)\]", dyn) == ["$ORIGIN"] and f"[lib{name}.so]" in dyn
    ldd = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "ldd", os.path.join(d, f"lib{name}_r.so")],
                         capture_output=True, text=True).stdout
    assert "not found" not in ldd and f"{d}/lib{name}.so" in ldd.replace("/./", "/"), ldd
    for target in re.findall(r"=> (\S+)", ldd):
        real = os.path.realpath(target)
        assert real.startswith(os.path.realpath(d) + "/") or real.startswith(SYSTEM_DIRS), (target, ldd)


@pytest.mark.parametrize("model", ["lenet", "mlp"])
def test_training_steps_from_r_equal_python(model, tmp_path):
    m = zoo.get(model, batch=8)
    f = m.train_function("cpu")
    d, name = _exported_copy(f, tmp_path)        # the parameters before any step
    x, y = m.example_batch(1)
    steps = 3
    x.astype("<f4").tofile(tmp_path / "x.bin")
    y.astype("<i4").tofile(tmp_path / "y.bin")
    proc = _rscript(tmp_path, f"""
source("{d}/{name}.R")
m <- {name}_load()
x <- read_c("x.bin", {_r_shape(x.shape)})
y <- readBin("y.bin", "integer", n = {y.size}L, size = 4L, endian = "little")
for (i in seq_len({steps})) {{
  out <- if (i == 2L) train_step(m, y = y, x = x) else train_step(m, x, y)
  cat(names(out)[1], sprintf("%.9g", out[[1]]), "\\n")
}}
save_params(m, "trained.params")
""")
    losses = [float(np.asarray(f(x, y)[0])) for _ in range(steps)]
    lines = [ln.split() for ln in proc.stdout.splitlines()]
    assert [ln[0] for ln in lines] == ["output0"] * steps
    np.testing.assert_allclose([float(ln[1]) for ln in lines], losses, rtol=1e-5)
    assert losses[0] != losses[-1]               # the steps did change the parameters
    trained = read_params(str(tmp_path / "trained.params"))
    manifest = json.load(open(os.path.join(d, f"{name}.json")))
    assert len(trained) == len(f.shared)
    for p, s in zip(manifest["params"], f.shared):
        np.testing.assert_allclose(trained[p["name"]], s.get_value(), rtol=1e-5, atol=1e-6, err_msg=p["name"])


def test_bad_use_from_r_gives_r_errors(tmp_path):
    m = zoo.get("lenet", batch=8)
    d, name = _exported_copy(m.train_function("cpu"), tmp_path)
    other = sf.export(zoo.get("mlp", batch=8).predict_function("cpu"), str(tmp_path / "other"))
    x, y = m.example_batch(0)
    x.astype("<f4").tofile(tmp_path / "x.bin")
    y.astype("<i4").tofile(tmp_path / "y.bin")
    proc = _rscript(tmp_path, f"""
source("{d}/{name}.R")
m <- {name}_load()
x <- read_c("x.bin", {_r_shape(x.shape)})
y <- readBin("y.bin", "integer", n = {y.size}L, size = 4L, endian = "little")
try_case <- function(case, expr) {{
  msg <- tryCatch({{ expr; "no error" }}, error = function(e)
    paste(class(e)[1], if (is.null(e$status)) "NA" else e$status, conditionMessage(e)))
  cat(case, "\\t", gsub("\\n", " ", msg), "\\n", sep = "")
}}
try_case("shape", train_step(m, x[, , 1:27, , drop = FALSE], y))
try_case("ndim", train_step(m, array(x, c(8, 28, 28)), y))
try_case("batch", train_step(m, x, y[1:7]))
try_case("count", train_step(m, x))
try_case("text", train_step(m, "x", y))
try_case("badname", train_step(m, x = x, z = y))
try_case("twice", train_step(m, x = x, x = x))
try_case("factor", train_step(m, x, factor(y)))
try_case("fraction", train_step(m, x, y + 0.5))
y_na <- y; y_na[3] <- NA
try_case("na", train_step(m, x, y_na))
try_case("range", train_step(m, x, y + 2^31))
try_case("predict", predict(m, x))
try_case("unknown", get_param(m, "nope"))
try_case("set_shape", set_param(m, "conv0.W", matrix(0, 20, 25)))
try_case("missing", load_params(m, "missing.params"))
try_case("other", load_params(m, "{other.files['params']}"))
try_case("bad_dir", {name}_load("{tmp_path}/nowhere"))
try_case("after", train_step(m, x, y))
close(m)
try_case("closed", train_step(m, x, y))
cat("survived\\n")
""")
    got = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
    assert proc.stdout.rstrip().endswith("survived")
    dims = "c(8, 1, 28, 28) (the batch first)"
    assert got["shape"] == f"symfuse_error NA train_step: input 1 (x) must be an array of dim {dims}; got an " \
                           f"array of dim c(8, 1, 27, 28)"
    assert got["ndim"].endswith(f"must be an array of dim {dims}; got an array of dim c(8, 28, 28)")
    assert got["batch"].endswith("input 2 (y) must be a vector of length 8; got a vector of length 7")
    assert got["count"].endswith(f"{name} takes 2 input(s) (x, y), 1 given")
    assert "input 1 (x) must be numeric" in got["text"] and "not character" in got["text"]
    assert got["badname"].endswith(f"train_step: {name} has no input named z (its inputs: x, y)")
    assert got["twice"].endswith("train_step: input x given twice")
    assert "input 2 (y) is a factor" in got["factor"]
    assert re.search(r"^symfuse_error -1 .*input 2 \(y\): element 1 \(C order\) is \d+\.5, which int32 cannot "
                     r"hold \[SF_R_ERR_VALUE\]$", got["fraction"]), got["fraction"]
    assert got["na"].endswith("input 2 (y): element 3 (C order) is NA or NaN, which int32 cannot hold [SF_R_ERR_VALUE]")
    assert "which int32 cannot hold" in got["range"]
    assert "is a training step" in got["predict"] and "train_step(model, ...)" in got["predict"]
    assert got["unknown"].startswith("symfuse_error 6 ") and 'no parameter named "nope" [SF_ERR_UNKNOWN_PARAM]' \
        in got["unknown"]
    assert got["set_shape"].endswith("set_param: conv0.W must be an array of dim c(20, 1, 5, 5) (the batch first); "
                                     "got a matrix of dim c(20, 25)")
    assert got["missing"].startswith("symfuse_error 7 load_params: ") and "No such file" in got["missing"]
    assert got["other"].startswith("symfuse_error 10 load_params: ") and "another model" in got["other"]
    assert "nowhere/liblenet_train_r.so not found" in got["bad_dir"]
    assert got["after"] == "no error"            # the failures changed nothing
    assert got["closed"].endswith("train_step: model lenet_train was closed")


def test_names_reach_r_escaped(tmp_path):
    x = sf.tensor('in "*/ ??/ x\n', (4, 3), "float32")
    names = ['W"); abort(); /*', "b\\$`{é}\u2603"]
    w = sf.shared(np.arange(6, dtype=np.float32).reshape(3, 2), name=names[0])
    b = sf.shared(np.array([0.5, -1.0], dtype=np.float32), name=names[1])
    f = sf.function([x], x @ w + b, device="cpu", name="tiny")
    d, name = _exported_copy(f, tmp_path, name="tiny_model")
    xv = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    xv.astype("<f4").tofile(tmp_path / "x.bin")
    _rscript(tmp_path, f"""
source("{d}/{name}.R")
m <- {name}_load()
write_c(predict(m, read_c("x.bin", c(4L, 3L))), "y.bin")
con <- file("names.bin", "wb")
for (p in m$params) writeBin(c(charToRaw(enc2utf8(p$name)), as.raw(0L)), con)
close(con)
write_c(get_param(m, m$params[[2]]$name), "b.bin")
write_c(get_param(m, m$params[[1]]$name), "w.bin")
""")
    np.testing.assert_allclose(_read_r(tmp_path / "y.bin", (4, 2)), f(xv), rtol=1e-6)
    assert (tmp_path / "names.bin").read_bytes().decode("utf-8").split("\0")[:-1] == names
    np.testing.assert_array_equal(_read_r(tmp_path / "b.bin", (2,)), b.get_value())
    np.testing.assert_array_equal(_read_r(tmp_path / "w.bin", (3, 2)), w.get_value())


def test_cli_export_r(tmp_path):
    from click.testing import CliRunner
    from symfuse.cli import main
    res = CliRunner().invoke(main, ["export", "mlp", "--batch", "4", "--r", "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert "mlp_predict_load()" in res.output
    for f in ("mlp_predict.R", "libmlp_predict_r.so", "mlp_predict_r.c"):
        assert (tmp_path / "e" / f).is_file(), f
    proc = _rscript(tmp_path, f'source("{tmp_path}/e/mlp_predict.R"); m <- mlp_predict_load(); print(m)')
    assert "input  x: float32 c(4, 784)" in proc.stdout


def test_dtypes_convert_exactly(tmp_path):
    a = sf.tensor("a", (2, 3), "float64")
    k = sf.tensor("k", (3,), "int64")
    h = sf.tensor("h", (8,), "float16")
    u = sf.tensor("u", (2,), "uint8")
    f = sf.function([a, k, h, u], [a * 2, k + k, h, a > 0, u + u], device="cpu", name="dtypes")
    d, name = _exported_copy(f, tmp_path)
    av = np.array([[1 / 3, -2.0, 1e300], [0.0, -1e-300, 7.0]])
    kv = np.array([2**40 + 1, -5, 0])
    # rounding to float16 from the double itself: the 5th rounds up, through a float32 it would tie to 1.0
    hv = np.array([1 / 3, 0.1, 1e-6, 3e-8, 1 + 2**-11 + 2**-40, 65519, 65520, -2.5e-5])
    uv = np.array([7, 200])
    for arr, fn in ((av, "a"), (kv, "k"), (hv, "h"), (uv, "u")):
        arr.astype("<f8").tofile(tmp_path / f"{fn}.bin")
    proc = _rscript(tmp_path, f"""
source("{d}/{name}.R")
m <- {name}_load()
args <- list(read_c("a.bin", c(2L, 3L), size = 8L), read_c("k.bin", 3L, size = 8L),
             read_c("h.bin", 8L, size = 8L), read_c("u.bin", 2L, size = 8L))
out <- do.call(predict, c(list(m), args))
cat(vapply(out, typeof, ""), "\\n")
for (j in seq_along(out)) write_c(out[[j]], sprintf("out%d.bin", j))
""")
    with np.errstate(over="ignore"):             # 65520 is float16's infinity, on purpose
        want = f(av, kv, hv.astype(np.float16), uv.astype(np.uint8))
    assert proc.stdout.split() == ["double", "double", "double", "logical", "integer"]
    for j, w in enumerate(want):
        got = _read_r(tmp_path / f"out{j + 1}.bin", w.shape)
        np.testing.assert_array_equal(got, np.asarray(w, dtype=np.float64), err_msg=f"output {j}")
    assert want[2][4] == np.float16(1 + 2**-10)

"""The bad-input catalogue (docs/errors.md) as one table.

Each row is one bad input: the code (run as the user's file ``model.py``, after
PRELUDE), the error class (or, for the command line, the exit code; for cache
misconfiguration, one logged warning) and a regex the message must match. Where
the API knows the user's line the regex ends in AT, ``(at model.py:1)``. The
doc is generated from this table (``python tests/test_error_catalogue.py``
rewrites docs/errors.md); test_doc_and_table_hold_the_same_cases keeps them in
step."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import NamedTuple

import pytest

import symfuse as sf
from symfuse import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "errors.md")
AT = r".* \(at model\.py:1\)$"

ONNX_PRELUDE = """\
def onnx_model(op, shape=(2, 3)):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="n0")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
"""

PRELUDE = ONNX_PRELUDE + """\
import numpy as np
import symfuse as sf
from symfuse.ir.core import Function, Op, get_opdef
from symfuse.ir.types import tensor_type
x = sf.tensor("x", (3, 4))
v = sf.tensor("v", (4,))
i = sf.tensor("i", (3,), "int32")
b = sf.tensor("b", (3,), "bool")
W = sf.shared(np.zeros((4, 2), np.float32), name="W")
f = sf.function([x, i], x.sum() + i.astype("float32").sum(), device="interp")
xb = sf.tensor("xb", ("batch", 3))
yb = sf.tensor("yb", ("batch",))
"""

IR_HEAD = "func @main(%x: f32[2], %e: f32[0,3]) -> (f32[2]) {"

MODEL_PY = '''\
import symfuse as sf
def build():
    x = sf.tensor("x", (3, 4))
    return [x], [x @ x]
def twice():
    x = sf.tensor("x", (3, 4))
    return [x, x], [x.sum()]
def boom():
    raise RuntimeError("boom")
def takes(n):
    return [], []
def junk():
    return 5
'''


class LoggedWarning(Exception):
    """Stands for a run that succeeded with warnings: the message is what was logged."""


class CliExit(Exception):
    def __init__(self, code, stderr):
        super().__init__(stderr)
        self.code = code


class Case(NamedTuple):
    id: str
    kind: str           # api | ir | cli | env
    expect: object      # an error class; for cli the exit code; LoggedWarning for env warnings
    code: str           # Python (api, env), IR statements (ir), a command line (cli)
    pattern: str
    files: dict | None = None     # cli: files in its directory
    env: dict | None = None       # env: variables set for the run ({tmp} is a fresh directory)

    def trigger(self):
        return {"api": _run_api, "ir": _run_ir, "cli": _run_cli, "env": _run_env}[self.kind](self)


def _run_api(case):
    ns = {}
    exec(compile(PRELUDE, "prelude.py", "exec"), ns)
    exec(compile(case.code, "model.py", "exec"), ns)


def _ir_text(body):
    return f"{IR_HEAD}\n" + "".join(f"  {ln}\n" for ln in body.split("\n")) + "}\n"


def _run_ir(case):
    sf.ir.parse(_ir_text(case.code))


def _run_cli(case):
    with tempfile.TemporaryDirectory() as d:
        for name, text in (case.files or {}).items():
            with open(os.path.join(d, name), "wb" if isinstance(text, bytes) else "w") as fh:
                fh.write(text)
        args = case.code.split()[1:]
        env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=os.path.join(d, "cache"))
        out = subprocess.run([sys.executable, "-m", "symfuse.cli", *args], capture_output=True, text=True, env=env,
                             cwd=d, timeout=300)
    assert "Traceback" not in out.stderr, out.stderr
    if out.returncode:
        raise CliExit(out.returncode, out.stderr.strip())


ENV_CHILD = """
import json, sys
try:
    exec(compile(sys.argv[1], "prelude.py", "exec"), ns := {})
    exec(compile(sys.argv[2], "model.py", "exec"), ns)
    print(json.dumps({"ok": float(ns["r"])}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def _run_env(case):
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(os.path.join(d, "shared"))
        os.chmod(os.path.join(d, "shared"), 0o777)      # writable by anyone: not a private cache
        open(os.path.join(d, "file"), "w").close()
        env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=os.path.join(d, "cache"))
        env.update({k: v.format(tmp=d) for k, v in case.env.items()})
        out = subprocess.run([sys.executable, "-c", ENV_CHILD, PRELUDE, case.code], capture_output=True, text=True,
                             env=env, cwd=d, timeout=300)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    stderr = out.stderr.replace(d, "$TMP").strip()
    if "error" in res:
        e = getattr(errors, res["error"], None) or Exception
        raise _rebuilt(e, res["message"].replace(d, "$TMP"))
    assert res["ok"] == 24.0, res           # compiled and ran without the cache
    if stderr:
        raise LoggedWarning(stderr)


def _rebuilt(cls, message):
    """The child's error as an instance of its class (whose constructor may want more than a message)."""
    e = cls.__new__(cls)
    Exception.__init__(e, message)
    return e


def api(id, expect, code, pattern):
    return Case(id, "api", expect, code, pattern)


def ir(id, body, pattern):
    return Case(id, "ir", errors.IRParseError, body, pattern)


def cli(id, code, rc, pattern, files=None):
    return Case(id, "cli", rc, code, pattern, files=files or {"model.py": MODEL_PY})


def env(id, variables, expect, pattern):
    code = 'r = sf.function([x], (x * 2).sum(), device="cpu")(np.ones((3, 4), np.float32))'
    return Case(id, "env", expect, code, pattern, env=variables)


S, D, A, G, I = errors.ShapeError, errors.DTypeError, errors.AxisError, errors.GradError, errors.InputError
V, P = errors.VerifyError, errors.IRParseError

CASES = [
    # ---- ShapeError: shapes that do not fit an op's shape rule
    api("shape-tensor-negative", S, 'sf.tensor("t", (2, -1))',
        r"tensor 't': shape \(2, -1\): dimension 1 is negative" + AT),
    api("shape-tensor-not-int", S, 'sf.tensor("t", (2.5,))', r"dimension 0 is 2\.5, not an integer" + AT),
    api("shape-tensor-too-big", S, 'sf.tensor("t", (2**40, 2**40))', r"exceed the 2\*\*63 - 1 bytes" + AT),
    api("shape-matmul", S, "x @ x", r"^matmul: contraction dimensions differ: f32\[3,4\] @ f32\[3,4\] \(4 != 3\)" + AT),
    api("shape-broadcast", S, 'x + sf.tensor("y", (3,))', r"^add: shapes do not broadcast: f32\[3,4\], f32\[3\]" + AT),
    api("shape-reshape", S, "x.reshape(5, 3)",
        r"^reshape: cannot reshape f32\[3,4\] \(12 elements\) into \(5, 3\)" + AT),
    api("shape-reshape-two-unknown", S, "x.reshape(-1, -1)", r"^reshape: at most one -1 .*\(-1, -1\)" + AT),
    api("shape-broadcast-to", S, "sf.broadcast_to(x, (4, 3))",
        r"^broadcast_to: cannot broadcast f32\[3,4\] to shape \(4, 3\)" + AT),
    api("shape-transpose-perm", S, "x.transpose(0, 0)", r"^transpose: perm \(0, 0\) is not a permutation" + AT),
    api("shape-concatenate", S, "sf.concatenate([x, v])",
        r"^concatenate: operands do not match outside axis 0: f32\[3,4\], f32\[4\]" + AT),
    api("shape-stack-empty", S, "sf.stack([])", r"^stack needs at least one tensor" + AT),
    api("shape-squeeze", S, "sf.squeeze(x, 0)", r"^squeeze: axis 0 of f32\[3,4\] has size 3, not 1" + AT),
    api("shape-index-range", S, "x[3]", r"^index 3 is out of range for axis 0 of f32\[3,4\]" + AT),
    api("shape-index-too-many", S, "x[0, 0, 0]", r"^too many indices \(3\) for f32\[3,4\]" + AT),
    api("shape-index-kind", S, "x[1.5]", r"^unsupported index 1\.5: use ints, slices" + AT),
    api("shape-slice-step-zero", S, "x[::0]",
        r"^bad slice slice\(None, None, 0\) for axis 0 of f32\[3,4\]: slice step cannot be zero" + AT),
    api("shape-pad-negative", S, "sf.pad(x, -1)", r"^pad: negative padding" + AT),
    api("shape-pad-width", S, "sf.pad(x, [[1, 2, 3]])",
        r"^pad: pad_width \[\[1, 2, 3\]\] is not an int, a \(lo, hi\) pair" + AT),
    api("shape-ragged-list", S, "x + [[1, 2], [3]]",
        r"^cannot make a tensor from list \[\[1, 2\], \[3\]\]: its nested sequences have different lengths" + AT),
    api("shape-max-empty-axis", S, 'sf.tensor("e", (0, 3)).max(axis=0)',
        r"^max: axis 0 of f32\[0,3\] is empty and the reduction has no identity" + AT),
    api("shape-argmin-empty", S, 'sf.argmin(sf.tensor("e", (3, 0)))', r"^argmin: axis 1 of f32\[3,0\] is empty" + AT),
    api("shape-conv-channels", S, 'sf.conv2d(sf.tensor("im", (1, 3, 8, 8)), sf.tensor("k", (2, 4, 3, 3)))',
        r"^conv2d: input channels 3 != 4" + AT),
    api("shape-conv-empty-output", S, 'sf.conv2d(sf.tensor("im", (1, 3, 2, 2)), sf.tensor("k", (2, 3, 3, 3)))',
        r"^conv2d: output size 0x0 is empty" + AT),
    api("shape-pool-kernel", S, 'sf.max_pool2d(sf.tensor("im", (1, 3, 8, 8)), 0)',
        r"^max_pool2d: kernel must be an int >= 1" + AT),
    api("shape-xent-labels", S, 'sf.softmax_cross_entropy(x, sf.tensor("l", (4,), "int32"))',
        r"^softmax_cross_entropy: integer labels i32\[4\] must have the shape \[3\]" + AT),
    api("shape-dot-rank", S, 'sf.dot(sf.tensor("r", (2, 2, 2)), x)', r"^dot supports rank <= 2, got f32\[2,2,2\]" + AT),
    api("shape-update", S, "sf.function([x], x.sum(), updates=[(W, x)])",
        r"^function: update of W f32\[4,2\] has shape f32\[3,4\]" + AT),
    api("shape-set-value", S, "W.set_value(np.ones(3))",
        r"^set_value on shared W: shape \(3,\) does not match \(4, 2\)" + AT),
    # ---- AxisError (a ShapeError): an axis out of range or of the wrong kind
    api("axis-range", A, "x.sum(axis=2)", r"^sum: axis 2 is out of range for f32\[3,4\] \(valid: -2\.\.1\)" + AT),
    api("axis-not-int", A, "x.sum(axis=1.0)", r"^sum: axis must be an int, a tuple of ints or None, got 1\.0" + AT),
    api("axis-repeated", A, "x.sum(axis=(0, -2))", r"^sum: repeated axis in \(0, -2\)" + AT),
    api("axis-argmax-tuple", A, "sf.argmax(x, axis=(0, 1))", r"^argmax: axis must be an int, got \(0, 1\)" + AT),
    api("axis-expand-dims", A, "sf.expand_dims(x, 5)",
        r"^expand_dims: axis 5 out of range for result rank 3 of f32\[3,4\]" + AT),
    api("axis-squeeze", A, "sf.squeeze(x, 7)", r"^squeeze: axis 7 out of range for f32\[3,4\]" + AT),
    api("axis-softmax", A, "sf.softmax(x, axis=2)", r"^softmax: axis 2 is out of range" + AT),
    api("axis-flip", A, "sf.flip(x, 4)", r"^flip: axis 4 is out of range" + AT),
    # ---- DTypeError: dtypes that do not fit (never mixed or narrowed silently)
    api("dtype-mix", D, 'i + i.astype("float32")',
        r"^add: operands have different dtypes: i32\[3\], f32\[3\]; cast one with \.astype\(\)" + AT),
    api("dtype-float-scalar", D, "i * 0.5",
        r"^cannot combine i32\[3\] with the float scalar 0\.5; cast the tensor first" + AT),
    api("dtype-scalar-overflow", D, "i + 2**40", r"^the scalar 1099511627776 does not fit in i32\[3\]'s int32" + AT),
    api("dtype-complex-scalar", D, "x * 1j", r"^cannot combine f32\[3,4\] with the complex scalar 1j" + AT),
    api("dtype-bool-arithmetic", D, "b + 1", r"^cannot combine bool tensor i1\[3\] with the number 1" + AT),
    api("dtype-log-int", D, "sf.log(i)", r"^log: operand must be floating point, got i32\[3\]" + AT),
    api("dtype-mean-int", D, "i.mean()", r"^mean of i32\[3\]: cast it to a float dtype first" + AT),
    api("dtype-reduce-bool", D, "b.sum()", r"^sum: cannot reduce a bool tensor i1\[3\]; cast it first" + AT),
    api("dtype-where-condition", D, "sf.where(x, x, 0.0)", r"^where: condition must be bool, got f32\[3,4\]" + AT),
    api("dtype-unsupported", D, 'sf.tensor("t", (2,), "float128")',
        r"^tensor 't': unsupported dtype 'float128'; supported: bool, " + AT),
    api("dtype-cast", D, 'x.astype("complex64")', r"^cast: unsupported dtype 'complex64'" + AT),
    api("dtype-string-constant", D, 'x + "1"', r"^cannot make a tensor from str '1' \(numpy dtype <U1\)" + AT),
    api("dtype-none-operand", D, "x * None", r"^cannot make a tensor from NoneType None" + AT),
    api("dtype-update", D, "sf.function([x], x.sum(), updates=[(W, W > 0)])",
        r"^function: update of W f32\[4,2\] has dtype bool; cast it with \.astype\('float32'\)" + AT),
    api("dtype-one-hot", D, "sf.one_hot(x, 3)", r"^one_hot: indices must be an integer tensor, got f32\[3,4\]" + AT),
    api("dtype-pad-value", D, 'sf.pad(x, 1, "a")', r"^pad: value must be a number, got 'a'" + AT),
    api("dtype-set-value", D, "W.set_value(np.ones((4, 2), complex))",
        r"^set_value on shared W: cannot store complex128 in float32" + AT),
    api("dtype-set-value-overflow", D, 'sf.shared(np.zeros(2, np.int32), name="n").set_value([2**40, 0])',
        r"^set_value on shared n: value 1099511627776 does not fit in int32" + AT),
    # ---- GradError: a gradient that is not defined
    api("grad-not-scalar", G, "sf.grad(x * 2, x)",
        r"^grad: the cost must be a scalar, got f32\[3,4\]; reduce it with \.sum\(\)" + AT),
    api("grad-disconnected", G, "sf.grad(v.sum(), x)",
        r"^grad: the cost does not depend on x \(at model\.py:1\); pass disconnected='zero'"),
    api("grad-int-wrt", G, 'sf.grad(i.astype("float32").sum(), i)',
        r"^grad: cannot differentiate with respect to non-float i32\[3\]" + AT),
    api("grad-int-cost", G, "sf.grad(i.sum(), i)", r"^grad: the cost must be floating point, got i32\[\]" + AT),
    api("grad-cost-not-tensor", G, "sf.grad(3.0, x)", r"^grad: cost must be a symbolic tensor, got float" + AT),
    api("grad-wrt-not-tensor", G, "sf.grad(x.sum(), 3.0)",
        r"^grad: wrt must be a symbolic tensor or a list of them, got float" + AT),
    api("grad-disconnected-mode", G, 'sf.grad(x.sum(), x, disconnected="ignore")',
        r"^grad: disconnected must be 'raise' or 'zero'" + AT),
    # ---- InputError: arguments an entry point cannot use (sf.function, a compiled function's call, names)
    api("input-tensor-name", I, 'sf.tensor("", (2,))', r"^tensor name must be a non-empty string, got ''" + AT),
    api("input-shared-name", I, "sf.shared(np.ones(2), name=5)",
        r"^shared variable name must be a string or None, got 5" + AT),
    api("input-function-input-expr", I, "sf.function([x + 1], x)",
        r"^function: input 0 must be a symbolic tensor made by sf\.tensor" + AT),
    api("input-function-inputs-not-a-list", I, "sf.function(5, x)",
        r"^function: inputs must be a list of symbolic tensors, got int" + AT),
    api("input-function-updates-not-pairs", I, "sf.function([x], x, updates=5)",
        r"^function: updates must be a dict or a list of \(shared, expression\) pairs, got int" + AT),
    api("input-function-name-path", I, 'sf.function([x], x, name="../evil")',
        r"^function: name '../evil' is not a function name" + AT),
    api("input-function-option-cpu", I, 'sf.function([x], x, device="cpu", profle=True)',
        r"^function: unknown option 'profle' for device 'cpu' \(did you mean 'profile'\?\)" + AT),
    api("input-function-option-type", I, 'sf.function([x], x, device="cpu", profile="yes")',
        r"^function: option profile='yes' for device 'cpu' must be a bool, got str" + AT),
    api("input-function-input-twice", I, "sf.function([x, x], x)", r"^function: input 1 \(x\) is listed twice" + AT),
    api("input-function-free-input", I, "sf.function([x], v.sum())",
        r"^function: the outputs depend on input v f32\[4\], which is not in the inputs list" + AT),
    api("input-function-name", I, 'sf.function([x], x, name="my model")',
        r"^function: name 'my model' is not a function name" + AT),
    api("input-function-option", I, 'sf.function([x], x, device="interp", fast_mat=True)',
        r"^function: unknown option 'fast_mat' for device 'interp'" + AT),
    api("input-update-target", I, "sf.function([x], x, updates=[(x, x)])",
        r"^function: update 0 targets <Value 'x' f32\[3,4\] from param>, which is not a shared variable" + AT),
    api("input-update-pair", I, "sf.function([x], x, updates=[(W,)])",
        r"^function: update 0 must be a \(shared, expression\) pair" + AT),
    api("input-update-twice", I, "sf.function([x], x, updates=[(W, W), (W, W * 2)])",
        r"^function: shared variable W is updated twice" + AT),
    api("input-call-shape", I, "f(np.ones((4, 3), np.float32), [1, 2, 3])",
        r"^argument 0 \('x'\): expected shape \(3, 4\) \(f32\[3,4\]\), got \(4, 3\)$"),
    api("input-call-dtype", I, "f(np.ones((3, 4)), [1, 2, 3])",
        r"^argument 0 \('x'\): expected dtype float32 f32\[3,4\], got float64 array .*\.astype\(np\.float32\)$"),
    api("input-call-count", I, "f(np.ones((3, 4), np.float32))", r"^expected 2 argument\(s\) \['x', 'i'\], got 1$"),
    api("input-call-keyword", I, "f(np.ones((3, 4), np.float32), j=[1, 2, 3])",
        r"^unexpected keyword argument 'j'; inputs are \['x', 'i'\]$"),
    api("input-call-keyword-twice", I, "f(np.ones((3, 4), np.float32), [1, 2, 3], i=[1, 2, 3])",
        r"^argument 'i' given twice$"),
    api("input-call-overflow", I, "f(np.ones((3, 4), np.float32), [2**40, 0, 0])",
        r"^argument 1 \('i'\): value 1099511627776 does not fit in int32"),
    api("input-call-float-for-int", I, "f(np.ones((3, 4), np.float32), [0.5, 0, 0])",
        r"^argument 1 \('i'\): expected i32\[3\], got list of dtype float64$"),
    api("input-call-not-numbers", I, 'f("abc", [1, 2, 3])',
        r"^argument 0 \('x'\): expected f32\[3,4\], got str of dtype <U3$"),
    api("shape-size-name", S, 'sf.tensor("t", ("batch size", 3))',
        r"run-time dimension name 'batch size': use an identifier of at most 32 characters"),
    api("input-size-mismatch", I,
        'g = sf.function([xb, yb], xb.sum() + yb.sum(), device="interp"); '
        'g(np.ones((4, 3), np.float32), np.ones(5, np.float32))',
        r"^argument 1 \('yb'\): dimension 0 is the run-time size 'batch', which argument 0 \('xb'\) gave as 4; got 5$"),
    api("input-size-above-max", I,
        'g = sf.function([xb], xb * 2, device="interp", max_batch=8); g(np.ones((9, 3), np.float32))',
        r"^argument 0 \('xb'\): the run-time size 'batch' is 9 \(dimension 0\), above max_batch=8"),
    api("input-size-requirement", I,
        'g = sf.function([xb], xb[2:5] * 2, device="interp"); g(np.ones((4, 3), np.float32))',
        r"^this call has batch = 4, but the graph was built for batch >= 5 \(slice at model\.py:1\)$"),
    api("input-size-specialize", I, 'sf.function([xb], xb * 2, device="interp", specialize=[8])',
        r"^function: specialize= makes literal-size builds on device 'cpu'; device 'interp' runs its one build"),
    api("input-cuda-arch", I, 'sf.function([x], x + 1, device="cuda", arch="sm_10")',
        r"^unsupported CUDA arch 'sm_10' for NVRTC [\d.]+; supported: .*sm_80"),
    # ---- DeviceUnavailable
    api("device-unknown", errors.DeviceUnavailable, 'sf.function([x], x, device="tpu")',
        r"^function: unknown device 'tpu'; known: cpu, cuda, cuda-emu, interp \(at model.py:1\)$"),
    # ---- VerifyError: IR built by hand that breaks an invariant
    api("verify-free-variable", V, "Function([x], [x * v])",
        r"^value v \(f32\[4\]\) used by mul is not a parameter of the function: list it among the inputs" + AT),
    api("verify-result-type", V,
        'sf.ir.verify(Function([v], [Op(get_opdef("exp"), [v], {}, [tensor_type("float32", (3,))]).outputs[0]]))',
        r"^op #0 \(exp\): result types f32\[3\] differ from the op's rule f32\[4\]$"),
    api("verify-unknown-attribute", V, 'sf.ir.apply("sum", [x], {"axes": 0})',
        r"^sum: unknown attribute 'axes'; known: axis, keepdims$"),
    api("verify-unknown-op", V, 'sf.ir.apply("frobnicate", [x])', r"^unknown op 'frobnicate'$"),
    # ---- IRParseError: IR text (sf.ir.parse, `symfuse parse`), with line:column
    ir("ir-undefined-value", "%0 = exp %y : f32[2]\nreturn %0",
        r"^IR parse error at 2:12: use of undefined value %y\n"),
    ir("ir-unknown-op", "%0 = frobnicate %x : f32[2]\nreturn %0", r"^IR parse error at 2:8: unknown op 'frobnicate'"),
    ir("ir-declared-type", "%0 = exp %x : f32[3]\nreturn %0",
        r"^IR parse error at 2:8: exp: declared type f32\[3\] but the op produces f32\[2\]"),
    ir("ir-op-rule", "%0 = add %x, %e : f32[2]\nreturn %0",
        r"^IR parse error at 2:8: add: shapes do not broadcast: f32\[2\], f32\[0,3\]"),
    ir("ir-defined-twice", "%0 = exp %x : f32[2]\n%0 = exp %0 : f32[2]\nreturn %0",
        r"^IR parse error at 3:3: value %0 is defined twice"),
    ir("ir-expected-token", "%0 = exp %x f32[2]\nreturn %0",
        r"^IR parse error at 2:15: expected ':', found 'f32\[2\]'"),
    ir("ir-missing-return", "%0 = exp %x : f32[2]",
        r"^IR parse error at 3:1: expected a result like %0 \(or 'return'\), found '}'"),
    ir("ir-return-types", "return %e",
        r"^IR parse error at 2:3: return types \['f32\[0,3\]'\] do not match the signature \['f32\[2\]'\]"),
    ir("ir-bad-character", "%0 = exp %x : f32[2] $\nreturn %0", r"^IR parse error at 2:24: unexpected character '\$'"),
    ir("ir-malformed-type", "%0 = exp %x : f32[2,]\nreturn %0", r"^IR parse error at 2:17: malformed type 'f32\[2,\]'"),
    ir("ir-nested-too-deep", "%0 = sum %x {axis = " + "[" * 100 + "} : f32[]\nreturn %0",
        r"^IR parse error at 2:87: attribute lists nested more than 64 deep"),
    ir("ir-long-integer", "%0 = sum %x {axis = " + "9" * 5000 + "} : f32[]\nreturn %0",
        r"^IR parse error at 2:23: integer literal of 5000 digits is too long"),
    ir("ir-bad-escape", '%0 = grad %x, %x {disconnected = "\\x"} : f32[2]\nreturn %0',
        r"^IR parse error at 2:37: invalid escape '\\x' in string"),
    ir("ir-bad-attribute", "%0 = constant : f32[2]\nreturn %0",
        r"^IR parse error at 2:8: constant: invalid attributes \(KeyError: 'value'\)"),
    ir("ir-empty-max", "%0 = max %e {axis = [0], keepdims = false} : f32[3]\nreturn %x",
        r"^IR parse error at 2:8: max: axis 0 of f32\[0,3\] is empty"),
    # ---- CompileError: a backend's compiler failed
    env("compile-c-compiler", {"CC": "/bin/false"}, errors.CompileError,
        r"^C compilation of @main failed \(/bin/false\); source saved at "),
    # ---- an unusable cache: compiles without it, with one warning
    env("cache-uncreatable", {"SYMFUSE_CACHE_DIR": "{tmp}/file/cache"}, LoggedWarning,
        r"^symfuse: cannot create cache directory \$TMP/file/cache \(.*Not a directory.*\); "
        r"compiling without caching$"),
    env("cache-not-a-directory", {"SYMFUSE_CACHE_DIR": "{tmp}/file"}, LoggedWarning,
        r"^symfuse: cannot create cache directory \$TMP/file \(.*File exists.*\); compiling without caching$"),
    env("cache-not-private", {"SYMFUSE_CACHE_DIR": "{tmp}/shared"}, LoggedWarning,
        r"^symfuse: cache directory \$TMP/shared is not a private directory \(owner uid \d+, mode 0777; .*\); "
        r"refusing to use it .*; compiling without caching$"),
    # ---- ONNX models (docs/onnx.md): untrusted files, named node, op, input or file
    api("onnx-not-a-model", sf.onnx.OnnxError, "sf.onnx.load(b'garbage bytes here')",
        r"^<onnx bytes>: not a valid ONNX model \(the protobuf does not parse: .*\); the file may be truncated"),
    api("onnx-wrong-source", sf.onnx.OnnxError, "sf.onnx.load(42)",
        r"^an ONNX model is a path, bytes or an onnx\.ModelProto, got int$"),
    api("onnx-missing-file", sf.onnx.OnnxError, "sf.onnx.load('absent.onnx')", r"^absent\.onnx: no such file$"),
    api("onnx-unknown-op", sf.onnx.OnnxUnsupported, "sf.onnx.load(onnx_model('FancyOp'))",
        r"^<onnx bytes>: node 0 'n0' \(FancyOp\): op FancyOp is not supported$"),
    api("onnx-symbolic-size", sf.onnx.OnnxError, "sf.onnx.load(onnx_model('Relu', ('N', 3)))",
        r"^<onnx bytes>: input 'x' has a symbolic size 'N' on axis 0; give its shape with load\(\.\.\., "
        r"shapes=\{'x': \(\.\.\.\)\}\)$"),
    api("onnx-shape-disagrees", sf.onnx.OnnxError,
        "sf.onnx.load(onnx_model('Relu'), shapes={'x': (2, 5)})",
        r"^<onnx bytes>: input 'x' has size 3 on axis 1 in the model, shapes= gives \(2, 5\)$"),
    # ---- data-parallel training (docs/distributed.md)
    # (the communicator cleared first: this process may have run the fuzzer's one-rank collectives)
    api("distributed-no-init", sf.distributed.CommunicatorError,
        "sf.ir.ops.collective.set_communicator(None); sf.distributed.allreduce(x)",
        r"^collective ops need a communicator: call symfuse\.distributed\.init\(\) first" + AT),
    api("export-not-cpu", errors.InputError, "sf.export(f, 'out')",
        r"^export: <symfuse function @main on interp.*> was not compiled for device='cpu'"),
    api("export-cuda-arch", errors.InputError, "sf.export(f, 'out', target='cuda', arch='compute_90')",
        r"^export: arch 'compute_90' is not a CUDA GPU architecture like sm_80 or sm_90 \(a CUBIN needs a real "
        r"architecture; PTX is added by itself\)$"),
    cli("cli-export-cuda-arch", "symfuse export mlp --target cuda --arch sm90 -o out", 2,
        r"Invalid value for '--arch': 'sm90' is not a GPU architecture like sm_80 or sm_90"),
    cli("cli-onnx-broken", "symfuse compile broken.onnx", 1,
        r"^symfuse: broken\.onnx: not a valid ONNX model", {"broken.onnx": b"\x08\x07\x12garbage"}),
    cli("cli-onnx-train", "symfuse compile tiny.onnx --train", 2,
        r"tiny\.onnx: an ONNX model has no training step", {"tiny.onnx": b"\x08\x07"}),
    # ---- the command line: usage errors exit 2, errors in a model file exit 1 with its file:line
    cli("cli-unknown-model", "symfuse compile nosuch", 2,
        r"Invalid value for MODEL: unknown model 'nosuch'; zoo models: charlstm, lenet, mlp, rbm, seqdigits"),
    cli("cli-missing-file", "symfuse compile missing.py:build", 2,
        r"Invalid value for MODEL: no such file: missing\.py"),
    cli("cli-missing-function", "symfuse compile model.py:nothere", 2,
        r"model\.py has no function 'nothere'"),
    cli("cli-function-arguments", "symfuse compile model.py:takes", 2,
        r"model\.py:takes must take no arguments, it is takes\(n\)"),
    cli("cli-bad-return", "symfuse compile model.py:junk", 2,
        r"model\.py:junk must return \(inputs, outputs\) or \(inputs, outputs, updates\), not int",),
    cli("cli-bad-option", "symfuse compile mlp --bogus", 2, r"No such option '--bogus'"),
    cli("cli-bad-arch", "symfuse compile mlp --target cuda-emu --arch banana", 2,
        r"'banana' is not a CUDA architecture like sm_90"),
    cli("cli-bad-size", "symfuse cache prune --max-size lots", 2, r"Invalid value for --max-size"),
    cli("cli-model-shape-error", "symfuse compile model.py:build", 1,
        r"^symfuse: model\.py:4: ShapeError: matmul: contraction dimensions differ: .* \(at .*model\.py:4\)$"),
    cli("cli-model-function-error", "symfuse compile model.py:twice", 1,
        r"^symfuse: model\.py:7: InputError: function: input 1 \(x\) is listed twice \(at .*model\.py:7\)$"),
    cli("cli-model-raises", "symfuse compile model.py:boom", 1,
        r"^symfuse: model\.py:9: RuntimeError: boom \(while boom\(\) ran\)$"),
    cli("cli-model-exits", "symfuse compile model.py:build", 1,
        r"^symfuse: model\.py:2: the model file called sys\.exit\(0\) while it was imported; nothing was compiled$",
        {"model.py": "import sys\nsys.exit(0)\n"}),
    cli("cli-model-syntax", "symfuse compile model.py:build", 1,
        r"^symfuse: model\.py:1: SyntaxError: .* \(while it was imported\)$",
        {"model.py": "def build(:\n"}),
    cli("cli-parse-error", "symfuse parse bad.ir", 1, r"^bad\.ir: IR parse error at 2:12: use of undefined value %y",
        {"bad.ir": _ir_text("%0 = exp %y : f32[2]\nreturn %0")}),
    cli("cli-parse-not-text", "symfuse parse bad.ir", 1,
        r"^symfuse: bad\.ir: not UTF-8 text \(byte 0xff at offset 0\)$",
        {"bad.ir": b"\xff\xfe"}),
]


def _message(case) -> tuple[object, str]:
    """(what was raised or the exit code, its message) for one case."""
    try:
        case.trigger()
    except CliExit as e:
        return e.code, str(e)
    except Exception as e:  # noqa: BLE001 -- whatever came out is compared with the table
        return type(e), str(e)
    return None, ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_a_clear_error(case):
    got, msg = _message(case)
    assert got == case.expect if case.kind == "cli" else got is case.expect, \
        f"{case.id}: expected {case.expect}, got {got}: {msg}"
    assert re.search(case.pattern, msg, re.S | re.M), f"{case.id}: message {msg!r} does not match {case.pattern!r}"
    if case.expect is LoggedWarning:
        assert len(msg.splitlines()) == 1, f"{case.id}: more than one warning: {msg}"


def test_the_catalogue_is_large_and_covers_every_error_class():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60
    classes = {c.expect for c in CASES}
    for cls in (S, D, A, G, I, V, P, errors.DeviceUnavailable, errors.CompileError):
        assert cls in classes, cls


# ----------------------------------------------------------------------------- the document
CLASS_DOCS = [
    (S, "ShapeError (a `ValueError`)", "An operand's shape does not satisfy an op's shape rule: sizes that do not "
     "broadcast or contract, a reshape to another element count, an index or slice outside the tensor, a "
     "reduction without identity (max, min, argmax, argmin) over an empty axis, a shape that is not a tuple of "
     "non-negative ints or is too large to address. Raised when the graph is built, at the line that builds it."),
    (A, "AxisError (a `ShapeError`)", "An `axis` argument is out of range for the operand's rank, repeated, or not "
     "an int (or, for reductions, a tuple of ints or None)."),
    (D, "DTypeError (a `TypeError`)", "Operand dtypes do not satisfy an op's rule. Tensors of two dtypes never mix "
     "(cast one with `.astype`); a Python scalar takes the tensor's dtype, and is an error when it cannot be "
     "represented in it (0.5 with an int tensor, 2**40 with int32, a number with a bool tensor); values that are "
     "not numbers (strings, None, objects) are not tensors."),
    (G, "GradError (a `ValueError`)", "`sf.grad` was asked for a gradient that is not defined: a non-scalar or "
     "integer cost, an integer `wrt`, a `wrt` the cost does not depend on (unless `disconnected='zero'`), "
     "arguments that are not symbolic tensors."),
    (I, "InputError (a `ValueError`)", "An entry point got arguments it cannot use: `sf.function`'s inputs, "
     "updates, name and options; a compiled function called with arguments that do not match its signature "
     "(count, names, shape, dtype, values that do not fit); names of tensors and shared variables. Errors of a "
     "call name the argument by position and name instead of a line."),
    (sf.onnx.OnnxError, "OnnxError (an `InputError`)", "An ONNX model could not be read or converted: a "
     "truncated or malformed file, a shape that disagrees with the model, a symbolic size without `shapes=`, "
     "external data outside the model's directory (docs/onnx.md). The message names the file, and the node "
     "and op where one is at fault."),
    (sf.onnx.OnnxUnsupported, "OnnxUnsupported (an `OnnxError`)", "The model uses an op, opset, attribute "
     "value or dtype symfuse does not convert; the message names the node and the op, and `reason` is the "
     "short form the conformance report groups by."),
    (sf.distributed.CommunicatorError, "CommunicatorError (a `RuntimeError`)", "A collective op was built or run "
     "without an MPI communicator (`symfuse.distributed.init()` not called), or on a communicator of another "
     "size than the function was compiled for (docs/distributed.md)."),
    (errors.DeviceUnavailable, "DeviceUnavailable (a `RuntimeError`)", "The requested device is unknown, or "
     "cannot run here (calling a `device=\"cuda\"` function needs PyCUDA and a GPU; compiling it does not)."),
    (V, "VerifyError", "IR built by hand (through `symfuse.ir`) breaks an invariant: a value used by an op is "
     "not a parameter, a result type disagrees with the op's type rule, an unknown op or attribute."),
    (P, "IRParseError (a `ValueError`)", "IR text could not be read. The message gives `line:column`, the line and "
     "a caret; `.line`, `.col` and `.source_line` hold them. Hostile text (deep nesting, huge literals, bad "
     "string escapes, megabyte lines) is a parse error like any other, never a Python exception. Every op is "
     "type-checked as it is parsed, so an op's own shape/dtype errors appear here with a position."),
    (errors.CompileError, "CompileError (a `RuntimeError`)", "A backend's compiler failed on generated code (or "
     "is not a working compiler); the message names the compiler and where the source was saved."),
    (LoggedWarning, "Warnings: an unusable cache", "A compile cache directory (`$SYMFUSE_CACHE_DIR`, default "
     "`~/.cache/symfuse`) that cannot be created, is not a directory, or is not private to the user is not an "
     "error: symfuse logs exactly one warning (logger `symfuse.cache`) and compiles without caching."),
]
CLI_DOC = ("The command line (`symfuse`)", "Usage errors (a bad MODEL, an unknown option or value, a model "
           "function that does not fit the MODEL contract) exit with code 2 and click's usage message. An error "
           "in the user's model file (raised while it is imported or while its function runs, or by "
           "`sf.function` on the graph it returns, or `sys.exit` called in it) exits with code 1 and names "
           "the file and line; no traceback. Other failures (a compile, a bad IR file for `parse`) exit 1. "
           "Ctrl-C exits 130 with `symfuse: interrupted` (`train --save` keeps the last completed epoch).")


KNOWN_GAPS = [
    "`bool(x)`, `iter(x)` and `len()` of a 0-d symbolic tensor raise a plain `TypeError` (with a clear message) "
    "rather than a `SymfuseError`.",
    "`sf.function(None, ...)`, `sf.function(5, ...)` and `updates=5` raise a plain `TypeError` "
    "(`'int' object is not iterable`).",
    "`sf.ir.verify` of something that is not a Function raises `AttributeError`.",
    "A non-integer `SYMFUSE_EMU_STACK_KB` is a `ValueError` when a `cuda-emu` function is called; `CC` naming a "
    "compiler that does not exist falls back to `cc` without a warning; `device=\"cuda-emu\"` accepts any `arch`.",
    "A source file name containing `\"` makes `f.ir(locations=True)` print text that does not parse back.",
]


def _normalise(msg: str) -> str:
    msg = re.sub(r"source saved at \S+", "source saved at $TMP/...", msg)
    return re.sub(r"/tmp/\w+/", "$TMP/", msg)


def _label(case, got=None) -> str:
    got = case.expect if got is None else got
    if case.kind == "cli":
        return f"exit {got}"
    return "one warning" if got is LoggedWarning else getattr(got, "__name__", str(got))


def _shown(case) -> str:
    """The bad input as the doc shows it: one line, long literals abbreviated."""
    code = re.sub(r"(\[|9)\1{20,}", lambda m: f"{m.group(1) * 3}...({len(m.group())} x {m.group(1)})", case.code)
    if case.kind == "ir":
        code = "; ".join(ln for ln in code.split("\n") if ln != "return %0")
    if case.kind == "cli":
        notes = [f"{n}: {t.strip()!r}" if isinstance(t, bytes) else f"{n}: {t.strip().replace(chr(10), '; ')}"
                 for n, t in (case.files or {}).items() if t != MODEL_PY and not n.endswith(".ir")]
        return f"`{code}`" + (f" ({'; '.join(notes)})" if notes else "")
    if case.kind == "env":
        return "`" + " ".join(f"{k}={v.format(tmp='$TMP')}" for k, v in case.env.items()) + "`, then a cpu compile"
    return f"`{code}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    out = ["# Bad input: the error catalogue", "",
           "Every error symfuse raises on bad input is a `SymfuseError` (`symfuse/errors.py`), and also the "
           "matching builtin (`ShapeError` is a `ValueError`, ...), so `except ValueError` still works. A "
           "message names what was wrong (the op, the shapes and dtypes, the argument) and where: the user's "
           "`file:line` for anything built through the API (below, the bad input is line 1 of `model.py`), "
           "`line:column` for IR text. Bad input is never silently accepted and never surfaces as a raw Python "
           "exception from deep inside; the known exceptions to that are listed at the end.", "",
           "This file is generated from the table in `tests/test_error_catalogue.py` (`python "
           "tests/test_error_catalogue.py` rewrites it); the test runs every case below and checks its class and "
           "message.", "",
           f"{len(CASES)} cases. The Python ones run after this prelude:", "", "```python",
           *PRELUDE.rstrip().split("\n"), "```", "",
           f"IR cases are statements of `{IR_HEAD} ... }}` (their line numbers count from that line). The "
           "command-line cases run in a directory whose `model.py` is:", "", "```python",
           *MODEL_PY.rstrip().split("\n"), "```", ""]
    sections = [(title, text, [c for c in CASES if c.expect is cls and c.kind != "cli"])
                for cls, title, text in CLASS_DOCS]
    sections.append((*CLI_DOC, [c for c in CASES if c.kind == "cli"]))
    for title, text, cases in sections:
        out += [f"## {title}", "", text, "", "| case | bad input | error | message |", "|---|---|---|---|"]
        for c in cases:
            got, msg = _message(c)
            msg = _normalise(msg).strip().split("\n")
            msg = next((ln for ln in msg if ln.startswith(("Error:", "symfuse:")) or "error" in ln), msg[0])
            out.append(f"| `{c.id}` | {_cell(_shown(c))} | {_label(c, got)} | {_cell(msg)} |")
        if cases and cases[0].kind == "ir":
            out += ["", "The full message shows the line and a caret under the column:", "", "```",
                    str(_message(cases[0])[1]), "```"]
        out.append("")
    out += ["## Known gaps", "", *[f"* {g}" for g in KNOWN_GAPS]]
    return "\n".join(out).rstrip() + "\n"


def test_doc_and_table_hold_the_same_cases():
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| .* \| ([^|]+) \| [^|]*(?:\\\|[^|]*)* \|$", open(DOC).read(), re.M)
    assert sorted(i for i, _ in rows) == sorted(c.id for c in CASES)
    doc = dict(rows)
    for c in CASES:                          # and names each case's class (or exit code) as the table does
        assert doc[c.id] == _label(c), c.id


if __name__ == "__main__":
    with open(DOC, "w") as fh:
        fh.write(render())
    print(f"wrote {DOC}: {len(CASES)} cases")

"""Printer/parser round trips, parse errors with line:column, and the verifier."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.errors import IRParseError, SymfuseError, VerifyError
from symfuse.ir.core import Function, Op, get_opdef
from symfuse.ir.types import tensor_type


def _mlp():
    x = sf.tensor("x", (8, 5))
    W = sf.shared(np.ones((5, 3), np.float32), name="W")
    b = sf.shared(np.zeros(3, np.float32), name="b")
    loss = sf.tanh(x @ W + b).sum()
    return sf.function([x], [loss, sf.grad(loss, W)], updates=[(b, b - 0.5 * sf.grad(loss, b))],
                       device="interp")


def test_roundtrip_optimised_and_source():
    f = _mlp()
    for fn in (f.function, f.source_function):
        text = str(fn)
        again = sf.ir.parse(text)
        assert str(again) == text
        assert again == fn


def test_parsed_function_evaluates_like_the_original(rng):
    from symfuse.runtime.interp import evaluate
    f = _mlp()
    g = sf.ir.parse(f.ir())
    args = [rng.normal(size=(8, 5)).astype(np.float32), np.ones((5, 3), np.float32), np.zeros(3, np.float32)]
    for a, b in zip(evaluate(f.function, args), evaluate(g, args)):
        np.testing.assert_array_equal(a, b)


def test_constants_roundtrip_exactly():
    x = sf.tensor("x", (20,), "float32")
    vals = np.array([0.1, -0.0, np.inf, -np.inf, 1e-30, 3.4e38] + [np.pi] * 14, np.float32)
    big = sf.constant(vals)
    small = sf.constant(np.array([0.1, np.nan, 7.0], np.float32))
    ints = sf.constant(np.array([[1, -2], [3, 4]], np.int32))
    f = sf.function([x], [x * big, small, ints, sf.constant(True)], device="interp", optimize_graph=False)
    text = f.ir()
    g = sf.ir.parse(text)
    assert str(g) == text
    consts = [op.attrs["value"] for op in g.ops if op.name == "constant"]
    np.testing.assert_array_equal(consts[0], vals)
    assert np.isnan(consts[1][1]) and consts[1][0] == np.float32(0.1)
    assert consts[2].dtype == np.int32 and consts[2].tolist() == [[1, -2], [3, 4]]
    assert 'dense<"0x' in text  # 20 elements print as hex, exactly


def test_locations_are_printed_and_parsed():
    x = sf.tensor("x", (3,))
    y = sf.exp(x)  # the location of this line is recorded
    f = sf.function([x], y, device="interp")
    text = f.ir(locations=True)
    assert 'loc("' in text and "test_ir_text.py" in text
    g = sf.ir.parse(text)
    assert g.ops[0].loc[0].endswith("test_ir_text.py")
    assert sf.ir.print_function(g, locations=True) == text


def test_multi_result_and_regions_roundtrip():
    # an op with a nested region: built directly, as control flow will
    from symfuse.ir.core import Region, Value
    x = sf.tensor("x", (2,))
    f = sf.function([x], [x + 1], device="interp")
    text = f.ir()
    assert "func @main(%x: f32[2]) -> (f32[2])" in text
    src = sf.function([x], sf.grad((x * x).sum(), [x, x], disconnected="zero"), device="interp",
                      optimize_graph=False).source_function
    t = str(src)
    assert "%3:2 = grad" in t or ":2 = grad" in t
    assert str(sf.ir.parse(t)) == t


BAD_IR = [
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %y : f32[2]\n  return %0\n}\n", 2, "undefined value %y"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = frobnicate %x : f32[2]\n  return %0\n}\n", 2, "unknown op"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %x : f32[3]\n  return %0\n}\n", 2, "declared type f32[3]"),
    ("func @main(%x: f32[2], %y: f32[3]) -> (f32[2]) {\n  %0 = add %x, %y : f32[2]\n  return %0\n}\n", 2,
     "do not broadcast"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %x : f32[2]\n  %0 = exp %0 : f32[2]\n  return %0\n}\n", 3,
     "defined twice"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %x f32[2]\n  return %0\n}\n", 2, "expected ':'"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = sum %x {axis = [5]} : f32[]\n  return %0\n}\n", 2, "axis 5"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %x : f32[2]\n  return %x, %0\n}\n", 3, "return types"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %x : f32[2] $\n  return %0\n}\n", 2, "unexpected character"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %x : f32[2]\n", 3, "missing 'return'"),
]


@pytest.mark.parametrize("text,line,needle", BAD_IR)
def test_malformed_ir_reports_line_and_column(text, line, needle):
    with pytest.raises(IRParseError) as e:
        sf.ir.parse(text)
    assert e.value.line == line
    assert e.value.col >= 1
    assert needle in str(e.value)
    assert f"{line}:" in str(e.value)


def test_verifier_catches_a_wrong_result_type():
    x = sf.tensor("x", (2,))
    bad = Op(get_opdef("exp"), [x], {}, [tensor_type("float32", (3,))])
    fn = Function([x], [bad.outputs[0]])
    with pytest.raises(VerifyError, match="differ from the op's rule"):
        sf.ir.verify(fn)


def test_free_variable_is_reported():
    x = sf.tensor("x", (2,))
    y = sf.tensor("y", (2,))
    with pytest.raises(VerifyError, match="not a parameter"):
        Function([x], [x + y])
    with pytest.raises(SymfuseError, match="not in the inputs list"):
        sf.function([x], x + y, device="interp")

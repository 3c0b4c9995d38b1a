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


# ----------------------------------------------------------------------------- hostile text
_ONE_OP = "func @main(%x: f32[2]) -> (f32[]) {{\n  %0 = sum %x {{axis = {}}} : f32[]\n  return %0\n}}\n"


@pytest.mark.parametrize("attr,col,needle", [
    ("[" * 100000, 87, "nested more than 64 deep"),          # was RecursionError
    ("1" * 5000, 23, "5000 digits is too long"),              # was ValueError (int's 4300-digit limit)
    ('"\\x"', 24, "invalid escape '\\x'"),                   # these three were UnicodeDecodeError
    ('"ok\\uZZZZ"', 26, "invalid escape '\\u'"),
    ('"\\U00110000"', 24, "invalid escape '\\U00110000'"),
])
def test_hostile_attribute_text_is_a_parse_error_with_line_and_column(attr, col, needle):
    with pytest.raises(IRParseError) as e:
        sf.ir.parse(_ONE_OP.format(attr))
    assert (e.value.line, e.value.col) == (2, col)
    assert needle in str(e.value) and len(str(e.value)) < 600     # a megabyte line is not echoed whole


def test_string_escapes_decode_exactly():
    text = ('func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %x : f32[2]\n  %1 = sum %0 {axis = none} : f32[]\n'
            '  %2 = grad %1, %x {disconnected = "r\\u0061is\\x65"} : f32[2]\n  return %2\n}\n')
    g = sf.ir.parse(text)
    assert [op.attrs["disconnected"] for op in g.ops if op.name == "grad"] == ["raise"]
    with pytest.raises(IRParseError, match="'zéro'"):            # UTF-8 text is not decoded as latin-1
        sf.ir.parse(text.replace("r\\u0061is\\x65", "zéro"))


@pytest.mark.parametrize("text,needle", [
    ("func @main(%x: f32[2,]) -> () {\n  return\n}\n", "malformed type 'f32[2,]'"),
    ("func @main(%x: f32[99999999999,99999999999]) -> () {\n  return\n}\n", "exceed the 2**63 - 1 bytes"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = constant : f32[2]\n  return %0\n}\n",
     "constant: invalid attributes"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = constant {value = [1e999, 99999999999999999999]} : i32[2]\n"
     "  return %0\n}\n", "constant"),
    ("func @main(%x: f32[2]) -> (f32[2]) {\n  %0 = exp %x ("
     + "".join(f"{{(%p{i}: f32[2])\n %q{i} = exp %p{i} (" for i in range(80)), "regions nested more than 64 deep"),
])
def test_malformed_types_attributes_and_regions(text, needle):
    with pytest.raises(IRParseError) as e:
        sf.ir.parse(text)
    assert needle in str(e.value) and e.value.line >= 1 and e.value.col >= 1


def test_parse_needs_text():
    with pytest.raises(IRParseError, match="expected IR text as a str, got bytes"):
        sf.ir.parse(b"func @main() -> () {\n  return\n}\n")


def _fuzz_corpus():
    x = sf.tensor("x", (2, 1, 6, 6))
    k = sf.shared(np.ones((3, 1, 3, 3), np.float32), name="k")
    lab = sf.tensor("lab", (2,), "int32")
    h = sf.max_pool2d(sf.relu(sf.conv2d(x, k)), 2).reshape(2, -1)
    loss = sf.softmax_cross_entropy(h[:, ::-1], lab).mean()
    f = sf.function([x, lab], [loss, sf.argmax(h, 1), sf.pad(h, 1)[::2], sf.constant(np.arange(20.0))],
                    updates=[(k, k - 0.1 * sf.grad(loss, k))], device="interp")
    return [f.ir(), f.ir(locations=True), str(f.source_function), str(_mlp().source_function)]


def test_fuzzed_ir_raises_only_symfuse_errors():
    """Random byte- and token-level mutations of printed IR: every failure is a
    SymfuseError (IRParseError with a position, or VerifyError), never a Python one."""
    import random
    from symfuse.ir.parser import _tokenize
    texts = _fuzz_corpus()
    pool = sorted({t.text for s in texts for t in _tokenize(s)} | {"[" * 200, "9" * 5000, '"\\x"', "f32[2,]"})
    r = random.Random(0)
    parsed = failed = 0
    for _ in range(3000):
        s = r.choice(texts)
        for _ in range(r.randint(1, 3)):
            i = r.randrange(len(s))
            if r.random() < 0.5:
                s = s[:i] + r.choice(pool) + " " + s[i + r.randint(0, 6):]
            else:
                j = r.randrange(len(s))
                s = s[:i] + s[j:j + r.randint(1, 20)] + s[i:]
        try:
            fn = sf.ir.parse(s)
            sf.ir.verify(fn)
            assert str(sf.ir.parse(str(fn))) == str(fn)
            parsed += 1
        except IRParseError as e:
            assert e.line >= 1 and e.col >= 1 and f"{e.line}:{e.col}" in str(e)
            failed += 1
        except SymfuseError:
            failed += 1
    assert failed > 2000 and parsed > 10       # the mutations both break and keep valid text

"""Bad input raises symfuse errors that name the op, the shapes, and the user's line."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.errors import (AxisError, DTypeError, GradError, InputError, ShapeError, SymfuseError)

THIS = "test_api_errors.py"


def test_matmul_shape_mismatch_names_op_shapes_and_line():
    x = sf.tensor("x", (128, 784))
    W = sf.tensor("W", (500, 10))
    with pytest.raises(ShapeError) as e:
        x @ W
    msg = str(e.value)
    assert "matmul" in msg and "f32[128,784]" in msg and "f32[500,10]" in msg and "784 != 500" in msg
    assert THIS in msg


def test_wrong_dtype_mix():
    x = sf.tensor("x", (3,))
    i = sf.tensor("i", (3,), "int32")
    with pytest.raises(DTypeError) as e:
        x + i
    assert "add" in str(e.value) and "f32[3]" in str(e.value) and "i32[3]" in str(e.value)
    assert THIS in str(e.value)
    with pytest.raises(DTypeError, match="log.*floating point"):
        sf.log(i)
    with pytest.raises(DTypeError, match="float scalar"):
        i * 0.5


def test_unknown_axis():
    x = sf.tensor("x", (3, 4))
    with pytest.raises(AxisError) as e:
        x.sum(axis=2)
    assert "axis 2" in str(e.value) and "f32[3,4]" in str(e.value) and THIS in str(e.value)
    with pytest.raises(AxisError):
        sf.argmax(x, axis=-3)
    with pytest.raises(AxisError):
        sf.concatenate([x, x], axis=5)


def test_other_shape_errors():
    x = sf.tensor("x", (3, 4))
    with pytest.raises(ShapeError, match="cannot reshape"):
        x.reshape(5, 3)
    with pytest.raises(ShapeError, match="do not broadcast"):
        x + sf.tensor("y", (3,))
    with pytest.raises(ShapeError, match="out of range"):
        x[3]
    with pytest.raises(ShapeError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(ShapeError, match="cannot broadcast"):
        sf.broadcast_to(x, (4, 3))


def test_errors_are_one_hierarchy_and_builtin_compatible():
    x = sf.tensor("x", (2,))
    with pytest.raises(ValueError):
        x.reshape(3)
    with pytest.raises(TypeError):
        x + sf.tensor("b", (2,), "bool")
    assert issubclass(InputError, SymfuseError) and issubclass(GradError, SymfuseError)


def test_calling_with_wrong_shape_or_dtype():
    x = sf.tensor("x", (2, 3))
    y = sf.tensor("labels", (2,), "int32")
    f = sf.function([x, y], x.sum() + y.astype("float32").sum(), device="interp")
    good = np.ones((2, 3), np.float32)
    assert f(good, np.array([1, 2], np.int32)) == pytest.approx(9.0)
    with pytest.raises(InputError) as e:
        f(np.ones((3, 2), np.float32), np.array([1, 2], np.int32))
    assert "'x'" in str(e.value) and "(2, 3)" in str(e.value) and "(3, 2)" in str(e.value)
    with pytest.raises(InputError) as e:
        f(good, np.array([1, 2], np.int64))
    assert "'labels'" in str(e.value) and "int64" in str(e.value) and "int32" in str(e.value)
    with pytest.raises(InputError, match="expected 2 argument"):
        f(good)
    with pytest.raises(InputError, match="dtype"):
        f(good.astype(np.float64), np.array([1, 2], np.int32))
    # Python lists and scalars of a compatible kind are converted
    assert f(good.tolist(), [1, 2]) == pytest.approx(9.0)
    assert f(x=good, labels=[0, 0]) == pytest.approx(6.0)


def test_grad_errors():
    x = sf.tensor("x", (3,))
    z = sf.tensor("z", (3,))
    with pytest.raises(GradError) as e:
        sf.grad(x * 2, x)
    assert "scalar" in str(e.value) and THIS in str(e.value)
    with pytest.raises(GradError) as e:
        sf.grad((x * 2).sum(), z)
    assert "does not depend on z" in str(e.value) and "disconnected='zero'" in str(e.value)
    g = sf.grad((x * 2).sum(), z, disconnected="zero")
    f = sf.function([x, z], g, device="interp")
    np.testing.assert_array_equal(f(np.ones(3, np.float32), np.ones(3, np.float32)), np.zeros(3))
    with pytest.raises(GradError, match="non-float"):
        i = sf.tensor("i", (3,), "int32")
        sf.grad(i.astype("float32").sum(), i)


def test_function_argument_errors():
    x = sf.tensor("x", (3,))
    s = sf.shared(np.zeros(3, np.float32), name="s")
    with pytest.raises(InputError, match="not a shared variable"):
        sf.function([x], x, updates=[(x, x + 1)], device="interp")
    with pytest.raises(DTypeError, match="astype"):
        sf.function([x], x, updates=[(s, (x > 0))], device="interp")
    with pytest.raises(ShapeError):
        sf.function([x], x, updates=[(s, x.sum())], device="interp")
    with pytest.raises(InputError, match="updated twice"):
        sf.function([x], x, updates=[(s, x), (s, x)], device="interp")
    with pytest.raises(InputError, match="listed twice"):
        sf.function([x, x], x, device="interp")
    with pytest.raises(sf.DeviceUnavailable, match="unknown device"):
        sf.function([x], x, device="tpu")


def test_shared_set_value_checks():
    s = sf.shared(np.zeros((2, 2), np.float32), name="W")
    s.set_value(np.ones((2, 2)))  # same kind, cast to float32
    assert s.get_value().dtype == np.float32 and s.get_value().sum() == 4
    with pytest.raises(ShapeError, match="W"):
        s.set_value(np.ones(3))
    with pytest.raises(DTypeError):
        s.set_value(np.ones((2, 2), complex))


def test_symbolic_tensors_have_no_truth_value():
    x = sf.tensor("x", (2,))
    with pytest.raises(TypeError, match="sf.where"):
        if x > 0:
            pass


@pytest.mark.parametrize("device", ["interp", "cpu", "cuda-emu"])
def test_mean_of_no_elements_is_nan_on_every_backend(device):
    """numpy and JAX: the mean of zero elements is nan (was a ZeroDivisionError at build)."""
    x = sf.tensor("x", (0, 3))
    f = sf.function([x], [x.mean(), x.mean(axis=0, keepdims=True), x.var(axis=0), x.mean(axis=1), x.max(axis=1)],
                    device=device)
    m, m0, v0, m1, mx1 = f(np.zeros((0, 3), np.float32))
    assert np.isnan(m) and m0.shape == (1, 3) and np.isnan(m0).all() and np.isnan(v0).all()
    assert m1.shape == (0,) and mx1.shape == (0,)      # reducing a non-empty axis: an empty result


@pytest.mark.parametrize("op", [sf.max, sf.min, sf.argmax, sf.argmin])
def test_max_min_over_an_empty_axis_is_a_shape_error(op):
    """No identity: numpy and JAX raise; the cpu backend used to return -inf/+inf."""
    x = sf.tensor("x", (2, 0, 3))
    for axis in (1, None):
        with pytest.raises(ShapeError) as e:
            op(x, axis=axis)
        msg = str(e.value)
        assert msg.startswith(op.__name__ + ":") and "axis 1 of f32[2,0,3] is empty" in msg and THIS in msg
    with pytest.raises(SymfuseError, match="axis 1 of f32\\[2,0,3\\] is empty"):
        sf.ir.parse("func @main(%x: f32[2,0,3]) -> (f32[2,3]) {\n  %0 = max %x {axis = [1], keepdims = false}"
                    " : f32[2,3]\n  return %0\n}\n")

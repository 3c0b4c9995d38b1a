"""User-chosen strings never reach generated code or paths unchecked (issue 20,
item 5), and misspelled options are errors (item 7)."""
import os

import numpy as np
import pytest

import symfuse as sf
from symfuse.errors import InputError

HOSTILE = ["x */ int evil(void) { return 1; } /*", "../../escape", "a/b", "lenet-train", "", "1abc",
           "name\nwith newline", "é", "a" * 129, 'q"uote', "sp ace"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_function_names_are_refused_with_the_users_line(name):
    x = sf.tensor("x", (3,))
    with pytest.raises(InputError, match=r"is not a function name.*\(at .*test_injection.py:\d+\)"):
        sf.function([x], x + 1, name=name, device="interp")


@pytest.mark.parametrize("name", ["main", "lenet_train", "model.step", "_f2", "a" * 128])
@pytest.mark.parametrize("device", ["cpu", "cuda-emu"])
def test_valid_names_round_trip_through_the_ir_and_a_cache_hit(name, device, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    x = sf.tensor("x", (3,))
    for _ in range(2):              # the second compile is a graph-cache hit
        f = sf.function([x], x * 2, name=name, device=device)
        assert f"@{name}" in f.ir() and name in repr(f)
        np.testing.assert_array_equal(f(np.arange(3, dtype=np.float32)), [0, 2, 4])
    assert f.report.info.get("graph_cache") == "hit"
    assert sf.ir.parse(f.ir()).name == name


@pytest.mark.parametrize("device", ["cpu", "cuda-emu"])
def test_hostile_tensor_and_shared_names_stay_out_of_generated_code(device, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    evil = "*/ #include </etc/passwd> /*"
    x = sf.tensor(evil, (4,))
    s = sf.shared(np.ones(4, np.float32), name="../" + evil)
    f = sf.function([x], sf.exp(x) + s, updates=[(s, s * 2)], device=device)
    np.testing.assert_allclose(f(np.zeros(4, np.float32)), 2 * np.ones(4), rtol=1e-6)
    assert evil not in (f.source or "") and "passwd" not in (f.source or "")
    for dirpath, dirs, files in os.walk(tmp_path):
        assert not any("passwd" in n or "#include" in n for n in dirs + files)
    assert sf.ir.parse(f.ir()) is not None


@pytest.mark.parametrize("device, typo, hint", [("cpu", "profle", "profile"), ("cuda-emu", "cuda_grph", "cuda_graph"),
                                                ("interp", "profile", None)])
def test_misspelled_options_are_errors(device, typo, hint):
    x = sf.tensor("x", (3,))
    with pytest.raises(InputError, match=rf"unknown option {typo!r} for device {device!r}"
                       + (rf" \(did you mean {hint!r}\?\)" if hint else "")):
        sf.function([x], x + 1, device=device, **{typo: True})

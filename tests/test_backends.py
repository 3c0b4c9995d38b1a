"""The backend registry: a device that cannot run here says what it lacks and how
to get it (issue 14, item 6), and backends are made on first use."""
import pytest

import symfuse as sf
from symfuse.runtime import backends, cpu


@pytest.mark.parametrize("lacks, needle", [("blas", r"OpenBLAS \(pip install scipy-openblas32\)"),
                                           ("cc", r"a C compiler")])
def test_unavailable_cpu_names_what_is_missing(monkeypatch, lacks, needle):
    if lacks == "blas":
        monkeypatch.setattr(cpu, "blas_available", lambda: False)
    else:
        monkeypatch.setattr(cpu, "find_compiler", lambda: None)
    x = sf.tensor("x", (2,))
    with pytest.raises(sf.DeviceUnavailable, match=rf"device 'cpu' is not available here: it needs .*{needle}"
                       r".*\(at .*test_backends.py:\d+\)"):
        sf.function([x], x + 1, device="cpu")


def test_unknown_device_lists_the_known_ones():
    x = sf.tensor("x", (2,))
    with pytest.raises(sf.DeviceUnavailable, match=r"unknown device 'tpu'; known: cpu, cuda, cuda-emu, interp"):
        sf.function([x], x + 1, device="tpu")


def test_backends_are_made_once_on_first_use():
    assert backends.get_backend("cpu") is backends.get_backend("cpu")
    assert backends.get_backend("cuda-emu").name == "cuda-emu"

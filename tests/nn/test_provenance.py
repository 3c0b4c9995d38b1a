"""Provenance of models built with symfuse.nn: each op names its layer, where that
layer was defined, and the user's line that called the model; zoo models built by
the CLI name the zoo's lines, never click's."""
import json
import os
import subprocess
import sys

import numpy as np

import symfuse as sf
from symfuse import nn
from symfuse.ir.parser import parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.basename(__file__)


def _line(tag):
    with open(__file__) as f:
        return next(i for i, text in enumerate(f, 1) if text.rstrip().endswith(f"# {tag}"))


def test_ops_name_layer_definition_and_call_site():
    model = nn.Sequential([
        nn.Dense(4, 8, activation="tanh"),  # dense-def
        nn.Dense(8, 2),
    ])
    x = sf.tensor("x", (3, 4))
    y = model(x)  # call-site
    f = sf.function([x], y, device="cpu")
    prov = [p for k in f.kernels for p in k.provenance]
    want = f"{HERE}:{_line('call-site')} in Dense 'dense0' ({HERE}:{_line('dense-def')})"
    assert any(want in p for p in prov), prov
    assert any("in Dense 'dense1'" in p for p in prov)
    assert not any("site-packages" in p or "module.py" in p for p in prov)


def test_scoped_locations_survive_printing_and_parsing():
    model = nn.Dense(3, 2, name="head")
    x = sf.tensor("x", (1, 3))
    f = sf.function([x], model(x), device="interp")
    text = f.ir(locations=True)
    assert "Dense 'head' (" in text
    fn = parse(text)
    locs = {op.loc for op in fn.ops if op.loc}
    assert any(len(loc) == 3 and loc[2].startswith("Dense 'head' (") for loc in locs)
    assert parse(text).__str__() == fn.__str__()
    np.testing.assert_allclose(sf.function([x], model(x), device="interp")(np.ones((1, 3), np.float32)).shape, (1, 2))


def test_errors_inside_a_layer_name_it():
    class Bad(nn.Module):
        def forward(self, x, train):
            return x @ sf.ones((5, 5))      # shapes disagree

    x = sf.tensor("x", (2, 3))
    try:
        Bad(name="bad")(x)
    except sf.ShapeError as e:
        assert "in Bad 'bad' (" in str(e) and f"{HERE}:" in str(e)
    else:
        raise AssertionError("no ShapeError")


def test_cli_zoo_provenance_names_the_zoo_not_click(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "symfuse.cli", "inspect", "lenet", "--train", "--batch", "8",
                          "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    prov = [p for k in json.loads(out.stdout) for p in k["provenance"]]
    assert not any("click" in p or "core.py" in p for p in prov), prov
    assert any("Conv2D 'conv0' (zoo.py:" in p for p in prov)
    assert any("SGD update" in p for p in prov)


def test_a_layer_name_cannot_escape_the_kernel_comment():
    # provenance is printed inside /* ... */ in the generated C and CUDA: a user-chosen
    # layer name must not close that comment and inject code
    model = nn.Dense(3, 2, name="x */ int injected = 1; /* \n#error boom")
    x = sf.tensor("x", (1, 3))
    for device in ("cpu", "cuda-emu"):
        f = sf.function([x], model(x), device=device)
        assert f(np.ones((1, 3), np.float32)).shape == (1, 2)
        assert not [ln for ln in f.source.splitlines() if "injected" in ln and "*/" in ln]

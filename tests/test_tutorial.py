"""docs/tutorial.md runs as written: its Python blocks, in order, in one fresh
process (a block that no longer matches the API, or an assertion in it that no
longer holds, fails here)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIAL = os.path.join(ROOT, "docs", "tutorial.md")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_tutorial_has_the_steps_it_promises():
    with open(TUTORIAL) as fh:
        text = fh.read()
    code = "\n".join(python_blocks(text))
    for needed in ("sf.tensor", "sf.function", "sf.grad", "sf.shared", "data.digits", "nn.fit", "sf.export"):
        assert needed in code, needed


def test_tutorial_blocks_run(tmp_path):
    with open(TUTORIAL) as fh:
        blocks = python_blocks(fh.read())
    script = "\n\n".join(f"# --- block {i + 1}\n{b}" for i, b in enumerate(blocks))
    (tmp_path / "tutorial.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, str(tmp_path / "tutorial.py")], capture_output=True, text=True,
                         env=env, timeout=900, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "libdigits.so" in out.stdout

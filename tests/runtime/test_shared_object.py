"""The one builder of loaded files (runtime/shared_object.py): found intact or
built, sealed by where it lives, reproducible, and loud about where a failed
source was saved. The backends' own use of it is tested through compiles
(test_cache_trust.py, test_cache_faults.py, test_artefact_damage.py)."""
import os
import shutil

import pytest

from symfuse.errors import CompileError
from symfuse.runtime.cache import DiskCache
from symfuse.runtime.shared_object import Recipe, SharedObject, in_cache, in_directory

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")

SOURCE = "int sf_answer(void) { return 42; }\n"


def _recipe(source=SOURCE, **kw):
    return Recipe("cc", (("module.c", source),), ("-shared", "-fPIC", "-O1"), what="C compilation of @t", **kw)


def test_a_miss_builds_seals_and_the_next_lookup_hits(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    so = SharedObject("k.so", [in_cache("test-lib", "ab")], cache)
    assert so.find() is None
    built = so.get(_recipe())
    assert not built.hit and built.stored and built.path == str(tmp_path / "c" / "test-lib" / "ab" / "k.so")
    assert os.path.dirname(built.load_path) == built.work and os.path.samefile(built.load_path, built.path)
    assert cache.file_verified(built.path) and os.path.exists(built.path + ".mac")
    built.done()
    assert not any(n.startswith(".tmp-") for n in os.listdir(os.path.dirname(built.path)))
    again = SharedObject("k.so", [in_cache("test-lib", "ab")], cache).get(lambda: pytest.fail("rebuilt"))
    assert again.hit and again.path == again.load_path == built.path


def test_two_builds_of_one_source_give_the_same_bytes(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    a = SharedObject("a.so", [in_cache("test-lib", "aa")], cache).get(_recipe())
    b = SharedObject("b.so", [in_cache("test-lib", "bb")], cache).get(_recipe())
    assert open(a.path, "rb").read() == open(b.path, "rb").read()


def test_a_damaged_product_is_rebuilt_not_used(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    built = SharedObject("k.so", [in_cache("test-lib", "ab")], cache).get(_recipe())
    built.done()
    with open(built.path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff" * 16)
    so = SharedObject("k.so", [in_cache("test-lib", "ab")], cache)
    assert so.find() is None
    assert not so.get(_recipe()).hit and cache.file_verified(built.path)


def test_an_installation_directory_gets_a_checksum_and_companions_go_first(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    inst = tmp_path / "install" / "key"

    def header(work):
        with open(os.path.join(work, "api.h"), "w") as fh:
            fh.write("int sf_answer(void);\n")
    so = SharedObject("lib.so", [in_directory(str(inst))], cache, companions=("api.h",))
    built = so.build(_recipe(output="lib.so"), finish=header)
    built.done()
    assert built.stored and built.path == str(inst / "lib.so")
    assert {"lib.so", "lib.so.sha256", "api.h", "api.h.sha256"} <= set(os.listdir(inst))
    assert SharedObject("lib.so", [in_directory(str(inst))], cache, companions=("api.h",)).find().hit
    os.remove(inst / "api.h")           # a product without its companion is not a hit
    assert SharedObject("lib.so", [in_directory(str(inst))], cache, companions=("api.h",)).find() is None


def test_without_a_usable_location_the_product_is_this_process_s_alone(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    cache.enabled = False
    built = SharedObject("k.so", [in_cache("test-lib", "ab")], cache).get(_recipe())
    assert not built.stored and built.path == built.load_path and os.path.exists(built.path)
    built.done()
    assert not os.path.exists(built.path)


def test_parallel_units_are_compiled_and_linked(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    units = (("module.u0.c", "int sf_a(void) { return 1; }\n"), ("module.u1.c", "int sf_b(void) { return 2; }\n"))
    recipe = Recipe("cc", (("module.c", "/* the whole module */\n"), *units), ("-shared", "-fPIC"),
                    units=("module.u0.c", "module.u1.c"), what="C compilation of @t")
    built = SharedObject("k.so", [in_cache("test-lib", "ab")], cache).get(recipe)
    import ctypes
    lib = ctypes.CDLL(built.load_path)
    assert lib.sf_a() + lib.sf_b() == 3


@pytest.mark.parametrize("units", [False, True])
def test_a_failed_compile_says_where_the_source_was_saved(tmp_path, units):
    cache = DiskCache(str(tmp_path / "c"))
    bad = "int broken = ;\n"
    recipe = (Recipe("cc", (("module.c", bad), ("module.u0.c", bad)), ("-shared", "-fPIC"), units=("module.u0.c",),
                     what="C compilation of @t") if units else _recipe(bad))
    with pytest.raises(CompileError, match=r"^C compilation of @t failed \(cc\); (unit sources saved in|source saved "
                                           r"at) (\S+)") as e:
        SharedObject("k.so", [in_cache("test-lib", "ab")], cache).get(recipe)
    saved = str(e.value).split("saved ", 1)[1].split(" ", 1)[1].split(":\n")[0]
    assert open(saved if not units else os.path.join(saved, "module.u0.c")).read() == bad


def test_an_interrupted_build_leaves_no_build_directory(tmp_path, monkeypatch):
    """Ctrl-C during the compiler: the half-made build directory goes, so it is neither
    counted by `cache info` nor left for maintenance to find an hour later."""
    import symfuse.runtime.shared_object as so
    cache = DiskCache(str(tmp_path / "cache"))

    def interrupted(recipe, work):
        with open(os.path.join(work, "module.c"), "w") as fh:
            fh.write("int x;")
        raise KeyboardInterrupt
    monkeypatch.setattr(so, "compile_in", interrupted)
    lib = SharedObject("m.so", [in_cache("cpu-lib", "ab")], cache)
    with pytest.raises(KeyboardInterrupt):
        lib.build(_recipe())
    place = lib.place()
    assert place is not None and os.path.isdir(place)
    assert not [n for n in os.listdir(place) if n.startswith(so.BUILD_PREFIX)]

"""Compiling sources into a file that gets loaded (a shared object for
``dlopen``, or a precompiled header for the compiler), stored where it may be
found again and checked before it is used: the one builder behind the cpu
backend's units, the cuda-emu modules, the C runtime library and the
precompiled headers.

Where a product may live is a list of ``Location``s, tried in order: a
directory of the compile cache (``in_cache``: every level a private directory,
the product sealed with the cache's key, ``DiskCache.file_verified`` before use)
or a directory outside it (``in_directory``: made when missing, the product
carrying a ``.sha256`` sidecar against damage; ``installed``: looked in, never
built into, as the installation's own files are written only by ``pip install``). ``artefact_ok`` /
``seal_artefact`` pick the seal by where the path lies. A product found intact
in any location is a hit; a miss is built in the first location that can be
written, or, when none can, in a temporary directory for this process only.

A build runs in a directory of its own (``.tmp-build-*``, inside the location
so that maintenance knows it and the product can be hard-linked into place)
with fixed file names and the compiler started there: the compiler records
the names it is given, so two builds of one source give the same bytes, and
processes building the same product at once write identical files whose seals
agree. The seal is written before the product is linked into place, so a
reader never pairs a new file with no seal. A fresh product is loaded from the
build directory (``Built.load_path``), which a ``cache clear`` running beside
the compile leaves alone while it is fresh; ``Built.done()`` removes it once
the product is mapped.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Callable

from ..errors import CompileError
from .cache import _TMP_PREFIX, DiskCache, environment_cache, file_digest, warn_once

BUILD_PREFIX = _TMP_PREFIX + "build-"
_LOG_TAIL = 6000       # characters of a failed compiler's output kept in the error
_UNIT_LOG_TAIL = 3000


@dataclass(frozen=True)
class Recipe:
    """One compile in a build directory. ``sources``: (file name, text or bytes)
    written there; the first is what the compiler is given (``language``: its
    ``-x`` when the suffix does not say it) unless ``units`` names sources that
    are compiled each by a compiler process of its own, all at once, and then
    linked. ``flags`` follow the inputs on the command line (libraries after
    the objects that need them). ``what`` opens the error message:
    "C compilation of @main" -> "C compilation of @main failed (cc); source saved at ..."."""
    compiler: str
    sources: tuple[tuple[str, str | bytes], ...]
    flags: tuple[str, ...] = ()
    output: str = "module.so"
    language: str | None = None
    units: tuple[str, ...] = ()
    what: str = "compilation"

    def command(self) -> list[str]:
        lang = ["-x", self.language] if self.language else []
        return [self.compiler, *lang, self.sources[0][0], "-o", self.output, *self.flags]


def object_flags(flags) -> list[str]:
    """The flags of a compile to an object: ``flags`` without what only a link takes."""
    return [f for f in flags if f != "-shared" and not f.startswith(("-L", "-l", "-Wl,"))]


def link_flags(flags) -> list[str]:
    return [f for f in flags if f in ("-shared", "-fopenmp") or f.startswith(("-L", "-l", "-Wl,"))]


def writable_dir(d: str) -> bool:
    """``d`` exists (made now when missing, 0755: an installation's builds are
    read by all its users) and this process may write into it."""
    try:
        os.makedirs(d, mode=0o755, exist_ok=True)
        return os.access(d, os.W_OK)
    except OSError:
        return False


def artefact_ok(path: str, cache: DiskCache) -> bool:
    """A file symfuse built may be used: inside the cache, ``cache.file_verified``;
    elsewhere (the installation's ``_build``, as trusted as symfuse's own code) its
    ``.sha256`` sidecar matches, so a damaged build is rebuilt, never loaded."""
    if cache._relative(path) is not None:
        return cache.file_verified(path)
    try:
        with open(path + ".sha256", "rb") as fh:
            want = fh.read(100)
        with open(path, "rb") as fh:
            got = file_digest(fh).hex().encode()
    except OSError:
        return False
    if not hmac.compare_digest(got, want.strip()):
        warn_once(f"symfuse: {path} is damaged (checksum mismatch); rebuilding it")
        return False
    return True


def seal_artefact(path: str, data: bytes, cache: DiskCache, staged: str | None = None) -> bool:
    """Write what ``artefact_ok`` checks for ``path`` holding ``data`` (before the file
    itself is moved into place): True when written."""
    import tempfile  # lazy: only writes need it (import symfuse stays light)
    if cache._relative(path) is not None:
        return cache.seal_file(path, data, staged)
    side = (staged or path) + ".sha256"
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(side), prefix=_TMP_PREFIX)
        with os.fdopen(fd, "w") as fh:
            fh.write(hashlib.sha256(data).hexdigest())
        os.chmod(tmp, 0o644)               # the installation's files are readable by its users
        os.replace(tmp, side)
    except OSError:
        return False
    return True


def intact(path: str, cache: DiskCache | None = None) -> bool:
    """``path`` exists and passes its seal (``artefact_ok``)."""
    return os.path.exists(path) and artefact_ok(path, cache or environment_cache())


@dataclass(frozen=True)
class Location:
    """A directory a product may be found in and built into: ``parts`` below
    the compile cache's root, or ``path``, a directory outside it (``buildable``
    False: found there, never built there)."""
    parts: tuple[str, ...] = ()
    path: str | None = None
    buildable: bool = True

    def find(self, cache: DiskCache) -> str | None:
        return self.path if self.path is not None else cache.private_dir(*self.parts, create=False)

    def make(self, cache: DiskCache) -> str | None:
        if not self.buildable:
            return None
        if self.path is not None:
            return self.path if writable_dir(self.path) else None
        return cache.private_dir(*self.parts) if cache.enabled else None


def in_cache(*parts: str) -> Location:
    return Location(parts=parts)


def in_directory(path: str) -> Location:
    return Location(path=path)


def installed(path: str) -> Location:
    """A directory of the installation: what ``pip install`` built there is used, but
    nothing is added at run time, so ``pip uninstall`` (which removes what the
    wheel's RECORD lists) leaves nothing behind."""
    return Location(path=path, buildable=False)


@dataclass
class Built:
    """A product: ``path`` where it stays (in its location, or in the build
    directory when it could not be stored), ``load_path`` what to load now,
    ``hit`` found rather than built, ``stored`` in a location."""
    path: str
    load_path: str
    hit: bool
    stored: bool
    work: str | None = None

    def done(self) -> None:
        """Remove the build directory (a loaded shared object needs no file)."""
        if self.work is not None:
            import shutil  # lazy: only a build needs it (a warm compile imports this module)
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None


class SharedObject:
    """The product named ``name`` in the first of ``where`` that holds it intact
    (with its ``companions``, further files of the build installed beside it
    before it: an API header, the header a precompiled one stands for)."""

    def __init__(self, name: str, where, cache: DiskCache | None = None, companions=()):
        self.name = name
        self.where = list(where)
        self.cache = cache if cache is not None else environment_cache()
        self.companions = tuple(companions)
        self._place: list = []

    def find(self) -> Built | None:
        for loc in self.where:
            d = loc.find(self.cache)
            if d is None:
                continue
            path = os.path.join(d, self.name)
            if intact(path, self.cache) and all(intact(os.path.join(d, n), self.cache) for n in self.companions):
                if loc.path is None:
                    try:
                        os.utime(path)     # least recently used goes first in `cache prune`
                    except OSError:
                        pass
                return Built(path, path, True, True)
        return None

    def place(self) -> str | None:
        """The directory a build goes into (made now), or None when no location can be written."""
        if not self._place:
            self._place.append(next((d for d in (loc.make(self.cache) for loc in self.where) if d), None))
        return self._place[0]

    def get(self, recipe: Recipe | Callable[[], Recipe]) -> Built:
        """Found, or built from ``recipe`` (a callable is asked only on a miss: what
        a hit does not need, such as a precompiled header, is not made)."""
        return self.find() or self.build(recipe() if callable(recipe) else recipe)

    def build(self, recipe: Recipe, finish: Callable[[str], None] | None = None, keep_failed: bool = True) -> Built:
        """Compile ``recipe`` and store its output as ``name``. ``finish(work)`` runs
        in the build directory after the compile (writing the companions a compile
        does not). A failed compile raises CompileError naming where the source
        was saved; ``keep_failed=False`` removes it (a failure the caller survives)."""
        import tempfile  # lazy: only a build needs it
        parent = self.place()
        try:
            work = tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=parent)
        except OSError:                      # a full disk: build for this process alone
            parent, work = None, tempfile.mkdtemp(prefix=BUILD_PREFIX)
        try:
            out = compile_in(recipe, work)
            if finish is not None:
                finish(work)
        except CompileError:
            if not keep_failed:
                Built(work, work, False, False, work).done()
            raise
        except BaseException:     # Ctrl-C (or a dying process) mid-compile: nothing worth keeping
            Built(work, work, False, False, work).done()
            raise
        if parent is not None:
            final = os.path.join(parent, self.name)
            if (all(install(os.path.join(work, n), os.path.join(parent, n), self.cache) for n in self.companions)
                    and install(out, final, self.cache)):
                return Built(final, out, False, True, work)
        return Built(out, out, False, False, work)


def install(built: str, final: str, cache: DiskCache) -> bool:
    """Seal ``built``'s bytes as ``final``'s, then give the file that second name
    (atomically, replacing an older one); False when either cannot be written."""
    with open(built, "rb") as fh:
        if not seal_artefact(final, fh.read(), cache):
            return False
    link = built + ".link"
    try:
        try:
            os.link(built, link)
        except OSError:                      # a file system without hard links
            import shutil  # lazy: only a build needs it
            shutil.copyfile(built, link)
        os.replace(link, final)
    except OSError:
        return False
    return True


def put_file(final: str, data: bytes, cache: DiskCache) -> bool:
    """``data`` written as ``final`` (sealed, atomically) without a compile: a header
    whose precompiled form could not be made is still needed as text."""
    import tempfile  # lazy: only a build needs it
    try:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=os.path.dirname(final))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
    except OSError:
        return False
    ok = seal_artefact(final, data, cache)
    try:
        if ok:
            os.replace(tmp, final)
        else:
            os.remove(tmp)
    except OSError:
        return False
    return ok


def compile_in(recipe: Recipe, work: str) -> str:
    """Write ``recipe``'s sources into ``work`` and compile them there: the output's path."""
    import subprocess  # lazy: only a build needs it
    for name, text in recipe.sources:
        with open(os.path.join(work, name), "wb") as fh:
            fh.write(text.encode() if isinstance(text, str) else text)
    if recipe.units:
        _compile_units(recipe, work)
    else:
        proc = subprocess.run(recipe.command(), capture_output=True, text=True, cwd=work)
        if proc.returncode != 0:
            raise CompileError(f"{recipe.what} failed ({recipe.compiler}); source saved at "
                               f"{os.path.join(work, recipe.sources[0][0])}:\n" + proc.stderr[-_LOG_TAIL:])
    return os.path.join(work, recipe.output)


def _compile_units(recipe: Recipe, work: str) -> None:
    """Each unit to an object by a compiler process of its own, all at once, then one link."""
    import subprocess  # lazy: only a build needs it
    cc, flags = recipe.compiler, object_flags(recipe.flags)
    objects = [os.path.splitext(u)[0] + ".o" for u in recipe.units]
    procs = [subprocess.Popen([cc, "-c", u, "-o", o, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=work) for u, o in zip(recipe.units, objects)]
    errors = []
    for u, proc in zip(recipe.units, procs):
        _, err = proc.communicate()
        if proc.returncode != 0:
            errors.append(f"{u}:\n{err[-_UNIT_LOG_TAIL:]}")
    if not errors:
        proc = subprocess.run([cc, *objects, "-o", recipe.output, *link_flags(recipe.flags)],
                              capture_output=True, text=True, cwd=work)
        if proc.returncode != 0:
            errors.append(f"link:\n{proc.stderr[-_UNIT_LOG_TAIL:]}")
    if errors:
        raise CompileError(f"{recipe.what} failed ({cc}); unit sources saved in {work}:\n" + "\n".join(errors))

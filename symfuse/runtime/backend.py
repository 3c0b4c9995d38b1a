"""The interface every device implements: ``Backend`` (what ``sf.function`` asks
of a device) and ``Program`` (what a compile returns and a call runs). A backend
overrides only what differs from these defaults.

``Backend.compile`` runs the one pipeline of a compiled target, lower -> fuse ->
plan -> emit -> build -> load, with its report stages, and asks the backend
through hooks for what differs (see ``compile``)."""
from __future__ import annotations

import time

from ..ir.symdim import spelled
from .cache import DiskCache, environment_cache



def _planned_buffers(plan, partition) -> list[dict]:
    """Every arena buffer as plain data (``symfuse compile -o``'s memory_plan.json):
    its offset and size, its lifetime in schedule steps (kernel groups, inclusive)
    and, when written in place, the buffer whose bytes it took over."""
    values = {str(id(v)): v for g in partition.groups for v in g.outputs}

    def label(name: str) -> str:
        v = values.get(name)
        if v is None:
            return name                           # a library kernel's scratch: "scratch<step>"
        return v.name or (f"{v.op.opdef.name}.{v.id}" if v.op is not None else f"value.{v.id}")
    reuses = dict(plan.inplace)
    out = []
    for b in plan.buffers:
        v = values.get(b.name)
        size = v.type.nbytes if v is not None else b.nbytes
        # with a run-time size, offsets and bytes are expressions as the IR spells them ("(batch*40)")
        out.append({"name": label(b.name), "offset": spelled(plan.offsets[b.name]), "bytes": spelled(size),
                    "first_step": b.first, "last_step": b.last,
                    "shape": spelled(list(v.type.shape)) if v is not None else None,
                    "dtype": str(v.type.dtype) if v is not None else "uint8",
                    "in_place_of": label(reuses[b.name]) if b.name in reuses else None})
    return out


def _arena_by_size(plan, sizes) -> dict:
    """The arena as a function of the run-time size, and its bytes at a few sizes."""
    at = sorted({1, 32, 128, *sizes.specialize} | ({sizes.maximum} if sizes.maximum else set()))
    arena = plan.arena_bytes
    return {"names": list(sizes.names), "max": sizes.maximum, "arena": spelled(arena),
            "arena_bytes_at": {str(n): arena if type(arena) is int else arena.evaluate({k: n for k in sizes.names})
                               for n in at if sizes.maximum is None or n <= sizes.maximum}}


class Program:
    """A compiled function: ``program(arrays) -> arrays`` (inputs, then the shared
    variables' values; outputs, then the updated values)."""

    device_values = False     # results may be DeviceValues kept on the device between calls
    kernels: list = []        # what f.kernels shows (KernelInfo, CudaKernel, ...)
    source: str | None = None

    def __call__(self, arrays: list) -> list:
        raise NotImplementedError

    def recycle(self, result: int, array) -> None:
        """``array``, the previous value of a shared variable updated from ``result``
        and referenced nowhere else, may hold that result next call (a backend that
        writes results into buffers of its own overrides this)."""

    def profile(self) -> list[tuple[str, float, int]]:
        """(kernel, mean seconds per call, calls) for a function compiled with profile=True."""
        raise ValueError("this device has no per-kernel profile")


class Backend:
    """A device ``sf.function`` can compile for.

    ``options``: the keyword options ``sf.function`` accepts for it and the type
    of each value (any other name, or a value of another type, is an error naming
    the option). ``graph_cache``: its compiles can be
    stored in and restored from the graph cache (``identity``, ``export``,
    ``load``)."""

    name: str = ""
    options: dict = {}        # option name -> the type its value must have
    graph_cache: bool = False

    def missing(self) -> list[str]:
        """What this machine lacks for the device, each with how to get it."""
        return []

    def available(self) -> bool:
        """It can compile here."""
        return not self.missing()

    def runnable(self) -> bool:
        """It can also run here (a GPU device may compile without a GPU)."""
        return self.available()

    @property
    def cache(self) -> DiskCache:
        return environment_cache()

    def prepare(self, report) -> None:
        """One-time work before a compile (building a runtime library), shown in the
        report as a stage of its own rather than inside the graph-cache lookup."""

    # -------------------------------------------------------------- the compile
    runtime_sizes = False     # compiles run-time sizes (``sf.tensor("x", ("batch", 784))``)
    specialized_builds = False  # ... and literal-size builds of them (``specialize=``)
    sized_graph_cache = False   # ... and stores those in the graph cache (``load`` takes the sizes)

    def compile(self, fn, options: dict, report, sizes=None) -> Program:
        """The optimised ``fn`` as a Program: the target's lowering passes, fusion,
        the memory plan, the code generator, the toolchain and the loader, each a
        report stage ("blas", ..., "fusion", "memory plan", "codegen", then the
        stages ``build`` and ``load_built`` record)."""
        t0 = time.perf_counter()
        # the compile path is imported here, not with the backend: a graph-cache hit
        # (``load``) needs none of it (fusion, Jinja and a code generator: ~30-60 ms)
        from ..compiler.fusion import fuse
        from ..compiler.layout import layout
        from ..compiler.pipeline import lower
        self.import_codegen()
        report.add_if_slow("import codegen", t0, f"once per process: fusion, Jinja, the {self.name} code generator")
        job = CompileJob(fn, options, report, sizes)
        self.begin(job)
        job.fn = lower(job.fn, self.lower_passes(options), report)
        with report.stage("fusion", ops_before=len(job.fn.ops)) as st:
            job.partition = fuse(job.fn, **self.fuse_options(options))
            st.ops_after = len(job.partition.groups)
            st.note = f"{len(job.fn.ops)} ops -> {len(job.partition.groups)} kernels"
        if self.codegen_before_plan:
            with report.stage("codegen"):
                job.kernels = self.kernels(job)
        scratch = self.scratch(job)
        if any(g.kind == "control" for g in job.partition.groups):
            from ..compiler.loops import plan_loop    # lazy: only a program with loops needs it
            with report.stage("loop bodies") as st:
                prepare = self.prepare_body(job)
                job.loops = {g.index: plan_loop(g.root, prepare, sizes)
                             for g in job.partition.groups
                             if g.kind == "control"}
                st.note = f"{sum(len(lp.bodies) for lp in job.loops.values())} region(s) fused and planned"
            scratch = {**scratch, **{i: lp.scratch_bytes for i, lp in job.loops.items()}}
        with report.stage("memory plan") as st:
            job.layout = layout(job.fn, job.partition, scratch, sizes)
            st.note = job.layout.plan.table().splitlines()[0]
            if sizes and sizes.maximum is not None and type(job.layout.plan.arena_bytes) is int:
                st.note += f", planned for {' = '.join(sizes.names)} <= {sizes.maximum}"
        plan = job.layout.plan
        report.info["memory"] = {k: spelled(getattr(plan, k))
                                 for k in ("arena_bytes", "naive_bytes", "lower_bound_bytes")}
        report.info["memory"]["buffers"] = _planned_buffers(plan, job.partition)
        if sizes:
            report.info["memory"]["sizes"] = _arena_by_size(plan, sizes)
        if self.codegen_before_plan:
            emitted = self.emit(job)
        else:
            with report.stage("codegen"):
                emitted = self.emit(job)
        built = self.build(job, emitted)
        if self.load_stage is None:
            return self.load_built(job, emitted, built)
        with report.stage(self.load_stage):
            return self.load_built(job, emitted, built)

    # Hooks of ``compile``, in the order it calls them.
    codegen_before_plan = False   # kernels() runs before the memory plan (their workspace feeds it)
    load_stage: str | None = "load"   # the stage load_built runs in (None: it records its own, or none)

    def import_codegen(self) -> None:
        """Import the code generator (timed with fusion's import as "import codegen")."""

    def begin(self, job: "CompileJob") -> None:
        """What a compile needs before lowering: checks of its options, a toolchain
        to load, a runtime library to find (each may record a stage of its own)."""

    def lower_passes(self, options: dict) -> tuple[str, ...]:
        """Tags of the lowering passes (``compiler/passes/lowering.py``) this target runs before fusion."""
        return ()

    def fuse_options(self, options: dict) -> dict:
        """Keywords of ``compiler.fusion.fuse`` for this target."""
        return {"horizontal": True}

    def kernels(self, job: "CompileJob") -> list:
        """With ``codegen_before_plan``: the kernels of ``job.partition``, built in
        the "codegen" stage before the memory plan; ``emit`` then assembles them."""
        raise NotImplementedError

    def prepare_body(self, job: "CompileJob"):
        """For a region body's partition, what the target does between fusion and the
        memory plan: ``partition -> (scratch bytes by group index, lowered)``, or None."""
        return None

    def scratch(self, job: "CompileJob") -> dict:
        """Arena bytes each group needs beyond its values (a library kernel's
        workspace), by group index: what the memory plan places for it."""
        return {}

    def emit(self, job: "CompileJob"):
        """The program's source and whatever ``build`` and ``load_built`` need of it,
        from ``job.partition`` and ``job.layout`` ("codegen" stage, unless the
        kernels were built before the plan)."""
        raise NotImplementedError

    def build(self, job: "CompileJob", emitted):
        """``emitted`` compiled (or found in the cache); records its own stages
        ("c compile", "nvrtc", ...), whose names differ by toolchain."""
        raise NotImplementedError

    def load_built(self, job: "CompileJob", emitted, built) -> Program:
        """The Program over what ``build`` made, in the ``load_stage``."""
        raise NotImplementedError

    def identity(self) -> str:
        """What, besides the graph and options, decides the compiled artefact."""
        return self.name

    def export(self, program: Program, report) -> dict:
        """The graph-cache entry of ``program``: plain data (``runtime/plain.py``)."""
        raise NotImplementedError

    def load(self, entry: dict, report) -> Program | None:
        """A program from a graph-cache entry, or None when it cannot be used (a miss)."""
        return None


class CompileJob:
    """One compile as it passes from hook to hook: the Function (the lowered one
    once lowering ran), its partition and layout once made, the kernels when they
    are built before the plan, and whatever a backend's hooks hand each other
    (one backend object serves every thread that compiles, so a compile's state
    lives here, never on the backend)."""

    def __init__(self, fn, options: dict, report, sizes=None):
        self.fn = fn
        self.sizes = sizes                # RuntimeSizes of a function with run-time sizes, else None
        self.options = options
        self.report = report
        self.partition = None
        self.layout = None
        self.kernels: list | None = None
        self.loops: dict = {}             # group index -> LoopPlan of a control group (compiler/loops.py)

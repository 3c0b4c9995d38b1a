"""Study 1: compile time, cold and warm, of symfuse and its peers.

    python bench/study_compile.py [--repeat 3] [--frameworks a,b,c] [--quick]

For each framework, model (MLP 784-512-512-10, LeNet-5; batch 128, float32) and
function (train: forward + backward + SGD update as one compiled function;
infer: softmax probabilities), ``--repeat`` times:

* cold: a fresh process with EMPTY compile caches (a fresh directory for each
  of SYMFUSE_CACHE_DIR, PyTensor's compiledir, JAX's persistent compilation
  cache with min compile time 0, TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR);
* warm: a second fresh process with the same cache directories.

Compile time = from the start of graph construction (after the imports, which
are reported separately) to a callable that has run once, minus one
steady-state call: (build + explicit compile + first call) - median(5 next calls).

Writes bench/results/compile.{json,md,png} (bench/results/quick/ with --quick).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import peers  # noqa: E402

NO_COMPILE = ("numpy", "torch-eager")
FUNCS = [("mlp", "train"), ("mlp", "infer"), ("lenet", "train"), ("lenet", "infer")]

WHAT = """\
## What is measured

- **compile time** = wall time from the start of graph construction to a callable that has run once, minus
  one steady-state call: `(build + explicit compile + first call) - median(next 5 calls)`. Graph
  construction includes turning the (identical, seeded) numpy parameters into the framework's
  tensors/shared variables. Lazy compilers (JAX's `jit`, `torch.compile`) compile inside the first
  call; symfuse and PyTensor compile in `sf.function` / `pytensor.function`; torch eager and numpy
  compile nothing, so their number is the first-call overhead (lazy initialisation, allocator warm-up)
  and can be slightly negative (noise).
- **import** (separate column) = `import` of the framework's modules in the same process, before the clock
  starts. Interpreter start-up is not included anywhere.
- **cold** = a fresh process with empty compile caches: a fresh directory for SYMFUSE_CACHE_DIR,
  PyTensor's `compiledir`, JAX's persistent compilation cache (`jax_compilation_cache_dir`,
  `jax_persistent_cache_min_compile_time_secs=0`, `jax_persistent_cache_min_entry_size_bytes=-1`),
  TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR. Caches outside these directories are not cleared
  (the OS page cache), and symfuse's runtime libraries and compiled templates, built once per
  installation and kept by `symfuse cache prune`, are built before anything is timed: every fresh
  symfuse cache starts with them.
- **warm** = a second fresh process with the same cache directories, right after the cold one.
- Each value is the median of `--repeat` cold/warm pairs, min-max in brackets.
- symfuse-cuda-aot compiles for `arch=sm_90` with NVRTC and is never called (no GPU): its compile time is
  the `sf.function` call alone.
- PyTensor runs with `Mode(linker="cvm", optimizer="fast_run")` (its C backend).
  torch-compile compiles the whole functional training step (`torch.func.grad_and_value` + SGD)
  with `torch.compile(fullgraph=True)`; JAX jits `value_and_grad` + SGD with the parameters donated.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--repeat", type=int, default=None, help="cold/warm pairs per point (default 3; quick: 1)")
    ap.add_argument("--functions", default=None,
                    help="comma-separated subset of " + ",".join(f"{m}-{k}" for m, k in FUNCS))
    H.add_common_args(ap)
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    args.timeout = args.timeout or 900
    funcs = FUNCS
    if args.functions:
        want = set(args.functions.split(","))
        funcs = [f for f in FUNCS if f"{f[0]}-{f[1]}" in want]
    st = H.Study("compile", args)
    prebuild_runtime_libraries(st)

    rows = []
    for r in range(repeat):
        H.log(f"repeat {r + 1}/{repeat}")
        for fw in st.frameworks:
            for model, kind in funcs:
                spec = peers.Spec(model, kind)
                cache = st.fresh_cache(f"{fw}-{model}-{kind}-{r}")
                job = {"framework": fw, "spec": spec.to_json(), "mode": "compile", "settle": 5}
                for phase in ("cold", "warm"):
                    res = st.run(job, cache, what=f"{spec.label} {phase}")
                    rows.append({**res, "repeat": r, "phase": phase, "label": spec.label})
                    if res.get("status") != "ok":
                        st.record_error(f"{fw} {spec.label} {phase}: {res.get('status')}: {res.get('error')}")
                        break

    summary = summarise(rows, st.frameworks, funcs)
    md = WHAT + "\n" + render_md(summary, st.frameworks, funcs, repeat) + H.md_errors(st)
    fig = plot(summary, st.frameworks, funcs)
    return st.finish({"repeat": repeat, "summary": summary, "runs": rows}, md, fig)


# renders the C templates once, so that Jinja's bytecode is in the seed cache
RENDER_ONCE = ("import numpy as np, symfuse as sf; x = sf.tensor('x', (2,)); "
               "sf.function([x], sf.exp(x), device='cpu')(np.zeros(2, np.float32))")


def prebuild_runtime_libraries(st: H.Study) -> None:
    """Build symfuse's runtime libraries (once per installation and cache, not per
    compile; ``cache prune`` keeps them) before anything is timed, into a cache
    that seeds every later fresh one, so that no cold compile includes them: the
    CUDA one takes ~2 s per arch, and the first cold point would carry it."""
    mods = ([("symfuse.runtime.c_runtime", []), ("-c", [RENDER_ONCE])] if "symfuse-cpu" in st.frameworks else []) + \
           ([("symfuse.runtime.cuda_runtime", [peers.CUDA_ARCH])] if "symfuse-cuda-aot" in st.frameworks else [])
    if not mods:
        return
    cache = st.fresh_cache("runtime-libraries")
    env = H.child_env(cache)
    for mod, argv in mods:
        cmd = [sys.executable, mod, *argv] if mod == "-c" else [sys.executable, "-m", mod, *argv]
        rc, out, err, wall = H.spawn(cmd, env, 600)
        if rc != 0:
            raise SystemExit(f"building symfuse's runtime library failed ({mod}): {(err or out)[-1500:]}")
        H.log(f"  {mod if mod != '-c' else 'templates'}: {out.strip()} ({wall:.1f} s wall)")
    st.keep_installation_builds(cache)


def summarise(rows, frameworks, funcs):
    out = []
    for fw in frameworks:
        for model, kind in funcs:
            label = peers.Spec(model, kind).label
            entry = {"framework": fw, "function": label}
            for phase in ("cold", "warm"):
                rs = [x for x in rows if x.get("framework") == fw and x.get("label") == label
                      and x["phase"] == phase and x.get("status") == "ok"]
                med, lo, hi = H.median_minmax([x["compile_s"] for x in rs])
                entry[phase] = {"n": len(rs), "median_s": med, "min_s": lo, "max_s": hi,
                                "import_s": H.median_minmax([x["import_s"] for x in rs])[0],
                                "build_s": H.median_minmax([x["build_s"] for x in rs])[0],
                                "first_s": H.median_minmax([x["first_s"] for x in rs])[0],
                                "steady_s": H.median_minmax([x["settle_s"] for x in rs])[0]}
                if rs and fw.startswith("symfuse"):
                    groups = [H.sf_stage_groups(x["info"].get("stages")) for x in rs]
                    entry[phase]["stages"] = {g: H.median_minmax([d[g] for d in groups])[0] for g in groups[0]}
                    entry[phase]["report_total_s"] = H.median_minmax([x["info"]["report_total_s"] for x in rs])[0]
                    entry[phase]["graph_cache"] = rs[0]["info"].get("graph_cache")
                    entry[phase]["kernels"] = rs[0]["info"].get("kernels")
                if rs and fw == "pytensor":
                    entry[phase]["stages"] = {k: H.median_minmax([x["info"]["stages"][k] for x in rs])[0]
                                              for k in rs[0]["info"]["stages"]}
                    entry[phase]["nodes"] = rs[0]["info"].get("nodes")
                failed = [x for x in rows if x.get("framework") == fw and x["label"] == label
                          and x["phase"] == phase and x.get("status") != "ok"]
                if failed and not rs:
                    entry[phase]["status"] = failed[0].get("status")
                    entry[phase]["error"] = failed[0].get("error")
                entry[phase]["values"] = [x.get("first_value") for x in rs]
            out.append(entry)
    return out


def render_md(summary, frameworks, funcs, repeat) -> str:
    md = [f"## Compile time (median of {repeat}{', min-max' if repeat > 1 else ''})\n"]
    headers = ["function", "framework", "cold", "warm", "cold / warm", "cold: build", "cold: 1st call",
               "warm: build", "warm: 1st call", "steady call", "import (cold)"]
    rows = []
    for e in summary:
        c, w = e["cold"], e["warm"]
        if c["median_s"] is None:
            rows.append([e["function"], e["framework"], c.get("status", "-"), w.get("status", "-")] + [""] * 7)
            continue
        ratio = (f"{c['median_s'] / w['median_s']:.1f}x" if w["median_s"] and w["median_s"] > 1e-3
                 and e["framework"] not in NO_COMPILE else "-")
        rows.append([e["function"], e["framework"], H.fmt_mm(c["median_s"], c["min_s"], c["max_s"], c["n"]),
                     H.fmt_mm(w["median_s"], w["min_s"], w["max_s"], w["n"]), ratio, H.fmt_s(c["build_s"]),
                     H.fmt_s(c["first_s"]), H.fmt_s(w.get("build_s")), H.fmt_s(w.get("first_s")),
                     H.fmt_s(c["steady_s"]), H.fmt_s(c["import_s"])])
    md.append(H.md_table(headers, rows, ["l", "l"] + ["r"] * 9))
    md.append("\n'build' = graph construction + the explicit compile call (`sf.function`, `pytensor.function`, "
              "`jax.jit`, `torch.compile`: the last two only wrap, though `torch.compile` imports torch._dynamo and "
              "inductor on first use); '1st call' = the first call alone (lazy compilers "
              "compile there); 'steady call' = the median of the next calls, subtracted from build + 1st call.\n")

    # ratio table: symfuse-cpu vs each peer
    if "symfuse-cpu" in frameworks and any(f not in ("symfuse-cpu",) + NO_COMPILE for f in frameworks):
        md.append("\n## Ratio symfuse-cpu / peer of the compile times (<1: symfuse compiles faster; numpy and "
                  "torch eager compile nothing and are left out)\n")
        peers_ = [f for f in frameworks if f not in ("symfuse-cpu",) + NO_COMPILE]
        rows = []
        for model, kind in funcs:
            label = peers.Spec(model, kind).label
            sf = next(e for e in summary if e["framework"] == "symfuse-cpu" and e["function"] == label)
            for phase in ("cold", "warm"):
                row = [label, phase]
                for p in peers_:
                    pe = next(e for e in summary if e["framework"] == p and e["function"] == label)
                    a, b = sf[phase]["median_s"], pe[phase]["median_s"]
                    row.append(f"{a / b:.2f}" if a is not None and b and b > 0 else "-")
                rows.append(row)
        md.append(H.md_table(["function", "phase"] + peers_, rows, ["l", "l"] + ["r"] * len(peers_)))

    sf_rows = [e for e in summary if e["framework"].startswith("symfuse") and e["cold"].get("stages")]
    if sf_rows:
        groups = list(sf_rows[0]["cold"]["stages"])
        md.append("\n## symfuse stage breakdown (`f.report.stages`, grouped; median seconds)\n")
        md.append("Stages cover the `sf.function` call only ('report total'); the rest of the compile time is graph "
                  "construction and `sf.grad` before it, and the first call after it.\n\n")
        rows = []
        for e in sf_rows:
            for phase in ("cold", "warm"):
                p = e[phase]
                if not p.get("stages"):
                    continue
                rows.append([e["function"], e["framework"], phase] + [H.fmt_s(p["stages"][g]) for g in groups]
                            + [H.fmt_s(p["report_total_s"]), H.fmt_s(p["median_s"]), str(p.get("graph_cache") or "-"),
                               str(p.get("kernels"))])
        md.append(H.md_table(["function", "framework", "phase"] + groups + ["report total", "compile time",
                                                                               "graph cache", "kernels"],
                             rows, ["l", "l", "l"] + ["r"] * (len(groups) + 4)))
    pt_rows = [e for e in summary if e["framework"] == "pytensor" and e["cold"].get("stages")]
    if pt_rows:
        md.append("\n## PyTensor stage breakdown (median seconds)\n\n" + peers.PYTENSOR_STAGE_NOTE + ".\n\n")
        rows = []
        for e in pt_rows:
            for phase in ("cold", "warm"):
                p = e[phase]
                if p.get("stages"):
                    rows.append([e["function"], phase, H.fmt_s(p["stages"]["rewrite"]), H.fmt_s(p["stages"]["link"]),
                                 H.fmt_s(p["stages"]["import"]), H.fmt_s(p["median_s"]), str(p.get("nodes"))])
        md.append(H.md_table(["function", "phase", "rewrite", "link", "of which import", "compile time",
                              "nodes after rewriting"], rows, ["l", "l"] + ["r"] * 5))
    # cross-check: every framework computes the same first loss
    md.append("\n## Cross-check: first output of each framework (loss of call 1; checksum for inference)\n\n")
    rows = []
    for model, kind in funcs:
        label = peers.Spec(model, kind).label
        vals = {e["framework"]: (e["cold"]["values"] or [None])[0] for e in summary if e["function"] == label}
        rows.append([label] + [f"{vals[f]:.6g}" if vals.get(f) is not None else "-" for f in frameworks])
    md.append(H.md_table(["function"] + list(frameworks), rows))
    return "\n".join(md)


def plot(summary, frameworks, funcs):
    plt = H.pyplot()
    fig, axes = plt.subplots(1, len(funcs), figsize=(4.2 * len(funcs), 4.2), squeeze=False)
    for ax, (model, kind) in zip(axes[0], funcs):
        label = peers.Spec(model, kind).label
        xs = range(len(frameworks))
        for j, phase in enumerate(("cold", "warm")):
            meds, lo, hi = [], [], []
            for fw in frameworks:
                p = next(e for e in summary if e["framework"] == fw and e["function"] == label)[phase]
                m = p["median_s"]
                ok = m is not None and m > 0          # <= 0: nothing compiled, within noise: no bar
                meds.append(m if ok else float("nan"))
                lo.append(max(0.0, m - max(p["min_s"], 1e-6)) if ok else 0)
                hi.append(max(0.0, p["max_s"] - m) if ok else 0)
            bars = ax.bar([x + (j - 0.5) * 0.38 for x in xs], meds, 0.38, yerr=[lo, hi], capsize=2,
                          label=phase, color=["#444444", "#bbbbbb"][j])
            H.label_bars(ax, bars, meds)
        H.plain_log_y(ax)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(frameworks, rotation=45, ha="right", fontsize=8)
        ax.set_title(label)
        ax.set_ylabel("compile time (s)")
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0][0].legend()
    fig.suptitle("compile time: cold (empty caches) and warm (second process)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    try:
        sys.exit(main())
    except peers.MissingPeer as e:
        print(f"study_compile: {e}", file=sys.stderr)
        sys.exit(2)

"""Study 4: peak resident memory of each framework running the LeNet-5 training
step, and symfuse's planned memory arena against its lower bound and the naive sum.

    python bench/study_memory.py [--steps 20] [--frameworks a,b,c] [--quick]

Each framework runs in a fresh child process (empty compile caches): import,
build and compile the LeNet-5 training step (batch 128, float32), call it once
plus ``--steps`` times. The child reports ``resource.getrusage`` ru_maxrss
(peak resident set, whole process) after the imports, after compile + first
calls, and at the end, and RUSAGE_CHILDREN's ru_maxrss (the largest
compiler subprocess it waited for: gcc, inductor's workers).

symfuse's memory plan (``f.report.info["memory"]``: arena bytes, the lower
bound of the plan -- the largest set of intermediates alive at once -- and the
naive sum of every intermediate) is reported for the MLP and LeNet-5 training
and inference functions.

Writes bench/results/memory.{json,md,png} (bench/results/quick/ with --quick).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import peers  # noqa: E402

FUNCS = [("mlp", "train"), ("mlp", "infer"), ("lenet", "train"), ("lenet", "infer")]
MB = 2 ** 20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--steps", type=int, default=None, help="training steps after the first (default 20; quick: 3)")
    ap.add_argument("--repeat", type=int, default=1, help="fresh processes per framework (median)")
    H.add_common_args(ap)
    args = ap.parse_args(argv)
    steps = args.steps or (3 if args.quick else 20)
    args.timeout = args.timeout or 1800
    st = H.Study("memory", args)

    spec = peers.Spec("lenet", "train")
    runs = []
    for fw in st.frameworks:
        for r in range(args.repeat):
            job = {"framework": fw, "spec": spec.to_json(), "mode": "memory", "warmup": 0, "steps": steps,
                   "settle": 1}
            res = st.run(job, st.fresh_cache(f"{fw}-{r}"), what=f"{spec.label} (repeat {r + 1})")
            runs.append({**res, "repeat": r})
            if res.get("status") != "ok":
                st.record_error(f"{fw}: {res.get('status')}: {res.get('error')}")

    plans = []
    for fw in [f for f in st.frameworks if f.startswith("symfuse")]:
        for model, kind in FUNCS:
            s = peers.Spec(model, kind)
            lenet_run = next((r for r in runs if r.get("framework") == fw and r.get("status") == "ok"), None)
            if s == spec and lenet_run:
                mem = (lenet_run.get("info") or {}).get("memory")
            else:
                res = st.run({"framework": fw, "spec": s.to_json(), "mode": "compile", "settle": 1},
                             st.fresh_cache(f"{fw}-{s.label}-plan"), what=f"{s.label} plan")
                if res.get("status") != "ok":
                    st.record_error(f"{fw} {s.label} plan: {res.get('error')}")
                    continue
                mem = (res.get("info") or {}).get("memory")
            if mem:
                plans.append({"framework": fw, "function": s.label, **mem})

    summary = summarise(runs, st.frameworks)
    md = render_md(summary, plans, steps) + H.md_errors(st)
    fig = plot(summary, plans)
    for r in runs:
        (r.get("info") or {}).pop("stages", None)
    return st.finish({"steps": steps, "summary": summary, "plans": plans, "runs": runs}, md, fig)


def summarise(runs, frameworks):
    out = []
    for fw in frameworks:
        ok = [r for r in runs if r.get("framework") == fw and r.get("status") == "ok"]
        e = {"framework": fw, "compile_only": fw in peers.COMPILE_ONLY}
        if not ok:
            bad = next((r for r in runs if r.get("framework") == fw), {})
            e.update(status=bad.get("status", "not run"), error=bad.get("error"))
        else:
            med = lambda k: H.median_minmax([r[k] for r in ok])[0]  # noqa: E731
            e.update(status="ok", import_mb=med("rss_after_import_mb"), compile_mb=med("rss_after_compile_mb"),
                     peak_mb=med("maxrss_mb"), vmhwm_mb=med("vmhwm_mb"), children_mb=med("children_maxrss_mb"),
                     steps=len(ok[0].get("times_s", [])), step_s=ok[0].get("step_s"))
        out.append(e)
    return out


def render_md(summary, plans, steps) -> str:
    md = ["## What is measured\n",
          "Each framework runs the LeNet-5 training step (batch 128, float32: parameters 1.7 MB, input 0.4 MB) in a "
          "fresh child process with empty compile caches. `resource.getrusage(RUSAGE_SELF).ru_maxrss`, the peak "
          "resident set of the whole process (interpreter, libraries, compiled code, arrays), is read after the "
          f"imports, after compile + the first calls, and after {steps} more training steps; VmHWM (the peak "
          "of the process image, from /proc/self/status) is a cross-check. The child is started by a shell that "
          "forks it: Linux carries the peak RSS of the image a process replaces at exec into ru_maxrss, so a "
          "child exec'd straight from the (large) study process would report at least the study's own RSS. For "
          "the same reason the compilers' subprocesses (gcc, inductor's workers) are not reported: their "
          "RUSAGE_CHILDREN peak includes the RSS of the child that forked them (it is in the json). "
          "symfuse-cuda-aot only compiles (no GPU), so its numbers are those of compiling.\n",
          "## Peak resident memory (MiB)\n"]
    rows = []
    for e in summary:
        if e["status"] != "ok":
            rows.append([e["framework"], e["status"], "", "", "", "", ""])
            continue
        rows.append([e["framework"] + (" (compile only)" if e["compile_only"] else ""), f"{e['import_mb']:.0f}",
                     f"{e['compile_mb']:.0f}", f"{e['peak_mb']:.0f}", f"{e['peak_mb'] - e['import_mb']:.0f}",
                     f"{e['vmhwm_mb']:.0f}" if e.get("vmhwm_mb") else "-", H.fmt_s(e.get("step_s"))])
    md.append(H.md_table(["framework", "after import", "after compile + 1st call", "peak (end)",
                          "peak - import", "VmHWM (end)", "step (median)"], rows))
    if plans:
        md.append("\n## symfuse memory plan (`f.report.info[\"memory\"]`)\n\n"
                  "'arena' is the one block that holds every intermediate of a call; 'lower bound' is the most "
                  "bytes alive at any point of the schedule (no plan can use less); 'naive' is the sum of every "
                  "intermediate's size (one buffer each, no reuse).\n\n")
        rows = [[p["framework"], p["function"], f"{p['arena_bytes'] / MB:.2f}", f"{p['lower_bound_bytes'] / MB:.2f}",
                 f"{p['naive_bytes'] / MB:.2f}",
                 f"{p['arena_bytes'] / p['lower_bound_bytes']:.3f}" if p["lower_bound_bytes"] else "-",
                 f"{p['naive_bytes'] / p['arena_bytes']:.2f}" if p["arena_bytes"] else "-"] for p in plans]
        md.append(H.md_table(["backend", "function", "arena MiB", "lower bound MiB", "naive MiB",
                              "arena / lower bound", "naive / arena"], rows, ["l", "l"] + ["r"] * 5))
    return "\n".join(md)


def plot(summary, plans):
    plt = H.pyplot()
    fig, axes = plt.subplots(1, 2 if plans else 1, figsize=(13 if plans else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    ok = [e for e in summary if e["status"] == "ok"]
    xs = range(len(ok))
    w = 0.27
    for j, (k, lab, c) in enumerate((("import_mb", "after import", "#cccccc"),
                                     ("compile_mb", "after compile + 1st call", "#888888"),
                                     ("peak_mb", "peak (end)", "#333333"))):
        ax.bar([x + (j - 1) * w for x in xs], [e[k] for e in ok], w, label=lab, color=c)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([e["framework"] for e in ok], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("ru_maxrss (MiB)")
    ax.set_title("LeNet-5 training step: peak resident memory")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if plans:
        ax = axes[0][1]
        xs = range(len(plans))
        for j, (k, lab, c) in enumerate((("lower_bound_bytes", "lower bound", "#2ca02c"),
                                         ("arena_bytes", "arena (planned)", "#d62728"),
                                         ("naive_bytes", "naive sum", "#7f7f7f"))):
            ax.bar([x + (j - 1) * w for x in xs], [p[k] / MB for p in plans], w, label=lab, color=c)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"{p['function']}\n{p['framework']}" for p in plans], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("MiB")
        ax.set_title("symfuse memory plan")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    try:
        sys.exit(main())
    except peers.MissingPeer as e:
        print(f"study_memory: {e}", file=sys.stderr)
        sys.exit(2)

"""Study 2: steady-state time per call of symfuse and its peers.

    python bench/study_step.py [--steps 50] [--warmup 10] [--repeat 3] [--frameworks a,b,c] [--quick]

For each framework, model (MLP 784-512-512-10, LeNet-5; batch 128, float32) and
function (train step with the SGD update, inference), in a fresh process:
compile, call ``--warmup`` times, then time ``--steps`` calls one by one
(time.perf_counter around each call; inputs already in the framework's
format, results ready when the call returns). Reports the median, quartiles
and minimum, and the ratio symfuse-cpu / peer of the medians. Each point runs in
``--repeat`` processes, one per round over every framework and function (the
first compiles cold, the others warm), and reports the median of their medians.

Writes bench/results/step.{json,md,png} (bench/results/quick/ with --quick).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import peers  # noqa: E402

FUNCS = [("mlp", "train"), ("mlp", "infer"), ("lenet", "train"), ("lenet", "infer")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--steps", type=int, default=None, help="timed calls per point (default 50, at least 30; quick: 10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls after the first (default 10; quick: 3)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="fresh processes per point, interleaved over the study; the median of their medians "
                         "(default 3; quick: 1)")
    H.add_common_args(ap)
    args = ap.parse_args(argv)
    steps = args.steps or (10 if args.quick else 50)
    if not args.quick and steps < 30:
        ap.error("--steps must be at least 30 (or use --quick)")
    warmup = args.warmup if args.warmup is not None else (3 if args.quick else 10)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.timeout = args.timeout or 1800
    st = H.Study("step", args)

    # Repetitions are the outer loop: this machine's speed drifts for seconds at a time (the host's
    # load: a numpy matmul measured in the same process ran 1.8x slower for a few seconds, then not),
    # so each point's processes are spread over the whole study instead of running back to back.
    # A point's repetitions share its cache directory: the first compiles cold, the rest warm.
    runs, caches = [], {}
    for r in range(args.repeat):
        for fw in st.frameworks:
            for model, kind in FUNCS:
                spec = peers.Spec(model, kind)
                if fw in peers.COMPILE_ONLY:
                    if r == 0:
                        runs.append({"framework": fw, "label": spec.label, "status": "compile only"})
                    continue
                job = {"framework": fw, "spec": spec.to_json(), "mode": "step", "warmup": warmup, "steps": steps,
                       "settle": 1}
                if args.quick:      # a smoke test: stop a slow point after a few seconds
                    job.update(budget_s=4.0, min_steps=3)
                if (fw, spec.label) not in caches:
                    caches[fw, spec.label] = st.fresh_cache(f"{fw}-{spec.label}")
                res = st.run(job, caches[fw, spec.label], what=f"{spec.label} (repeat {r + 1})")
                runs.append({**res, "label": spec.label, "repeat": r})
                if res.get("status") != "ok":
                    st.record_error(f"{fw} {spec.label}: {res.get('status')}: {res.get('error')}")

    summary = summarise(runs, st.frameworks)
    md = render_md(summary, st.frameworks, steps, warmup, args.repeat) + H.md_errors(st)
    fig = plot(summary, st.frameworks)
    for r in runs:   # keep the json readable: the per-call times stay, the big info dicts do not
        (r.get("info") or {}).pop("stages", None)
    return st.finish({"steps": steps, "warmup": warmup, "summary": summary, "runs": runs}, md, fig)


def summarise(runs, frameworks):
    out = []
    for model, kind in FUNCS:
        label = peers.Spec(model, kind).label
        for fw in frameworks:
            rs = [r for r in runs if r.get("framework") == fw and r.get("label") == label]
            ok = [r for r in rs if r.get("status") == "ok"]
            e = {"function": label, "framework": fw}
            if ok:
                e.update(status="ok", median_s=H.median_minmax([r["step_s"] for r in ok])[0],
                         q1_s=H.median_minmax([r["step_q1_s"] for r in ok])[0],
                         q3_s=H.median_minmax([r["step_q3_s"] for r in ok])[0],
                         min_s=min(r["step_min_s"] for r in ok), steps=sum(len(r["times_s"]) for r in ok),
                         first_value=ok[0].get("first_value"), second_value=ok[0].get("second_value"),
                         threads=(ok[0].get("info") or {}).get("threads"))
            else:
                e.update(status=rs[0].get("status") if rs else "not run", error=rs[0].get("error") if rs else None)
            out.append(e)
    for e in out:
        sf = next((x for x in out if x["framework"] == "symfuse-cpu" and x["function"] == e["function"]), None)
        if sf and sf.get("median_s") and e.get("median_s"):
            e["symfuse_over_peer"] = sf["median_s"] / e["median_s"]
    return out


def render_md(summary, frameworks, steps, warmup, repeat) -> str:
    md = ["## What is measured\n",
          f"Steady-state wall time of one call, in a fresh process per (framework, function): compile, {warmup} "
          f"untimed warm-up calls, then {steps} timed calls, each timed alone with `time.perf_counter` "
          "(median, quartiles, minimum)" + (f"; the median over {repeat} processes, one per round "
          "over every framework and function, so that a slow spell of the machine does not fall on one "
          "framework only" if repeat > 1 else "") + ". "
          "Inputs are prepared once in the framework's own array type; a call has finished when it returns "
          "(JAX: `block_until_ready`). A training call runs forward, backward and the SGD update of every "
          "parameter (the parameters change from call to call, as in training); symfuse returns numpy arrays "
          "(its call includes copying the outputs), the others their own tensors.\n",
          "'symfuse / peer' is the ratio of the medians: below 1, symfuse-cpu is faster.\n",
          "## Time per call\n"]
    rows = []
    for e in summary:
        if e["status"] != "ok":
            rows.append([e["function"], e["framework"], e["status"], "", "", "", ""])
            continue
        ratio = f"{e['symfuse_over_peer']:.2f}" if "symfuse_over_peer" in e and e["framework"] != "symfuse-cpu" else ""
        rows.append([e["function"], e["framework"], H.fmt_s(e["median_s"]),
                     f"{H.fmt_s(e['q1_s'])} - {H.fmt_s(e['q3_s'])}", H.fmt_s(e["min_s"]), str(e["steps"]), ratio])
    md.append(H.md_table(["function", "framework", "median", "quartiles", "min", "calls", "symfuse / peer"], rows,
                         ["l", "l", "r", "r", "r", "r", "r"]))
    peers_ = [f for f in frameworks if f != "symfuse-cpu" and f not in peers.COMPILE_ONLY]
    if "symfuse-cpu" in frameworks and peers_:
        md.append("\n## Ratio symfuse-cpu / peer (median time per call; <1: symfuse faster)\n")
        rows = []
        for model, kind in FUNCS:
            label = peers.Spec(model, kind).label
            row = [label]
            for p in peers_:
                e = next(x for x in summary if x["framework"] == p and x["function"] == label)
                row.append(f"{e['symfuse_over_peer']:.2f}" if "symfuse_over_peer" in e else "-")
            rows.append(row)
        md.append(H.md_table(["function"] + peers_, rows))
    md.append("\n## Cross-check: output of call 1 and call 2 (train: loss before and after one update; "
              "infer: a checksum)\n")
    rows = []
    for model, kind in FUNCS:
        label = peers.Spec(model, kind).label
        row = [label]
        for fw in frameworks:
            e = next(x for x in summary if x["framework"] == fw and x["function"] == label)
            if e.get("first_value") is None:
                row.append("-")
            else:
                row.append(f"{e['first_value']:.6g} / {e['second_value']:.6g}")
        rows.append(row)
    md.append(H.md_table(["function"] + list(frameworks), rows))
    bad = check_agreement(summary)
    if bad:
        md.append("\n**Disagreement** (relative difference > 1e-3 from symfuse-cpu / the first framework): "
                  + "; ".join(bad) + "\n")
    return "\n".join(md)


def check_agreement(summary, rtol=1e-3):
    bad = []
    for model, kind in FUNCS:
        label = peers.Spec(model, kind).label
        es = [e for e in summary if e["function"] == label and e.get("first_value") is not None]
        if not es:
            continue
        ref = next((e for e in es if e["framework"] == "symfuse-cpu"), es[0])
        for e in es:
            for k in ("first_value", "second_value"):
                a, b = ref[k], e[k]
                if abs(a - b) > rtol * max(1.0, abs(a)):
                    bad.append(f"{label} {e['framework']} {k} {b:.6g} vs {a:.6g}")
    return bad


def plot(summary, frameworks):
    plt = H.pyplot()
    fw_run = [f for f in frameworks if f not in peers.COMPILE_ONLY]
    fig, axes = plt.subplots(1, len(FUNCS), figsize=(4.2 * len(FUNCS), 4.2), squeeze=False)
    for ax, (model, kind) in zip(axes[0], FUNCS):
        label = peers.Spec(model, kind).label
        meds, lo, hi, cols = [], [], [], []
        for fw in fw_run:
            e = next(x for x in summary if x["framework"] == fw and x["function"] == label)
            m = e.get("median_s")
            meds.append(m if m else float("nan"))
            lo.append(m - e["q1_s"] if m else 0)
            hi.append(e["q3_s"] - m if m else 0)
            cols.append(H.COLORS.get(fw, "#333333"))
        bars = ax.bar(range(len(fw_run)), [x * 1e3 for x in meds], color=cols,
                      yerr=[[x * 1e3 for x in lo], [x * 1e3 for x in hi]], capsize=3)
        H.plain_log_y(ax)
        H.label_bars(ax, bars, [x * 1e3 for x in meds])
        ax.set_xticks(range(len(fw_run)))
        ax.set_xticklabels(fw_run, rotation=45, ha="right", fontsize=8)
        ax.set_title(label)
        ax.set_ylabel("ms per call (median, quartiles)")
        ax.grid(axis="y", alpha=0.3, which="both")
    fig.suptitle("steady-state time per call, batch 128, float32, CPU")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    try:
        sys.exit(main())
    except peers.MissingPeer as e:
        print(f"study_step: {e}", file=sys.stderr)
        sys.exit(2)

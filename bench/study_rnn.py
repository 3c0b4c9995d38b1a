"""Study 6: recurrent networks -- LSTM training steps of symfuse and its peers.

    python bench/study_rnn.py [--repeat 2] [--steps 30] [--lengths 10,100,1000] [--frameworks a,b,c] [--quick]

Two workloads, each ONE compiled training step (forward, backpropagation through
time, SGD lr 0.01 on every parameter), identical seeded float32 parameters and
data in every framework (bench/peers_rnn.py):

* A ``lstm``: 1-layer LSTM, input 128, hidden 256, batch 64, 50 steps;
  loss = mean of the squares of the last hidden state;
* B ``seqdigits``: symfuse.nn.zoo.seqdigits -- 32 digits read row by row (8 steps
  of 8 features), LSTM hidden 64, Dense 64->10, softmax cross-entropy.

For each workload and framework, ``--repeat`` times: a cold process (fresh, empty
compile caches) and a warm one (a second fresh process with the same caches).
Each compiles (compile time as study_compile: build + first call - one steady
call), then times ``--steps`` calls after ``--warmup`` (steady-state step), and
reports its peak resident memory (ru_maxrss, as study_memory). Then the
compile-time sweep: workload A at ``--lengths`` time steps, each point cold, in
one fresh process; a point past ``--point-timeout`` is recorded as "timeout" and
the framework's longer ones as "skipped".

The frameworks are symfuse-cpu, torch-eager, torch-compile, jax and pytensor;
``symfuse-interp`` (symfuse on its numpy interpreter) exists only to smoke-test
the harness while the cpu backend cannot compile ``scan``:

    python bench/study_rnn.py --quick --frameworks symfuse-interp,torch-eager,torch-compile,jax,pytensor

Writes bench/results/rnn.{json,md,png} (bench/results/quick/ with --quick).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import peers  # noqa: E402
import peers_rnn as R  # noqa: E402

SCRIPT = os.path.join(H.HERE, "peers_rnn.py")
COLORS = {**H.COLORS, "symfuse-interp": "#e377c2"}

# the targets stated in the issue, checked against workload A
TARGET_COMPILE_VS_JAX = 5.0       # JAX cold compile / symfuse cold compile >= this
TARGET_STEP_VS_EAGER = 1.0        # symfuse step / torch eager step <= this
TARGET_FLAT = 1.2                 # max / min of symfuse's cold compile over the lengths <= this
AGREE_RTOL = 1e-4

WARM_CACHE = {
    "symfuse-cpu": "graph cache (SYMFUSE_CACHE_DIR): passes, fusion, codegen and the C compiler are skipped",
    "symfuse-interp": "none: the interpreter has no graph cache; the passes rerun",
    "jax": "persistent compilation cache (jax_compilation_cache_dir): XLA's compile is skipped, tracing and "
           "lowering rerun",
    "torch-compile": "inductor's FX-graph cache and the AOTAutograd cache (TORCHINDUCTOR_CACHE_DIR, "
                     "TRITON_CACHE_DIR): dynamo traces again, inductor's codegen and the C++ compiler are skipped",
    "pytensor": "compiledir: the compiled C modules (the scan body's included) are loaded; graph rewriting reruns",
    "torch-eager": "none: nothing is compiled",
}

WHAT = """\
## What is measured

- **Workloads** (identical seeded float32 parameters and inputs in every framework, PyTorch's LSTM layout and
  initialisation; one compiled function = forward, backpropagation through time and the SGD update, lr 0.01, of
  every parameter; `bench/peers_rnn.py`):
  - **A** `lstm`: {a}.
  - **B** `seqdigits`: `symfuse.nn.zoo.seqdigits(batch=32, rows=8, hidden=64, optimizer=SGD(0.01))`, the first
    {b_batch} digits of the shipped 8x8 set read row by row: {b}. symfuse compiles the zoo's graph with the loss
    as the only output.
- **Frameworks**: symfuse `nn.LSTM` / the zoo model, `sf.function(device="cpu")`; torch eager `torch.nn.LSTM`
  (batch-first), autograd, in-place SGD; torch.compile: `torch.compile(fullgraph=True)` of the functional step
  (`torch.func.grad_and_value` + SGD) with the cell written out over a Python loop -- dynamo unrolls it, so its
  graph holds one copy of the cell per time step (`torch.nn.LSTM` under `grad_and_value` does not compile with `fullgraph=True`, not even with
  dynamo's `allow_rnn`);
  JAX: the cell under `jax.lax.scan`, `jax.jit` of `value_and_grad` + SGD with the parameters donated; PyTensor:
  the cell under `pytensor.scan`, `pytensor.grad` through it, `Mode(linker="cvm", optimizer="fast_run")`. Every
  framework computes the input projection of all steps as one matrix product before the loop (torch eager's
  `nn.LSTM` does the same internally).
- **cold compile** = `(graph construction + explicit compile + first call) - one steady call` (as
  `study_compile.py`) in a fresh process with empty compile caches (fresh SYMFUSE_CACHE_DIR, PyTensor
  `compiledir`, JAX persistent cache with no minimum compile time or size, TORCHINDUCTOR_CACHE_DIR,
  TRITON_CACHE_DIR); imports are not included (own column). **warm compile** = the same in a second fresh
  process with the same cache directories; what each framework's cache holds is in the 'warm cache' table.
- **step** = steady-state wall time of one training call: {warmup} untimed calls after the compile, then {steps}
  calls each timed alone; median of the per-process medians over the {nproc} processes (cold and warm) of each
  framework, quartiles likewise.
- **peak RSS** = `ru_maxrss` of the child process at its end (after compile and every call), as
  `study_memory.py` measures it (the child is started by a shell, so the study's own RSS is not inherited;
  compiler subprocesses are not included). 'cold' includes everything the compile itself held in memory.
- **compile vs length**: workload A with {lengths} time steps, otherwise the same shape, each cold, in one fresh
  process; a point past {timeout:.0f} s is `timeout` and the framework's longer points are `skipped`, as are
  points whose linear extrapolation from the previous one exceeds twice that.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--repeat", type=int, default=None, help="cold/warm process pairs per workload and framework "
                                                             "(default 2; quick: 1)")
    ap.add_argument("--steps", type=int, default=None, help="timed calls per process (default 30; quick: 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls before them (default 5; quick: 2)")
    ap.add_argument("--parts", default="a,b,lengths", help="comma-separated subset of a,b,lengths (default all)")
    ap.add_argument("--lengths", default=None, help="time steps of the compile sweep (default 10,100,1000; "
                                                    "quick: 4,8,16)")
    ap.add_argument("--point-timeout", type=float, default=None,
                    help="seconds per point of the length sweep (default 600; quick: 180)")
    H.add_common_args(ap, R.ALL_FRAMEWORKS)
    for a in ap._actions:
        if a.dest == "frameworks":
            a.help = (f"comma-separated subset of: {','.join(R.ALL_FRAMEWORKS)} (default: {','.join(R.FRAMEWORKS)}; "
                      "symfuse-interp is for smoke tests of the harness)")
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - {"a", "b", "lengths"}:
        ap.error(f"--parts: unknown {', '.join(sorted(parts - {'a', 'b', 'lengths'}))}")
    repeat = args.repeat or (1 if args.quick else 2)
    steps = args.steps or (5 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    lengths = ([int(t) for t in args.lengths.split(",")] if args.lengths else
               ([4, 8, 16] if args.quick else [10, 100, 1000]))
    point_timeout = args.point_timeout or (180 if args.quick else 600)
    args.timeout = args.timeout or (600 if args.quick else 1800)
    spec_a = R.QUICK_A if args.quick else R.WORKLOAD_A
    workloads = [(w, s) for w, s in (("A", spec_a), ("B", R.WORKLOAD_B)) if w.lower() in parts]

    st = H.Study("rnn", args, R.ALL_FRAMEWORKS, R.FRAMEWORKS)
    st.meta.update(workloads={w: s.to_json() for w, s in workloads}, repeat=repeat, steps=steps, warmup=warmup,
                   lengths=lengths, point_timeout_s=point_timeout)
    if "symfuse-cpu" in st.frameworks:
        import study_compile
        study_compile.prebuild_runtime_libraries(st)

    runs = []
    for r in range(repeat):
        for wl, spec in workloads:
            H.log(f"workload {wl} ({spec.label}), repeat {r + 1}/{repeat}")
            for fw in st.frameworks:
                cache = st.fresh_cache(f"{fw}-{wl}-{r}")
                for phase in ("cold", "warm"):
                    job = {"framework": fw, "spec": spec.to_json(), "mode": "step", "settle": 3 if args.quick else 5,
                           "warmup": warmup, "steps": steps}
                    if args.quick:
                        job.update(budget_s=4.0, min_steps=3)
                    res = st.run(job, cache, what=f"{wl} {phase}", script=SCRIPT)
                    runs.append({**res, "workload": wl, "phase": phase, "repeat": r, "label": spec.label})
                    if res.get("status") != "ok":
                        st.record_error(f"{fw} workload {wl} {phase}: {res.get('status')}: {res.get('error')}")
                        break

    points = []
    if "lengths" in parts:
        H.log(f"compile time vs sequence length ({', '.join(map(str, lengths))}), cold")
        for fw in st.frameworks:
            stop, prev = None, None
            for n in lengths:
                spec = R.with_seq(spec_a, n)
                p = {"framework": fw, "seq": n, "label": spec.label}
                if stop is None and prev and prev[1] > 0 and prev[1] * n / prev[0] > 2 * point_timeout:
                    stop = (f"linear extrapolation from {prev[0]} steps ({prev[1]:.0f} s) gives "
                            f"{prev[1] * n / prev[0]:.0f} s > 2 x {point_timeout:.0f} s")
                if stop:
                    p.update(status="skipped", reason=stop)
                    H.log(f"  {fw} {spec.label}: skipped ({stop})")
                    points.append(p)
                    continue
                job = {"framework": fw, "spec": spec.to_json(), "mode": "compile", "settle": 1 if args.quick else 5}
                res = st.run(job, st.fresh_cache(f"{fw}-len{n}"), timeout=point_timeout, what=f"{spec.label} cold",
                             script=SCRIPT)
                p.update(res)
                p["seq"], p["label"] = n, spec.label
                points.append(p)
                if res.get("status") == "timeout":
                    p["timeout_s"] = point_timeout
                    stop = f"a shorter sequence timed out after {point_timeout:.0f} s"
                elif res.get("status") != "ok":
                    st.record_error(f"{fw} {spec.label}: {res.get('status')}: {res.get('error')}")
                    stop = "a shorter sequence failed"
                else:
                    prev = (n, res["compile_s"])

    summary = summarise(runs, st.frameworks, workloads)
    lsum = summarise_lengths(points, st.frameworks, lengths)
    checks = agreement(summary, lsum, workloads)
    log_values(summary, workloads, checks)
    targets = evaluate_targets(summary, lsum, st.frameworks, lengths)
    md = (WHAT.format(a=spec_a.describe(), b=R.WORKLOAD_B.describe(), b_batch=R.WORKLOAD_B.batch, warmup=warmup,
                      steps=steps, nproc=2 * repeat, lengths=" / ".join(map(str, lengths)), timeout=point_timeout)
          + "\n" + render_md(summary, lsum, targets, checks, st.frameworks, workloads, lengths, repeat)
          + H.md_errors(st))
    fig = plot(summary, lsum, st.frameworks, workloads, lengths)
    for x in runs:      # the per-call times stay in the json; the stage dicts stay in the summary
        (x.get("info") or {}).pop("stages", None)
    return st.finish({"repeat": repeat, "steps": steps, "warmup": warmup, "lengths": lengths, "targets": targets,
                      "agreement": checks, "summary": summary, "lengths_summary": lsum, "runs": runs,
                      "length_points": points}, md, fig)


# ------------------------------------------------------------------------------------------- summaries


def _med(vals):
    return H.median_minmax(vals)[0]


def _sf_stages(rs) -> dict:
    """Grouped (harness.SF_STAGE_GROUPS) and raw median stage seconds of symfuse runs."""
    rs = [x for x in rs if (x.get("info") or {}).get("stages")]
    if not rs:
        return {}
    groups = [H.sf_stage_groups(x["info"]["stages"]) for x in rs]
    names = []
    for x in rs:
        names += [n for n in x["info"]["stages"] if n not in names]
    return {"groups": {g: _med([d[g] for d in groups]) for g in groups[0]},
            "raw": {n: _med([x["info"]["stages"].get(n, 0.0) for x in rs]) for n in names},
            "report_total_s": _med([x["info"]["report_total_s"] for x in rs]),
            "graph_cache": rs[0]["info"].get("graph_cache"), "kernels": rs[0]["info"].get("kernels"),
            "ops_built": rs[0]["info"].get("ops_built"), "ops_optimized": rs[0]["info"].get("ops_optimized")}


def summarise(runs, frameworks, workloads):
    out = []
    for wl, spec in workloads:
        for fw in frameworks:
            rs = [x for x in runs if x.get("framework") == fw and x.get("workload") == wl]
            ok = [x for x in rs if x.get("status") == "ok"]
            e = {"workload": wl, "label": spec.label, "framework": fw}
            for phase in ("cold", "warm"):
                ph = [x for x in ok if x["phase"] == phase]
                med, lo, hi = H.median_minmax([x["compile_s"] for x in ph])
                p = {"n": len(ph), "median_s": med, "min_s": lo, "max_s": hi,
                     "import_s": _med([x["import_s"] for x in ph]), "build_s": _med([x["build_s"] for x in ph]),
                     "first_s": _med([x["first_s"] for x in ph]),
                     "peak_rss_mb": _med([x["maxrss_mb"] for x in ph]),
                     "rss_after_import_mb": _med([x["rss_after_import_mb"] for x in ph]),
                     "rss_after_compile_mb": _med([x["rss_after_compile_mb"] for x in ph])}
                if ph and fw.startswith("symfuse"):
                    p["symfuse"] = _sf_stages(ph)
                if ph and fw == "pytensor":
                    p["pytensor_stages"] = {k: _med([x["info"]["stages"][k] for x in ph])
                                            for k in ph[0]["info"]["stages"]}
                    p["nodes"] = ph[0]["info"].get("nodes")
                if ph and fw == "torch-compile":
                    p["caches"] = {**ph[0]["info"].get("inductor_counters", {}),
                                   **ph[0]["info"].get("aot_autograd_counters", {})}
                if ph and fw == "jax":
                    p["persistent_cache_files"] = ph[0]["info"].get("persistent_cache_files")
                bad = [x for x in rs if x["phase"] == phase and x.get("status") != "ok"]
                if bad and not ph:
                    p.update(status=bad[0].get("status"), error=bad[0].get("error"))
                e[phase] = p
            if ok:
                e.update(step_s=_med([x["step_s"] for x in ok]), step_q1_s=_med([x["step_q1_s"] for x in ok]),
                         step_q3_s=_med([x["step_q3_s"] for x in ok]), step_min_s=min(x["step_min_s"] for x in ok),
                         calls=sum(len(x["times_s"]) for x in ok), first_value=ok[0]["first_value"],
                         second_value=ok[0]["second_value"])
            elif rs:
                e.update(status=rs[0].get("status"), error=rs[0].get("error"))
            out.append(e)
    return out


def summarise_lengths(points, frameworks, lengths):
    out = []
    for fw in frameworks:
        row = {"framework": fw, "points": {}}
        for n in lengths:
            p = next((q for q in points if q["framework"] == fw and q["seq"] == n), None)
            if p is None:
                continue
            d = {"status": p.get("status")}
            if p.get("status") == "ok":
                d.update(compile_s=p["compile_s"], build_s=p["build_s"], first_s=p["first_s"],
                         steady_s=p["settle_s"], first_value=p.get("first_value"), peak_rss_mb=p.get("maxrss_mb"))
                if fw.startswith("symfuse"):
                    d["symfuse"] = _sf_stages([p])
            else:
                d.update(reason=p.get("reason") or p.get("error"), timeout_s=p.get("timeout_s"))
            row["points"][n] = d
        ok = [d["compile_s"] for d in row["points"].values() if d.get("compile_s") is not None]
        if len(ok) >= 2 and min(ok) > 0:
            row["max_over_min"] = max(ok) / min(ok)
        out.append(row)
    return out


def _entry(summary, wl, fw):
    return next((e for e in summary if e["workload"] == wl and e["framework"] == fw), None)


def _sf_name(frameworks):
    """The symfuse entry the targets are checked on: the cpu backend, else (smoke tests) the interpreter."""
    return next((f for f in ("symfuse-cpu", "symfuse-interp") if f in frameworks), None)


def agreement(summary, lsum, workloads):
    """First and second losses of every framework against the reference (symfuse, else the first)."""
    out = []
    groups = [(f"workload {wl}", [(e["framework"], e.get("first_value"), e.get("second_value"))
                                  for e in summary if e["workload"] == wl]) for wl, _ in workloads]
    lens = sorted({n for r in lsum for n in r["points"]})
    groups += [(f"A, {n} steps", [(r["framework"], r["points"].get(n, {}).get("first_value"), None) for r in lsum])
               for n in lens]
    for what, vals in groups:
        vals = [v for v in vals if v[1] is not None]
        if not vals:
            continue
        ref = next((v for v in vals if v[0].startswith("symfuse")), vals[0])
        worst = 0.0
        for fw, a, b in vals:
            for x, y in ((a, ref[1]), (b, ref[2])):
                if x is not None and y is not None:
                    worst = max(worst, abs(x - y) / max(abs(y), 1e-30))
        out.append({"what": what, "reference": ref[0], "max_rel_diff": worst, "ok": worst <= AGREE_RTOL,
                    "values": {fw: [a, b] for fw, a, b in vals}})
    return out


def log_values(summary, workloads, checks) -> None:
    H.log("first losses (call 1 / call 2, i.e. before and after one SGD update):")
    for wl, spec in workloads:
        for e in summary:
            if e["workload"] == wl and e.get("first_value") is not None:
                H.log(f"  {wl} {e['framework']:15s} {e['first_value']:.8g} / {e['second_value']:.8g}")
    for c in checks:
        H.log(f"  {c['what']}: max relative difference from {c['reference']} {c['max_rel_diff']:.1e} "
              f"({'agree' if c['ok'] else 'DISAGREE'} at {AGREE_RTOL:g})")


def evaluate_targets(summary, lsum, frameworks, lengths):
    sfn = _sf_name(frameworks)
    out = []
    sf_a = _entry(summary, "A", sfn) if sfn else None

    def cold(e):
        return e["cold"]["median_s"] if e and e.get("cold") else None

    jx = _entry(summary, "A", "jax")
    t = {"id": "compile_vs_jax", "target": f"symfuse's LSTM cold compile at least {TARGET_COMPILE_VS_JAX:g}x faster "
                                          "than JAX's (workload A)"}
    if cold(sf_a) and cold(jx):
        t.update(value=cold(jx) / cold(sf_a), met=cold(jx) / cold(sf_a) >= TARGET_COMPILE_VS_JAX,
                 detail=f"symfuse {H.fmt_s(cold(sf_a))}, JAX {H.fmt_s(cold(jx))}: {cold(jx) / cold(sf_a):.2f}x")
    out.append(t)
    te = _entry(summary, "A", "torch-eager")
    t = {"id": "step_vs_torch_eager", "target": f"symfuse's step at most {TARGET_STEP_VS_EAGER:g}x torch eager's "
                                               "(workload A)"}
    if sf_a and sf_a.get("step_s") and te and te.get("step_s"):
        r = sf_a["step_s"] / te["step_s"]
        t.update(value=r, met=r <= TARGET_STEP_VS_EAGER,
                 detail=f"symfuse {H.fmt_s(sf_a['step_s'])}, torch eager {H.fmt_s(te['step_s'])}: {r:.2f}x")
    out.append(t)
    row = next((r for r in lsum if r["framework"] == sfn), None)
    t = {"id": "flat_compile", "target": f"symfuse's compile time flat from {min(lengths)} to {max(lengths)} steps "
                                        f"(max / min within {TARGET_FLAT:g}x)"}
    if row and "max_over_min" in row:
        pts = row["points"]
        complete = all(pts.get(n, {}).get("status") == "ok" for n in lengths)
        t.update(value=row["max_over_min"], met=complete and row["max_over_min"] <= TARGET_FLAT,
                 detail=", ".join(f"{n}: {H.fmt_s(pts[n].get('compile_s'))}" for n in lengths if n in pts)
                 + f"; max / min {row['max_over_min']:.2f}x" + ("" if complete else " (not every length measured)"))
    out.append(t)
    for t in out:
        t["framework"] = sfn
        t.setdefault("met", None)
    return out


# -------------------------------------------------------------------------------------------- markdown


def _top_stages(raw: dict, total: float | None, n: int = 8) -> str:
    items = sorted(raw.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {H.fmt_s(v)}" + (f" ({100 * v / total:.0f} %)" if total else "") for k, v in items)


def render_targets(targets, summary, lsum, frameworks) -> str:
    sfn = _sf_name(frameworks)
    md = ["## Targets (from the issue)\n"]
    if sfn == "symfuse-interp":
        md.append("**Smoke test**: symfuse ran on its numpy interpreter (`symfuse-interp`), not the cpu backend the "
                  "targets are about; the verdicts below only exercise the report.\n")
    rows = []
    for t in targets:
        verdict = "not measured" if t["met"] is None else ("**met**" if t["met"] else "**NOT met**")
        rows.append([t["target"], verdict, t.get("detail", "symfuse or the peer did not produce this number")])
    md.append(H.md_table(["target", "verdict", "measured"], rows, ["l", "l", "l"]))
    notes = []
    sf_a = _entry(summary, "A", sfn) if sfn else None
    for t in targets:
        if t["met"] is True:
            continue
        if t["met"] is None:
            err = (sf_a or {}).get("error") or ((sf_a or {}).get("cold") or {}).get("error")
            notes.append(f"- *{t['target']}*: not measured" + (f" -- {sfn} failed: `{str(err)[:300]}`" if err else
                                                               " (a framework or a part was left out)") + ".")
            continue
        if t["id"] == "compile_vs_jax":
            s = sf_a["cold"].get("symfuse") or {}
            notes.append(f"- *{t['target']}*: **not met** ({t['detail']}). Where symfuse's cold compile goes "
                         f"(`f.report` stages, of {H.fmt_s(s.get('report_total_s'))} inside `sf.function`; the "
                         f"rest of {H.fmt_s(sf_a['cold']['median_s'])} is graph construction, `sf.grad` and the first "
                         f"call): {_top_stages(s.get('raw', {}), s.get('report_total_s'))}.")
        elif t["id"] == "step_vs_torch_eager":
            s = sf_a["cold"].get("symfuse") or {}
            notes.append(f"- *{t['target']}*: **not met** ({t['detail']}). The compiled step has "
                         f"{s.get('kernels', '?')} kernels from {s.get('ops_optimized', '?')} optimised ops; the "
                         "compile report does not time the steps themselves (the quartiles are in the workload "
                         "table).")
        elif t["id"] == "flat_compile":
            row = next(r for r in lsum if r["framework"] == sfn)
            parts = [f"{n} steps: {_top_stages(d['symfuse']['raw'], None, 4)} (report total "
                     f"{H.fmt_s(d['symfuse']['report_total_s'])})"
                     for n, d in row["points"].items() if d.get("symfuse")]
            notes.append(f"- *{t['target']}*: **not met** ({t['detail']}). The largest stages per length: "
                         + "; ".join(parts) + ". The stage table below has every group.")
    if notes:
        md.append("\n" + "\n".join(notes) + "\n")
    return "\n".join(md)


def render_md(summary, lsum, targets, checks, frameworks, workloads, lengths, repeat) -> str:
    md = [render_targets(targets, summary, lsum, frameworks)]
    sfn = _sf_name(frameworks)
    for wl, spec in workloads:
        md.append(f"\n## Workload {wl}: `{spec.label}` ({spec.describe()})\n")
        headers = ["framework", "cold compile", "warm compile", "step (median)", "step quartiles", "peak RSS cold",
                   "peak RSS warm", "import", f"{sfn or 'symfuse'} / peer: cold compile", "... : step"]
        rows = []
        sf = _entry(summary, wl, sfn) if sfn else None
        for fw in frameworks:
            e = _entry(summary, wl, fw)
            c, w = e.get("cold", {}), e.get("warm", {})
            if e.get("step_s") is None:
                rows.append([fw, c.get("status", e.get("status", "-")), w.get("status", "-")] + [""] * 7)
                continue
            rc = rs = ""
            if sf and fw != sfn and sf.get("step_s"):
                if fw not in R.NO_COMPILE and c.get("median_s") and sf["cold"].get("median_s"):
                    rc = f"{sf['cold']['median_s'] / c['median_s']:.3g}"
                rs = f"{sf['step_s'] / e['step_s']:.3g}"
            rows.append([fw, H.fmt_mm(c["median_s"], c["min_s"], c["max_s"], c["n"]),
                         H.fmt_mm(w.get("median_s"), w.get("min_s"), w.get("max_s"), w.get("n", 0)),
                         H.fmt_s(e["step_s"]), f"{H.fmt_s(e['step_q1_s'])} - {H.fmt_s(e['step_q3_s'])}",
                         f"{c['peak_rss_mb']:.0f} MiB" if c.get("peak_rss_mb") else "-",
                         f"{w['peak_rss_mb']:.0f} MiB" if w.get("peak_rss_mb") else "-",
                         H.fmt_s(c.get("import_s")), rc, rs])
        md.append(H.md_table(headers, rows))
        md.append(f"\nCompile: median of {repeat} process(es){' (min-max)' if repeat > 1 else ''}; torch eager "
                  "compiles nothing (its number is first-call overhead). Ratios below 1: symfuse faster.\n")

    md.append("\n## Warm compile: which cache\n")
    rows = []
    for fw in frameworks:
        seen = []
        for wl, _ in workloads:
            w = (_entry(summary, wl, fw) or {}).get("warm") or {}
            if w.get("symfuse"):
                seen.append(f"{wl}: graph cache {w['symfuse'].get('graph_cache') or '-'}")
            if w.get("caches"):
                seen.append(f"{wl}: " + ", ".join(f"{k} {v}" for k, v in w["caches"].items()))
            if w.get("persistent_cache_files") is not None:
                seen.append(f"{wl}: {w['persistent_cache_files']} files in the cache directory")
        rows.append([fw, WARM_CACHE.get(fw, "-"), "; ".join(seen) or "-"])
    md.append(H.md_table(["framework", "persistent cache used by the warm process", "observed"], rows,
                         ["l", "l", "l"]))

    if any(r["points"] for r in lsum):
        md.append("\n## Compile time against sequence length (workload A's shape, cold, one process per point)\n")
        rows = []
        for r in lsum:
            cells = []
            for n in lengths:
                d = r["points"].get(n)
                if d is None:
                    cells.append("-")
                elif d["status"] == "ok":
                    cells.append(H.fmt_s(d["compile_s"]))
                elif d["status"] == "timeout":
                    cells.append(f"timeout (> {d['timeout_s']:.0f} s)" if d.get("timeout_s") else "timeout")
                else:
                    cells.append(str(d["status"]))
            rows.append([r["framework"]] + cells + [f"{r['max_over_min']:.2f}x" if "max_over_min" in r else "-"])
        md.append(H.md_table(["framework"] + [f"{n} steps" for n in lengths] + ["max / min"], rows))
        reasons = [f"{r['framework']} {n} steps: {d['reason']}" for r in lsum for n, d in r["points"].items()
                   if d["status"] not in ("ok",) and d.get("reason")]
        if reasons:
            md.append("\n" + "\n".join(f"- {x[:400]}" for x in reasons) + "\n")

    sf_blocks = []
    for fw in [f for f in frameworks if f.startswith("symfuse")]:
        for wl, spec in workloads:
            e = _entry(summary, wl, fw) or {}
            for phase in ("cold", "warm"):
                s = (e.get(phase) or {}).get("symfuse")
                if s:
                    sf_blocks.append((f"{wl} {spec.label}", fw, phase, s, e[phase]["median_s"]))
        r = next((x for x in lsum if x["framework"] == fw), None)
        for n, d in (r or {"points": {}})["points"].items():
            if d.get("symfuse"):
                sf_blocks.append((f"A, {n} steps", fw, "cold", d["symfuse"], d["compile_s"]))
    if sf_blocks:
        groups = list(sf_blocks[0][3]["groups"])
        md.append("\n## Where symfuse's compile time goes (`f.report.stages`, grouped; median seconds)\n\n"
                  "The stages cover the `sf.function` call ('report total'); the rest of the compile time is the "
                  "graph construction (`nn.LSTM`, `sf.grad`) before it and the first call after it.\n\n")
        rows = [[what, fw, phase] + [H.fmt_s(s["groups"].get(g)) for g in groups]
                + [H.fmt_s(s["report_total_s"]), H.fmt_s(total), str(s.get("graph_cache") or "-"),
                   str(s.get("kernels", "-")), f"{s.get('ops_built')} -> {s.get('ops_optimized', '?')}"]
                for what, fw, phase, s, total in sf_blocks]
        md.append(H.md_table(["what", "framework", "phase"] + groups + ["report total", "compile time",
                                                                          "graph cache", "kernels", "ops"],
                             rows, ["l", "l", "l"] + ["r"] * (len(groups) + 5)))
        other = sorted({n for *_, s, _t in sf_blocks for n in s["raw"] if H.sf_stage_groups({n: 1.0})["other"]})
        if other:
            md.append("\n'other' = " + ", ".join(f"`{n}`" for n in other) + ".\n")
        md.append("\nLargest single stages, cold:\n\n" + "\n".join(
            f"- {what} ({fw}): {_top_stages(s['raw'], s['report_total_s'])}"
            for what, fw, phase, s, _ in sf_blocks if phase == "cold") + "\n")

    pt = [(wl, e) for wl, _ in workloads for e in [_entry(summary, wl, "pytensor")] if e and
          (e.get("cold") or {}).get("pytensor_stages")]
    if pt:
        md.append("\n## PyTensor stage breakdown (median seconds)\n\n" + peers.PYTENSOR_STAGE_NOTE +
                  "; the scan body is compiled as a function of its own, inside the outer link, and PyTensor's "
                  "counters may count it in both.\n\n")
        rows = []
        for wl, e in pt:
            for phase in ("cold", "warm"):
                p = e[phase]
                if p.get("pytensor_stages"):
                    s = p["pytensor_stages"]
                    rows.append([wl, phase, H.fmt_s(s["rewrite"]), H.fmt_s(s["link"]), H.fmt_s(s["import"]),
                                 H.fmt_s(p["median_s"]), str(p.get("nodes"))])
        md.append(H.md_table(["workload", "phase", "rewrite", "link", "of which import", "compile time",
                              "nodes after rewriting"], rows, ["l", "l"] + ["r"] * 5))

    md.append("\n## Cross-check: loss of call 1 / call 2 (before and after one SGD update)\n")
    rows = []
    for c in checks:
        rows.append([c["what"], c["reference"]] + [" / ".join(f"{v:.8g}" for v in c["values"][fw] if v is not None)
                                   if fw in c["values"] else "-" for fw in frameworks]
                    + [f"{c['max_rel_diff']:.1e}" + ("" if c["ok"] else " **DISAGREE**")])
    md.append(H.md_table(["what", "reference"] + list(frameworks)
                         + [f"max rel. diff from the reference (target {AGREE_RTOL:g})"], rows, ["l", "l"]
                         + ["r"] * (len(frameworks) + 1)))
    return "\n".join(md)


# ------------------------------------------------------------------------------------------------ plot


def plot(summary, lsum, frameworks, workloads, lengths):
    plt = H.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6))
    xs = list(range(len(frameworks)))
    wls = [wl for wl, _ in workloads]

    ax = axes[0]
    bars = [(wl, ph) for wl in wls for ph in ("cold", "warm")]
    w = 0.8 / max(1, len(bars))
    shades = {"cold": 1.0, "warm": 0.45}
    for j, (wl, ph) in enumerate(bars):
        vals = []
        for fw in frameworks:
            m = ((_entry(summary, wl, fw) or {}).get(ph) or {}).get("median_s")
            vals.append(m if m and m > 0 else float("nan"))
        b = ax.bar([x + (j - (len(bars) - 1) / 2) * w for x in xs], vals, w, label=f"{wl} {ph}",
                   color="#444444" if wl == "A" else "#1f77b4", alpha=shades[ph])
        H.label_bars(ax, b, vals)
    ax.set_title("compile time (cold: empty caches; warm: 2nd process)")
    ax.set_ylabel("seconds")

    for ax, key, title, unit, scale in ((axes[1], "step_s", "steady-state step (median)", "ms", 1e3),
                                        (axes[2], None, "peak RSS, cold process", "MiB", 1)):
        w = 0.8 / max(1, len(wls))
        for j, wl in enumerate(wls):
            vals = []
            for fw in frameworks:
                e = _entry(summary, wl, fw) or {}
                v = e.get(key) if key else (e.get("cold") or {}).get("peak_rss_mb")
                vals.append(v * scale if v else float("nan"))
            b = ax.bar([x + (j - (len(wls) - 1) / 2) * w for x in xs], vals, w, label=f"workload {wl}",
                       color="#444444" if wl == "A" else "#1f77b4")
            H.label_bars(ax, b, vals)
        ax.set_title(title)
        ax.set_ylabel(unit)
    for ax in axes[:3]:
        H.plain_log_y(ax)
        ax.set_xticks(xs)
        ax.set_xticklabels(frameworks, rotation=45, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(fontsize=7)

    ax = axes[3]
    for r in lsum:
        pts = [(n, d["compile_s"]) for n, d in sorted(r["points"].items()) if d.get("compile_s")]
        col = COLORS.get(r["framework"], "#333333")
        if pts:
            ax.plot([p[0] for p in pts], [max(p[1], 1e-3) for p in pts], "o-", color=col, label=r["framework"])
        for n, d in r["points"].items():
            if d["status"] == "timeout" and d.get("timeout_s"):
                ax.plot([n], [d["timeout_s"]], "x", color=col, markersize=9)
    ax.set_xscale("log")
    H.plain_log_y(ax)
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(n) for n in lengths])
    ax.xaxis.set_minor_formatter(H.pyplot().NullFormatter())
    ax.set_xlabel("sequence length (time steps)")
    ax.set_ylabel("cold compile (s); x = timeout")
    ax.set_title("compile time vs sequence length")
    ax.grid(alpha=0.3, which="both")
    if lsum and any(r["points"] for r in lsum):
        ax.legend(fontsize=7)
    fig.suptitle("LSTM training step, float32, CPU: " + ", ".join(f"{wl} = {s.label}" for wl, s in workloads))
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    try:
        sys.exit(main())
    except peers.MissingPeer as e:
        print(f"study_rnn: {e}", file=sys.stderr)
        sys.exit(2)

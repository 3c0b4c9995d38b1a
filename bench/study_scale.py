"""Study 3: cold compile time against graph size, for symfuse and its peers.

    python bench/study_scale.py [--point-timeout 300] [--frameworks a,b,c] [--quick]

Two sweeps, each point compiled cold (fresh process, empty caches) once:

* mlp:   training step of an MLP with depth 1, 2, 4, ..., 256 hidden layers of
         width 64 (input 64, 10 classes, relu, batch 32): forward, backward and
         the SGD update in one compiled function;
* chain: a forward function of 10, 100, 1000, 10000 elementwise ops on a
         (32, 64) tensor (x*1.0001 and +0.001 alternating, a tanh every fifth op).

Compile time is defined as in study_compile (build + first call - one steady
call). A point that runs past ``--point-timeout`` is recorded as "timeout" and
the framework's larger points of that sweep are not run (recorded as
"skipped"); a framework whose sweep has used ``--budget`` seconds skips the
rest too. Fits log(compile time) = a + slope * log(size) per framework, on all
points and on the largest three.

Writes bench/results/scale.{json,md,png} (bench/results/quick/ with --quick).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import peers  # noqa: E402

FULL = {"mlp": [1, 2, 4, 8, 16, 32, 64, 128, 256], "chain": [10, 100, 1000, 10000]}
QUICK = {"mlp": [1, 2, 4, 8], "chain": [10, 100]}
XLABEL = {"mlp": "hidden layers (width 64), training step", "chain": "elementwise ops in the chain"}


def spec_for(sweep: str, n: int) -> peers.Spec:
    return peers.mlp_spec(n) if sweep == "mlp" else peers.chain_spec(n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--point-timeout", type=float, default=None, help="seconds per point (default 300; quick: 60)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of child wall time per framework and sweep before its larger points are skipped "
                         "(default 1200; quick: 90)")
    ap.add_argument("--sweeps", default="mlp,chain", help="mlp, chain or both")
    ap.add_argument("--sizes-mlp", default=None, help="comma-separated depths (overrides the default sweep)")
    ap.add_argument("--sizes-chain", default=None, help="comma-separated chain lengths")
    H.add_common_args(ap)
    args = ap.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.sizes_mlp:
        sizes["mlp"] = [int(v) for v in args.sizes_mlp.split(",")]
    if args.sizes_chain:
        sizes["chain"] = [int(v) for v in args.sizes_chain.split(",")]
    sweeps = [s for s in args.sweeps.split(",") if s]
    point_timeout = args.point_timeout or (60 if args.quick else 300)
    budget = args.budget or (90 if args.quick else 1200)
    st = H.Study("scale", args)

    points = []
    for sweep in sweeps:
        for fw in st.frameworks:
            used, stop = 0.0, None
            for n in sizes[sweep]:
                spec = spec_for(sweep, n)
                p = {"sweep": sweep, "size": n, "framework": fw, "label": spec.label}
                if stop:
                    p.update(status="skipped", reason=stop)
                    H.log(f"  {fw} {spec.label}: skipped ({stop})")
                    points.append(p)
                    continue
                job = {"framework": fw, "spec": spec.to_json(), "mode": "compile", "settle": 3}
                res = st.run(job, st.fresh_cache(f"{fw}-{spec.label}"), timeout=point_timeout, what=spec.label)
                used += res.get("wall_s", 0.0)
                p.update(status=res.get("status"), wall_s=res.get("wall_s"))
                if res.get("status") == "ok":
                    info = res.get("info") or {}
                    p.update(compile_s=res["compile_s"], build_s=res["build_s"], first_s=res["first_s"],
                             steady_s=res["settle_s"], ir_ops=info.get("ops_built"), nodes=info.get("nodes"),
                             kernels=info.get("kernels"))
                    if fw.startswith("symfuse"):
                        p["stages"] = H.sf_stage_groups(info.get("stages"))
                elif res.get("status") == "timeout":
                    p["timeout_s"] = point_timeout
                    stop = f"a smaller point timed out after {point_timeout:.0f} s"
                else:
                    p["error"] = res.get("error")
                    st.record_error(f"{fw} {spec.label}: {res.get('error')}")
                if not stop and used > budget:
                    stop = f"the sweep's budget of {budget:.0f} s was used"
                points.append(p)

    fits = fit_all(points, sweeps, st.frameworks)
    md = render_md(points, fits, sweeps, sizes, st.frameworks, point_timeout, budget) + H.md_errors(st)
    fig = plot(points, fits, sweeps, st.frameworks)
    return st.finish({"sizes": sizes, "point_timeout_s": point_timeout, "budget_s": budget, "points": points,
                      "fits": fits}, md, fig)


def fit(xs, ys):
    """Least-squares slope of log10(y) against log10(x); None with fewer than 2 points."""
    pts = [(math.log10(x), math.log10(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
    return {"slope": slope, "intercept": my - slope * mx, "points": len(pts)}


def fit_all(points, sweeps, frameworks):
    out = []
    for sweep in sweeps:
        for fw in frameworks:
            ok = [p for p in points if p["sweep"] == sweep and p["framework"] == fw and p["status"] == "ok"
                  and p["compile_s"] > 0]
            xs, ys = [p["size"] for p in ok], [p["compile_s"] for p in ok]
            out.append({"sweep": sweep, "framework": fw, "all": fit(xs, ys),
                        "largest3": fit(xs[-3:], ys[-3:]) if len(ok) >= 3 else None,
                        "largest_ok": xs[-1] if xs else None})
    return out


def cell(p) -> str:
    if p["status"] == "ok":
        return H.fmt_s(p["compile_s"])
    if p["status"] == "timeout":
        return f"timeout (>{p['timeout_s']:.0f} s)"
    if p["status"] == "skipped":
        return "skipped"
    return "error"


def render_md(points, fits, sweeps, sizes, frameworks, point_timeout, budget) -> str:
    md = ["## What is measured\n",
          "Cold compile time (fresh process, empty compile caches; defined as in `study_compile.py`: graph "
          "construction + explicit compile + first call - one steady-state call) of one function per point, "
          f"once. A point past {point_timeout:.0f} s is recorded as `timeout` and the framework's larger points of "
          f"that sweep as `skipped`; so are the rest of a sweep once a framework has used {budget:.0f} s of it. "
          "The slope is the least-squares fit of log(compile time) against log(size): 1 = linear; "
          "'largest 3' fits the three largest points that finished, where fixed costs matter least. numpy and "
          "torch eager compile nothing (their numbers are first-call overhead).\n",
          "- **mlp**: training step (forward, backward, SGD update) of an MLP with that many hidden layers of "
          "width 64 (input 64, 10 classes, relu, batch 32).",
          "- **chain**: forward function of that many elementwise ops on a (32, 64) float32 tensor: "
          "`x*1.0001`, `+0.001` alternating, `tanh` every fifth op.\n"]
    for sweep in sweeps:
        md.append(f"## {sweep}: {XLABEL[sweep]}\n")
        rows = []
        for n in sizes[sweep]:
            row = [str(n)]
            for fw in frameworks:
                p = next(x for x in points if x["sweep"] == sweep and x["size"] == n and x["framework"] == fw)
                row.append(cell(p))
            sf = next((x for x in points if x["sweep"] == sweep and x["size"] == n and x["framework"] == "symfuse-cpu"
                       and x["status"] == "ok"), None)
            row.append(str(sf.get("ir_ops")) if sf else "-")
            rows.append(row)
        md.append(H.md_table(["size"] + list(frameworks) + ["symfuse IR ops built"], rows))
        sf_pts = [x for x in points if x["sweep"] == sweep and x["framework"] == "symfuse-cpu" and x["status"] == "ok"]
        if sf_pts:
            groups = list(sf_pts[0]["stages"])
            md.append("\nsymfuse-cpu stages (grouped `f.report.stages`):\n")
            md.append(H.md_table(["size"] + groups + ["compile time"],
                                 [[str(p["size"])] + [H.fmt_s(p["stages"][g]) for g in groups]
                                  + [H.fmt_s(p["compile_s"])] for p in sf_pts]))
    md.append("\n## Fitted slopes of log(compile time) against log(size)\n")
    rows = []
    for f in fits:
        a, l3 = f["all"], f["largest3"]
        rows.append([f["sweep"], f["framework"], f"{a['slope']:.2f} ({a['points']} pts)" if a else "-",
                     f"{l3['slope']:.2f}" if l3 else "-", str(f["largest_ok"] or "-")])
    md.append(H.md_table(["sweep", "framework", "slope, all points", "slope, largest 3", "largest size done"], rows,
                         ["l", "l", "r", "r", "r"]))
    return "\n".join(md)


def plot(points, fits, sweeps, frameworks):
    plt = H.pyplot()
    from matplotlib.ticker import NullLocator
    fig, axes = plt.subplots(1, len(sweeps), figsize=(6.5 * len(sweeps), 5), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps):
        for fw in frameworks:
            ps = [p for p in points if p["sweep"] == sweep and p["framework"] == fw]
            ok = [p for p in ps if p["status"] == "ok" and p["compile_s"] > 0]
            f = next(x for x in fits if x["sweep"] == sweep and x["framework"] == fw)
            slope = f["largest3"] or f["all"]
            lab = fw + (f" (slope {slope['slope']:.2f})" if slope else "")
            color = H.COLORS.get(fw, "#333333")
            if ok:
                ax.plot([p["size"] for p in ok], [p["compile_s"] for p in ok], "o-", color=color, label=lab)
            to = [p for p in ps if p["status"] == "timeout"]
            if to:
                ax.plot([p["size"] for p in to], [p["timeout_s"] for p in to], "x", color=color, markersize=10,
                        label=f"{fw}: timeout" if not ok else None)
        ax.set_xscale("log")
        H.plain_log_y(ax)
        sizes = sorted({p["size"] for p in points if p["sweep"] == sweep})
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(n) for n in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(XLABEL[sweep])
        ax.set_ylabel("cold compile time (s)")
        ax.set_title(f"{sweep} sweep (x: timed out)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    try:
        sys.exit(main())
    except peers.MissingPeer as e:
        print(f"study_scale: {e}", file=sys.stderr)
        sys.exit(2)

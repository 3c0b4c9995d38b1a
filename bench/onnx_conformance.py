"""The ONNX conformance suite -- every node test case of the installed onnx -- on
symfuse's devices (symfuse/onnx/conformance.py runs it); writes
bench/results/onnx_conformance.json and .md.

    python bench/onnx_conformance.py                       # interp, cpu, a 150-case sample on cuda-emu
    python bench/onnx_conformance.py --devices interp      # one device (the others' results are kept)
    python bench/onnx_conformance.py --match '^test_reshape' --devices interp   # a converter's cases only
"""
import argparse
import contextlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from symfuse.onnx.conformance import DEVICES, SAMPLED, markdown, merge, run_suite, to_json  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default=",".join(DEVICES), help="comma-separated symfuse devices")
    p.add_argument("--sample", type=int, default=SAMPLED["cuda-emu"],
                   help="cases drawn at random for cuda-emu (0: all); interp and cpu run every case")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one case may take")
    p.add_argument("--cache-dir", help="SYMFUSE_CACHE_DIR for the run (default: a fresh temporary one)")
    p.add_argument("--match", help="only cases matching this regex; prints their results, writes no files")
    p.add_argument("--out", default=os.path.join(HERE, "results", "onnx_conformance"),
                   help="results path without extension (.json and .md are written)")
    a = p.parse_args(argv)
    devices = [d.strip() for d in a.devices.split(",") if d.strip()]
    res = run_suite(devices, {"cuda-emu": a.sample}, a.seed, a.jobs, a.timeout, a.cache_dir, a.match,
                    verbose=True)
    for device, d in res["devices"].items():
        if "cases" not in d:
            print(f"{device}: {d['unavailable']}")
            continue
        print(f"{device}: {d['passed']}/{d['total']} passed, {d['failed']} failed, {d['errored']} errored, "
              f"{d['unsupported']} not supported ({d['wall_s']:.0f} s)")
        for name, c in d["cases"].items() if a.match else ():
            print(f"  {name}: {c['status']}: {c['reason']}")
    if a.match:
        return 0
    with contextlib.suppress(FileNotFoundError), open(a.out + ".json") as f:
        res = merge(json.load(f), res)                 # a run of some devices keeps the others' results
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    for ext, text in ((".json", to_json(res)), (".md", markdown(res))):
        with open(a.out + ext, "w") as f:
            f.write(text)
    print(f"wrote {a.out}.json and {a.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

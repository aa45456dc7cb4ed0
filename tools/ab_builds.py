#!/usr/bin/env python3
"""Two builds of this repository side by side, in interleaved rounds: the training products
(criterion's `gemm` bench, SIMD on one thread and on the pool), an epoch of each of the
study's models, and the int8 one-image latency. Prints the medians and B/A per measure.

Each build is a cargo target directory holding `release/trainer`, `release/firmware-sim`
and the gemm bench (`cargo bench -p benches --bench gemm --no-run`). For example, a portable
build against a native one of the same tree:

    cargo build --release -p trainer -p firmware-sim && cargo bench -p benches --bench gemm --no-run
    RUSTFLAGS="-C target-cpu=native" CARGO_TARGET_DIR=target/native cargo build --release -p trainer -p firmware-sim
    RUSTFLAGS="-C target-cpu=native" CARGO_TARGET_DIR=target/native cargo bench -p benches --bench gemm --no-run
    python3 tools/ab_builds.py --a target/native --b target --model runs/X/relu/relu.int8.fmlp

Rounds alternate which build goes first. On a shared machine the spread of each side's
samples matters as much as the medians: both are printed.
"""

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile


def gemm_bench(target):
    benches = [p for p in glob.glob(os.path.join(target, "release", "deps", "gemm-*")) if not p.endswith(".d")]
    if not benches:
        sys.exit(f"no gemm bench in {target}: run cargo bench -p benches --bench gemm --no-run for it")
    return max(benches, key=os.path.getmtime)


def products(bench, seconds):
    out = subprocess.run(
        [bench, "--bench", "--warm-up-time", "0.3", "--measurement-time", str(seconds), "--noplot",
         "--discard-baseline", "simd"],
        capture_output=True, text=True, check=True).stdout
    name, found = None, {}
    for line in out.splitlines():
        m = re.match(r"^gemm/(\S+) \S+/(simd-\S+)", line)
        if m:
            name = f"gemm {m.group(1)} {m.group(2)} (GFLOP/s)"
        m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) Gelem/s", line)
        if m and name:
            found[name] = float(m.group(1))
            name = None
    return found


def epochs(target):
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run([os.path.join(target, "release", "trainer"), "fit", "--all", "--epochs", "1",
                              "--out", os.path.join(out, "run")], capture_output=True, text=True, check=True)
    return {f"epoch {m.group(1)} (s)": float(m.group(2))
            for m in re.finditer(r"(\w+) epoch  1: \S+ - ([\d.]+)s", run.stdout + run.stderr)}


def latency(target, model):
    out = subprocess.run([os.path.join(target, "release", "firmware-sim"), "check", "--model", model, "--json",
                          "--threads", "1"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["latency_us"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="target directory of build A")
    ap.add_argument("--b", required=True, help="target directory of build B")
    ap.add_argument("--model", required=True, help="an int8 model file for the latency")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5, help="criterion's measurement time per product")
    args = ap.parse_args()
    sides = {"A": args.a, "B": args.b}
    benches = {s: gemm_bench(t) for s, t in sides.items()}
    samples = {}
    for r in range(args.rounds):
        for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
            found = products(benches[side], args.seconds)
            found.update(epochs(sides[side]))
            found["int8 latency (µs)"] = min(latency(sides[side], args.model) for _ in range(3))
            for k, v in found.items():
                samples.setdefault(k, {"A": [], "B": []})[side].append(v)
        print(f"round {r + 1} of {args.rounds}", file=sys.stderr)
    print(f"{'measure':48s} {'A':>9s} {'B':>9s} {'B/A':>6s}   A min-max     B min-max")
    for k, v in samples.items():
        a, b = statistics.median(v["A"]), statistics.median(v["B"])
        print(f"{k:48s} {a:9.2f} {b:9.2f} {b / a:6.3f}   {min(v['A']):.1f}-{max(v['A']):.1f}"
              f"   {min(v['B']):.1f}-{max(v['B']):.1f}")


if __name__ == "__main__":
    main()

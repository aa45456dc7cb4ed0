#!/usr/bin/env python3
"""Trains networks for a flash budget, dense and pruned, and measures each on the emulated
boards: the table of accuracy against model size in docs/int8-and-firmware.md.

    python3 tools/budget-table.py [--out DIR] [--images N] [--recipe ARGS] [SPEC ...]

A SPEC is a comma-separated hidden stack, optionally pruned, with int4 weights and
distilled:

    128,64                dense
    256,128@0.9           --prune 0.9 (blocks of four inputs, hidden layers; stored sparse)
    256,128/32K           --flash 32K (pruned as far as the int8 file needs to fit 32 KB)
    256,128@0.9+distill   the same, taught by the teacher (--distill TEACHER)
    256,128/32K+int4      --quant int4: int4 hidden weights (with --flash, pruned less)
    256,128/32K+int4+distill  both

Each is trained with `trainer fit --preset best --hidden HIDDEN ...` (the recipe is
`--recipe`, default "--preset best") into DIR/SPEC. The teacher is DIR/teacher, the
recipe's own network (784-512-256-10 for --preset best, with its dropout), trained when a
SPEC needs it; the dense SPEC 512,256 is the teacher. Then `firmware-sim check --json` runs the int8 model on the host (it must agree
with the trainer's integer reference on every test image), `firmware-sim qemu --json` on
the Cortex-M4F (mps2-an386) and, when the firmware fits 256 KB of flash, on the Cortex-M0
of a micro:bit, N test images each; the script prints one Markdown row per SPEC. A SPEC
whose run folder has a summary.json is not trained again. Needs the release binaries
(cargo build --release) and the firmware toolchain (see README).
"""

import argparse
import json
import pathlib
import shlex
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAINER = ROOT / "target/release/trainer"
SIM = ROOT / "target/release/firmware-sim"
# The rows of the table in docs/int8-and-firmware.md.
SPECS = [
    "16", "32", "64,32", "128,64", "256,128", "512,256",
    "128,64@0.8", "256,128@0.9", "256,128@0.9+distill", "512,256@0.9", "512,256@0.95",
    "128,64/16K+distill", "256,128/64K+distill", "512,256/128K+distill", "512,256/256K+distill",
    "32+int4", "128,64+int4", "128,64/16K+int4+distill", "256,128/32K+int4+distill",
    "256,128/64K+int4+distill", "512,256/128K+int4+distill", "512,256/256K+int4+distill",
]
MICROBIT_FLASH = 256 * 1024


def run_json(args):
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def parse(spec):
    """(hidden, the trainer's pruning and weight options, distilled) of a SPEC."""
    spec, *flags = spec.split("+")
    distill, int4 = "distill" in flags, "int4" in flags
    quant = ["--quant", "int4"] if int4 else []
    if "/" in spec:
        hidden, _, flash = spec.partition("/")
        return hidden, ["--flash", flash, *quant], distill
    hidden, _, sparsity = spec.partition("@")
    return hidden, (["--prune", sparsity] if sparsity else []) + quant, distill


def fit(run, args):
    """Trains into `run` unless it holds a finished run; returns its first model's summary."""
    if not (run / "summary.json").is_file():
        cmd = [str(TRAINER), "fit", *args, "--out", str(run)]
        print("$ " + shlex.join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return json.loads((run / "summary.json").read_text())["models"][0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/budget", help="folder for the runs (default runs/budget)")
    p.add_argument("--images", type=int, default=10000, help="test images per firmware run (default 10000)")
    p.add_argument("--recipe", default="--preset best", help='trainer options of every run (default "--preset best")')
    p.add_argument("specs", nargs="*", default=SPECS, metavar="SPEC")
    a = p.parse_args()
    out = pathlib.Path(a.out)
    recipe = shlex.split(a.recipe)
    rows = []
    for spec in a.specs:
        hidden, pruning, distill = parse(spec)
        args = [*recipe, "--hidden", hidden, *pruning]
        if distill:
            t = fit(out / "teacher", recipe)
            args += ["--distill", str(out / "teacher" / t["name"] / f"{t['name']}.f32.fmlp")]
        run = out / spec.replace(",", "-").replace("+", "-").replace("/", "-")
        if hidden == "512,256" and not pruning and not distill:
            # The recipe's own 784-512-256-10 (with its dropout): the teacher.
            run = out / "teacher"
            args = recipe
        summary = fit(run, args)
        name = summary["name"]
        model = run / name / f"{name}.int8.fmlp"
        check = run_json([str(SIM), "check", "--json", "--model", str(model)])
        assert check["disagreements"] == 0, check
        m4 = run_json([str(SIM), "qemu", "--json", "--count", str(a.images), "--model", str(model)])
        assert m4["disagreements"] == 0 and m4["score_mismatches"] == 0, m4
        m0 = None
        if m4["model_bytes"] + 24 * 1024 <= MICROBIT_FLASH:
            m0 = run_json([str(SIM), "qemu", "--json", "--board", "microbit", "--count", str(a.images), "--model", str(model)])
            assert m0["disagreements"] == 0 and m0["score_mismatches"] == 0, m0
        rows.append((spec, distill, summary, check, m4, m0))
        print(f"{spec}: done", file=sys.stderr)

    print("| network | pruned | weights | model file | f32 / int8 test accuracy | Cortex-M4F instructions | Cortex-M0 (micro:bit) instructions, flash |")
    print("|---|---|---|---:|---:|---:|---:|")
    for spec, distill, summary, check, m4, m0 in rows:
        sparsity = summary.get("sparsity") or []
        pruned = f"{100 * sparsity[0]:.0f}%" if sparsity else ""
        if "/" in spec:
            pruned += f" (`--flash {spec.split('/')[1].split('+')[0]}`)"
        if distill:
            pruned += ", distilled"
        m0_cell = "does not fit" if m0 is None else f"{m0['instructions_per_inference']:,.0f}, {m0['flash_bytes'] / 1024:.1f} KB"
        print(
            f"| {m4['architecture']} | {pruned} | {'int4' if '+int4' in spec else 'int8'} | {m4['model_bytes']:,} B "
            f"| {100 * summary['test_accuracy']:.2f}% / {100 * check['accuracy']:.2f}% "
            f"| {m4['instructions_per_inference']:,.0f} | {m0_cell} |"
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Trains a few network shapes with the seed recipe and measures each on the emulated
boards: the table README's "Choosing a network" shows.

    python3 tools/budget-table.py [--out DIR] [--images N] [HIDDEN ...]

HIDDEN is a comma-separated stack such as 128,64 (default: the shapes in README).
For each, `trainer fit --hidden HIDDEN` (or `--model relu` for the study's 512,256) trains
and exports it, then `firmware-sim qemu --json` runs the int8 model on the Cortex-M4F
(mps2-an386) and, when its flash fits 256 KB, on the Cortex-M0 of a micro:bit; the
script prints one Markdown row per shape. Needs the release binaries (cargo build
--release) and the firmware toolchain (see README).
"""

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAINER = ROOT / "target/release/trainer"
SIM = ROOT / "target/release/firmware-sim"
SHAPES = ["512,256", "256,128,64", "128,64", "64,32", "32"]
MICROBIT_FLASH = 256 * 1024


def run_json(args):
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/budget", help="folder for the runs (default runs/budget)")
    p.add_argument("--images", type=int, default=10000, help="test images per firmware run")
    p.add_argument("hidden", nargs="*", default=SHAPES)
    a = p.parse_args()
    out = pathlib.Path(a.out)
    rows = []
    for hidden in a.hidden:
        run = out / hidden.replace(",", "-")
        if hidden == "512,256":
            fit = ["fit", "--model", "relu"]
        else:
            fit = ["fit", "--hidden", hidden]
        if not (run / "summary.json").is_file():
            subprocess.run([str(TRAINER), *fit, "--out", str(run)], check=True, stderr=subprocess.DEVNULL)
        summary = json.loads((run / "summary.json").read_text())["models"][0]
        name = summary["name"]
        model = run / name / f"{name}.int8.fmlp"
        check = run_json([str(SIM), "check", "--json", "--model", str(model)])
        assert check["disagreements"] == 0, check
        m4 = run_json([str(SIM), "qemu", "--json", "--count", str(a.images), "--model", str(model)])
        assert m4["disagreements"] == 0 and m4["score_mismatches"] == 0, m4
        m0 = None
        if m4["model_bytes"] + 16 * 1024 <= MICROBIT_FLASH:
            m0 = run_json([str(SIM), "qemu", "--json", "--board", "microbit", "--count", str(a.images), "--model", str(model)])
            assert m0["disagreements"] == 0 and m0["score_mismatches"] == 0, m0
        rows.append((summary, check, m4, m0))
        print(f"{name}: done", file=sys.stderr)

    print("| network | int8 model | f32 / int8 test accuracy | scratch RAM | Cortex-M4F: flash, RAM, instructions | Cortex-M0 (micro:bit): flash, RAM, instructions |")
    print("|---|---:|---:|---:|---:|---:|")
    for summary, check, m4, m0 in rows:
        kb = lambda b: f"{b / 1024:.1f} KB"
        m0_cell = "does not fit" if m0 is None else f"{kb(m0['flash_bytes'])}, {kb(m0['ram_bytes'])}, {m0['instructions_per_inference']:,.0f}"
        print(
            f"| {m4['architecture']} | {m4['model_bytes']:,} B | {100 * summary['test_accuracy']:.2f}% / {100 * check['accuracy']:.2f}% "
            f"| {m4['scratch_bytes']} B | {kb(m4['flash_bytes'])}, {kb(m4['ram_bytes'])}, {m4['instructions_per_inference']:,.0f} | {m0_cell} |"
        )


if __name__ == "__main__":
    main()

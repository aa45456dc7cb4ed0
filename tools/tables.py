#!/usr/bin/python3
"""Our trainer against scikit-learn's MLPClassifier on the tables Debian ships.

For each of scikit-learn's CSV datasets (iris, wine, breast cancer, digits) and each of
--splits stratified train/test splits (a quarter held out for test, split k drawn with seed
k), this writes the split as two CSV files a user would have (a header of column names,
the class names as labels, last column), trains

    trainer fit --data train.csv --test-data test.csv --hidden 64,32

on them (the best preset: the default for data other than Fashion-MNIST), checks the int8
model with `firmware-sim check`, and fits

    make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64, 32),
                  max_iter=2000, random_state=k))

on the same rows (standardized, as ours are; max_iter large enough that it converges).
It prints a Markdown table of mean test accuracies over the splits, the int8 model's
bytes and the agreement of infer-core with the trainer's int8 predictions, and writes
the per-split figures to OUT/tables.json.

Needs Debian's python3-sklearn (run it with /usr/bin/python3) and release builds:

    cargo build --release -p trainer -p firmware-sim
    /usr/bin/python3 tools/tables.py --splits 5 [--hidden 64,32] [-- more trainer options]
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

LOADERS = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
}


def column_names(bunch, width):
    names = getattr(bunch, "feature_names", None)
    if names is None or len(names) != width:
        return [f"f{i}" for i in range(width)]
    return [re.sub(r"[^A-Za-z0-9_]+", "_", str(n)).strip("_") for n in names]


def write_csv(path, header, x, labels):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header + ["label"])
        for row, label in zip(x, labels):
            w.writerow([repr(float(v)) for v in row] + [label])


def run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return done.stdout


def ours(args, folder, train, test, extra):
    out = os.path.join(folder, "run")
    cmd = [args.trainer, "fit", "--data", train, "--test-data", test, "--hidden", args.hidden, "--out", out,
           "--overwrite"] + extra
    run(cmd)
    with open(os.path.join(out, "summary.json")) as f:
        model = json.load(f)["models"][0]
    int8 = os.path.join(out, model["name"], model["name"] + ".int8.fmlp")
    check = json.loads(run([args.firmware_sim, "check", "--model", int8, "--json"]))
    return {
        "f32": model["test_accuracy"],
        "int8": model["int8_test_accuracy"],
        "bytes": model["int8_model_bytes"],
        "agreement": check["agreement"],
        "architecture": model["architecture"],
    }


def theirs(args, x_train, y_train, x_test, y_test, seed):
    hidden = tuple(int(w) for w in args.hidden.split(","))
    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=hidden, max_iter=2000,
                                                          random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    return float(model.score(x_test, y_test))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--splits", type=int, default=5, help="train/test splits per dataset (default 5)")
    p.add_argument("--hidden", default="64,32", help="hidden widths, for both (default 64,32)")
    p.add_argument("--datasets", default=",".join(LOADERS), help="comma-separated, of " + ", ".join(LOADERS))
    p.add_argument("--out", default="target/tables", help="folder for the splits and runs (default target/tables)")
    p.add_argument("--trainer", default="target/release/trainer")
    p.add_argument("--firmware-sim", default="target/release/firmware-sim")
    p.add_argument("extra", nargs="*", help="more trainer options, after --")
    args = p.parse_args()

    results = {}
    print("| dataset | rows x features, classes | ours f32 | ours int8 | MLPClassifier | int8 model | agreement |")
    print("|---|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        bunch = LOADERS[name]()
        x, y = bunch.data, bunch.target
        classes = [str(c) for c in getattr(bunch, "target_names", np.unique(y))]
        header = column_names(bunch, x.shape[1])
        rows = []
        for k in range(args.splits):
            folder = os.path.join(args.out, name, f"split{k}")
            os.makedirs(folder, exist_ok=True)
            x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=k, stratify=y)
            train, test = os.path.join(folder, "train.csv"), os.path.join(folder, "test.csv")
            write_csv(train, header, x_tr, [classes[c] for c in y_tr])
            write_csv(test, header, x_te, [classes[c] for c in y_te])
            row = ours(args, folder, train, test, args.extra)
            row["mlpclassifier"] = theirs(args, x_tr, y_tr, x_te, y_te, k)
            rows.append(row)
            print(f"  {name} split {k}: ours {row['f32']:.4f} / {row['int8']:.4f}, "
                  f"MLPClassifier {row['mlpclassifier']:.4f}", file=sys.stderr)
        results[name] = rows
        mean = lambda key: 100 * float(np.mean([r[key] for r in rows]))
        agree = min(r["agreement"] for r in rows)
        print(f"| {name} | {x.shape[0]} x {x.shape[1]}, {len(classes)} | {mean('f32'):.2f}% | {mean('int8'):.2f}% "
              f"| {mean('mlpclassifier'):.2f}% | {rows[0]['bytes']:,} B | {100 * agree:.0f}% |")
    with open(os.path.join(args.out, "tables.json"), "w") as f:
        json.dump({"splits": args.splits, "hidden": args.hidden, "trainer_options": args.extra,
                   "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

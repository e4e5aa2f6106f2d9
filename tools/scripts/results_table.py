#!/usr/bin/env python3
"""Markdown tables for docs/results.md from `nfmimo evaluate --json` files and sweep CSVs.

    results_table.py table SETTINGS.json EVAL.json...        -> one markdown table on stdout (methods of all runs)
    results_table.py best SWEEP.csv METHOD                    -> the weight with the highest mean PSNR

Only the Python standard library: runs on a fresh machine without extra packages.
"""
import csv
import json
import sys


def fmt(summary, digits):
    if summary is None:
        return "-"
    mean, std = summary.get("mean"), summary.get("std")
    if isinstance(mean, str) or isinstance(std, str):
        return f"{mean} +- {std}"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def table(notes_path, *paths):
    with open(notes_path) as f:
        notes = json.load(f)
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    if len({(r["dataset"], r["frames"]) for r in runs}) != 1:
        sys.exit("results_table.py: the runs are not on the same test scenes")
    r = runs[0]
    print(f"{r['frames']} test scenes of `{r['dataset'].split('/')[-1]}`; {r['system']}\n")
    print("| method | PSNR dB | SSIM 3D | SSIM 2D | NMSE | ms/volume (CPU) | settings |")
    print("|---|---|---|---|---|---|---|")
    for m in [m for run in runs for m in run["methods"]]:
        print(
            f"| {m['name']} | {fmt(m['psnr_db'], 2)} | {fmt(m['ssim_3d'], 3)} | {fmt(m['ssim_2d'], 3)} "
            f"| {fmt(m['nmse'], 2)} | {m['ms_per_frame']:.0f} | {notes.get(m['name'], '')} |"
        )


def best(path, method):
    with open(path) as f:
        rows = [row for row in csv.DictReader(f) if row["method"] == method]
    if not rows:
        sys.exit(f"{path}: no rows for method {method}")
    top = max(rows, key=lambda row: float(row["psnr_db_mean"]))
    print(top["lambda_rel"])


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "table":
        table(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "best":
        best(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)

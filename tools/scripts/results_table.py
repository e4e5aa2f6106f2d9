#!/usr/bin/env python3
"""Markdown tables for docs/results.md from `nfmimo evaluate --json` files and sweep CSVs.

    results_table.py table SETTINGS.json EVAL.json...        -> one markdown table on stdout (methods of all runs)
    results_table.py best SWEEP.csv METHOD                    -> the weight with the highest mean PSNR
    results_table.py records OUT_DIR SETTING...               -> the training records of every learned model
    results_table.py splice DOC NAME=FILE...                  -> DOC with each marked block replaced by FILE

`records` reads the model zoo's state (models/trained/zoo/, the paper setting k15_snr30) and, for the other
settings, the trainer's logs next to the models results.sh trained (OUT_DIR/models/METHOD_SETTING.log.json).
`splice` replaces the lines between `<!-- results.sh: NAME -->` and `<!-- /results.sh: NAME -->` in place.

Only the Python standard library: runs on a fresh machine without extra packages.
"""
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_zoo import MODELS, ZOO, slope  # noqa: E402  (the zoo's state and its slope rule)

LEARNED = ["deep2s", "cv-deep2s", "deep2s-unet2d", "deep2s-resnet", "deepdi", "deep2s-plus"]


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


def zoo_record(method):
    """(start, CPU minutes, scenes, validation PSNR, SSIM 3D, last slope) of a zoo model, or None."""
    stem = MODELS[method]["stem"]
    try:
        with open(os.path.join(ZOO, stem + ".json")) as f:
            state = json.load(f)
        with open(os.path.join(ZOO, stem + ".runs.csv")) as f:
            runs = list(csv.DictReader(f))
    except FileNotFoundError:
        return None
    best = state.get("best") or {}
    # The first session's start is the recipe's (train_zoo.py) unless weights were already there (Deep2S started
    # from the first shipped model): docs/models.md tells each model's history.
    start = f"model zoo, {state['sessions']} session(s) ([models.md](models.md))"
    last = runs[-1].get("slope_db_per_1k", "") if runs else ""
    return (start, state["seconds"] / 60, state["samples"],
            best.get("val_psnr_db"), best.get("val_ssim_3d"), float(last) if last else float("nan"))


def log_record(path):
    """The same record from a trainer log (METHOD_SETTING.log.json), or None."""
    try:
        with open(path) as f:
            log = json.load(f)
    except FileNotFoundError:
        return None
    epochs = log["epochs"]
    last = epochs[-1]
    init = log["run"].get("init_from") or "random"
    return (f"from `{os.path.basename(init)}`" if init != "random" else "random", last["elapsed_s"] / 60,
            last["samples"], last["val_psnr_db"], last["val_ssim_3d"], slope(epochs))


def records(out_dir, *settings):
    print("| model | setting | start | CPU minutes | scenes | validation PSNR dB | SSIM 3D | last slope dB/1k |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in settings:
        for method in LEARNED + ["denoiser"]:
            if method == "denoiser":
                if setting != settings[-1]:
                    continue
                rec, setting = log_record(os.path.join(out_dir, "models", "denoiser.log.json")), "both"
            elif setting == "k15_snr30":
                rec = zoo_record(method)
            else:
                rec = log_record(os.path.join(out_dir, "models", f"{method}_{setting}.log.json"))
            if rec is None:
                print(f"| {method} | {setting} | (no record) | | | | | |")
                continue
            start, minutes, scenes, psnr, ssim, rise = rec
            print(f"| {method} | {setting} | {start} | {minutes:.0f} | {scenes} | {psnr:.2f} | {ssim:.3f} "
                  f"| {rise:+.2f} |")


def splice(doc, *blocks):
    with open(doc) as f:
        lines = f.read().split("\n")
    for block in blocks:
        name, path = block.split("=", 1)
        begin, end = f"<!-- results.sh: {name} -->", f"<!-- /results.sh: {name} -->"
        if begin not in lines or end not in lines:
            sys.exit(f"results_table.py: {doc} has no block '{begin}' ... '{end}'")
        i, j = lines.index(begin), lines.index(end)
        with open(path) as f:
            body = f.read().rstrip("\n").split("\n")
        lines = lines[: i + 1] + body + lines[j:]
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, doc)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "table":
        table(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "best":
        best(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "records":
        records(sys.argv[2], *sys.argv[3:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "splice":
        splice(sys.argv[2], *sys.argv[3:])
    else:
        sys.exit(__doc__)

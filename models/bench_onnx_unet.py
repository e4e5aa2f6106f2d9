#!/usr/bin/env python3
"""The speed anchor of docs/performance.md: ONNX Runtime (CPU) against `nfmimo bench` on the same exported
U-Net, batch 1 and 8, alternating so that both see the same machine load.

  .venv/bin/python models/bench_onnx_unet.py [--model models/trained/deep2s_paper_k15_snr30.h5]
      [--batch 1,8] [--rounds 3] [--threads 2] [--binary build/nfmimo]

The model is exported with `nfmimo export --format onnx` (batch norm folded, as nfmimo's own CPU inference
does). Each round runs nfmimo's benchmark row (`--methods <arch> --model`, its median after a warm-up) and then
ORT (one warm-up run, then the median of --repeat runs) for every batch size. Prints one JSON object per line and
a summary: the median over the rounds of each, in ms per volume, and the ratio ORT / nfmimo.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import h5py
import numpy as np
import onnxruntime as ort


def nfmimo_row(binary, model, arch, batch, threads, seconds):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([binary, "--threads", str(threads), "bench", "--methods", arch, "--model", model, "--device",
                        "cpu", "--batch", str(batch), "--seconds", str(seconds), "--json", f.name],
                       check=True, capture_output=True)
        rows = json.load(open(f.name))
    rows = rows["rows"] if isinstance(rows, dict) else rows
    row = next(r for r in rows if r["op"] == arch and r["batch"] == batch)
    return row["us_per_volume"] / 1e3


def ort_ms(session, shape, batch, repeat):
    x = np.random.default_rng(batch).uniform(0, 1, (batch,) + shape).astype(np.float32)
    session.run(["output"], {"input": x})  # warm-up (ORT plans on first run)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        session.run(["output"], {"input": x})
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e3 / batch


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.join(root, "models/trained/deep2s_paper_k15_snr30.h5"))
    p.add_argument("--binary", default=os.path.join(root, "build/nfmimo"))
    p.add_argument("--batch", default="1,8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    with h5py.File(a.model) as f:
        arch = f.attrs["architecture"]
        arch = arch.decode() if isinstance(arch, bytes) else arch
    batches = [int(b) for b in a.batch.split(",")]
    results = {(who, b): [] for who in ("nfmimo", "ort") for b in batches}
    with tempfile.TemporaryDirectory() as d:
        onnx_path = os.path.join(d, "model.onnx")
        subprocess.run([a.binary, "export", a.model, "--format", "onnx", "--out", onnx_path], check=True,
                       capture_output=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = a.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        shape = tuple(session.get_inputs()[0].shape[1:])
        for r in range(a.rounds):
            for b in batches:
                n = nfmimo_row(a.binary, a.model, arch, b, a.threads, a.seconds)
                o = ort_ms(session, shape, b, a.repeat)
                results[("nfmimo", b)].append(n)
                results[("ort", b)].append(o)
                print(json.dumps({"round": r, "batch": b, "nfmimo_ms_per_volume": round(n, 2),
                                  "ort_ms_per_volume": round(o, 2)}), flush=True)
    print(json.dumps({"load_average": os.getloadavg(), "threads": a.threads, "ort_version": ort.__version__,
                      "model": os.path.basename(a.model), "arch": arch}))
    for b in batches:
        n, o = float(np.median(results[("nfmimo", b)])), float(np.median(results[("ort", b)]))
        print(json.dumps({"batch": b, "nfmimo_ms_per_volume": round(n, 1), "ort_ms_per_volume": round(o, 1),
                          "ort_over_nfmimo": round(o / n, 2)}))


if __name__ == "__main__":
    main()

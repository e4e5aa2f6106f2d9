#!/usr/bin/env python3
"""The Python package's call overhead against `nfmimo bench`, and the operator against a dense matmul in PyTorch.

A benchmark, not a test (docs/performance.md, "Python"). Rows, on the CPU, for the paper's system and grid:
  adjoint (exact)  nfmimo bench | nfmimo.Operator.adjoint on numpy (new output, and out=) and on torch
  deep2s           nfmimo bench --model M | nfmimo.reconstruct(method="deep2s", model=nfmimo.Model(M))
  dense matmul     torch: y @ A^H with the 573 MB complex64 observation matrix (tools/bench/torch_reference.py,
                   the PyTorch peer of `nfmimo bench`)
at batch 1 and 8. The CLI and the Python calls run alternately, `--rounds` times, so that the load of a shared
machine falls on both; each figure is the median over rounds of each round's median call (warm-up calls first).

    PYTHONPATH=build/python .venv/bin/python tools/python/bench_python.py --json bench-python.json
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def median_call_ms(fn, seconds, warmup=2, min_calls=3):
    for _ in range(warmup):
        fn()
    samples = []
    begin = time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - begin < seconds:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def cli_rows(binary, threads, batches, seconds, model):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        subprocess.run([binary, "--threads", str(threads), "bench", "--methods", "adjoint,deep2s", "--modes", "exact",
                        "--device", "cpu", "--precision", "fp32", "--batch", ",".join(map(str, batches)),
                        "--model", str(model), "--seconds", str(seconds), "--json", out],
                       check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            rows = json.load(f)["rows"]
    return {(r["op"], r["batch"]): r["latency_ms"]["p50"] for r in rows
            if r["op"] in ("adjoint", "deep2s") and r["mode"] == "exact"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.environ.get("NFMIMO_BUILD_DIR", str(ROOT / "build")))
    p.add_argument("--batch", default="1,8")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seconds", type=float, default=3.0, help="time per row and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", default=str(ROOT / "models/trained/deep2s_paper_k15_snr30.h5"))
    p.add_argument("--no-peer", action="store_true", help="skip the dense-matmul peer (573 MB matrix)")
    p.add_argument("--json")
    args = p.parse_args()
    sys.path.insert(0, str(pathlib.Path(args.build) / "python"))
    import nfmimo
    import torch

    batches = [int(b) for b in args.batch.split(",")]
    nfmimo.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    system, grid = nfmimo.paper_system(15), nfmimo.paper_grid()
    op = nfmimo.Operator(system, grid)
    model = nfmimo.Model(args.model)
    rng = np.random.default_rng(1)
    M = int(np.prod(system.measurement_shape))
    y_all = (rng.standard_normal((max(batches),) + system.measurement_shape)
             + 1j * rng.standard_normal((max(batches),) + system.measurement_shape)).astype(np.complex64)

    peer = None
    if not args.no_peer:
        sys.path.insert(0, str(ROOT / "tools/bench"))
        import torch_reference as ref

        freqs, tx, rx = ref.paper_system(15)
        A = torch.from_numpy(ref.observation_matrix(freqs, tx, rx, ref.paper_grid()))
        peer = A.conj().t().contiguous()  # [V, M], as the peer's fastest CPU variant uses it
        del A
        check = (torch.from_numpy(y_all[:1].reshape(1, M)) @ peer.t()).numpy().reshape((1,) + grid.shape)
        err = float(np.abs(check - op.adjoint(y_all[:1])).max() / np.abs(check).max())
        assert err < 1e-4, f"the dense peer and nfmimo disagree: {err}"

    per_round = {}

    def add(key, value):
        per_round.setdefault(key, []).append(value)

    for r in range(args.rounds):
        for key, ms in cli_rows(str(pathlib.Path(args.build) / "nfmimo"), args.threads, batches, args.seconds,
                                args.model).items():
            add(("cli",) + key, ms)
        for b in batches:
            y = y_all[:b].copy()
            yt = torch.from_numpy(y)
            out = np.empty((b,) + grid.shape, np.complex64)
            add(("numpy", "adjoint", b), median_call_ms(lambda: op.adjoint(y), args.seconds))
            add(("numpy-out", "adjoint", b), median_call_ms(lambda: op.adjoint(y, out=out), args.seconds))
            add(("torch", "adjoint", b), median_call_ms(lambda: op.adjoint(yt), args.seconds))
            add(("numpy", "deep2s", b),
                median_call_ms(lambda: nfmimo.reconstruct(y, system, method="deep2s", model=model, device="cpu",
                                                          batch=8), args.seconds))
            if peer is not None:
                y2 = yt.reshape(b, M)
                add(("dense-matmul", "adjoint", b), median_call_ms(lambda: y2 @ peer.t(), args.seconds))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    # The fixed cost of a Python call, free of the machine's load: an empty batch runs every check, the DLPack
    # hand-over and the output allocation, and returns before any compute.
    fixed_us = {}
    y0 = np.empty((0,) + system.measurement_shape, np.complex64)
    out0 = np.empty((0,) + grid.shape, np.complex64)
    fixed_us["numpy"] = median_call_ms(lambda: op.adjoint(y0), 1.0) * 1e3
    fixed_us["numpy out="] = median_call_ms(lambda: op.adjoint(y0, out=out0), 1.0) * 1e3
    fixed_us["torch"] = median_call_ms(lambda: op.adjoint(torch.from_numpy(y0)), 1.0) * 1e3
    print("fixed cost of a Python operator call (empty batch, us): "
          + ", ".join(f"{k} {v:.1f}" for k, v in fixed_us.items()))

    fig = {"|".join(map(str, k)): statistics.median(v) for k, v in per_round.items()}
    rows = []
    print(f"{'op':8} {'batch':>5} {'nfmimo bench':>13} {'python numpy':>13} {'numpy out=':>11} {'torch':>9} "
          f"{'overhead':>9} {'dense matmul':>13} {'dense/ours':>10}   (ms per call, median)")
    for opname in ("adjoint", "deep2s"):
        for b in batches:
            cli = fig.get(f"cli|{opname}|{b}")
            py = fig.get(f"numpy|{opname}|{b}")
            row = {"op": opname, "batch": b, "cli_ms": cli, "python_numpy_ms": py,
                   "python_numpy_out_ms": fig.get(f"numpy-out|{opname}|{b}"),
                   "python_torch_ms": fig.get(f"torch|{opname}|{b}"),
                   "dense_matmul_ms": fig.get(f"dense-matmul|{opname}|{b}")}
            row["overhead"] = py / cli - 1 if cli and py else None
            rows.append(row)
            f = lambda v, w=9: f"{v:{w}.2f}" if v is not None else " " * (w - 1) + "-"
            ratio = row["dense_matmul_ms"] / py if row["dense_matmul_ms"] and py else None
            print(f"{opname:8} {b:5d} {f(cli, 13)} {f(py, 13)} {f(row['python_numpy_out_ms'], 11)} "
                  f"{f(row['python_torch_ms'])} {f(100 * row['overhead'] if row['overhead'] is not None else None, 8)}% "
                  f"{f(row['dense_matmul_ms'], 13)} {f(ratio, 10)}")
    if args.json:
        env = {"fixed_cost_us": fixed_us, "threads": args.threads, "rounds": args.rounds, "seconds": args.seconds, "torch": torch.__version__,
               "numpy": np.__version__, "load_average": os.getloadavg(), "nfmimo": nfmimo.__version__}
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": rows, "per_round_ms": {"|".join(map(str, k)): v
                                                                          for k, v in per_round.items()}}, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The PyTorch peer of `nfmimo bench`: the same operations as a skilled PyTorch user would write them.

The adjoint is the authors' approach: a dense observation matrix A [K*T*R, V] (complex64, 573 MB at K=15) and
x = y @ conj(A) (einsum and matmul forms), in float32, TF32 (GPU), and as a real fp16 GEMM on stacked real and
imaginary parts. Timing: warm-up, then CUDA events (GPU) or perf_counter (CPU), median of the calls, at least
`--min-iters` calls or `--seconds` per row. Output: JSON rows in the schema of `nfmimo bench --json`.

  /usr/bin/python3 tools/bench/torch_reference.py --device cpu --batch 1,8 --json peer.json
"""
import argparse
import json
import math
import os
import platform
import statistics
import time

import numpy as np
import torch

C = 299792458.0


def paper_system(K):
    a_tx = np.linspace(-0.15, 0.15, 12)
    a_rx = np.linspace(-0.15, 0.15, 13)
    tx = np.stack([a_tx, -a_tx, np.zeros_like(a_tx)], 1)
    rx = np.stack([a_rx, a_rx, np.zeros_like(a_rx)], 1)
    return np.linspace(4e9, 16e9, K), tx, rx


def paper_grid():
    return np.linspace(-0.15, 0.15, 25), np.linspace(-0.15, 0.15, 25), np.linspace(0.35, 0.65, 49)


def observation_matrix(freqs, tx, rx, grid):
    """A[(k,t,r), v] = exp(-j kappa (Rt + Rr)) / (4 pi Rt Rr), built in float64 then rounded to complex64."""
    gx, gy, gz = np.meshgrid(*grid, indexing="ij")
    vox = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], 1)  # [V, 3], z fastest
    rt = np.linalg.norm(vox[None, :, :] - tx[:, None, :], axis=2)  # [T, V]
    rr = np.linalg.norm(vox[None, :, :] - rx[:, None, :], axis=2)  # [R, V]
    kappa = 2 * np.pi * freqs / C
    K, T, R, V = len(freqs), len(tx), len(rx), vox.shape[0]
    A = np.empty((K, T, R, V), np.complex64)
    for k in range(K):
        for t in range(T):
            d = rt[t][None, :] + rr  # [R, V]
            A[k, t] = (np.exp(-1j * kappa[k] * d) / (4 * np.pi * rt[t][None, :] * rr)).astype(np.complex64)
    return A.reshape(K * T * R, V)


def time_calls(fn, device, min_iters, seconds, warmup=3):
    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    samples = []
    begin = time.perf_counter()
    while True:
        if device == "cuda":
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            samples.append(s.elapsed_time(e))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        n = len(samples)
        if n >= 3 and (n >= min_iters or time.perf_counter() - begin >= seconds):
            break
    samples.sort()
    q = lambda p: samples[min(len(samples) - 1, int(round(p * (len(samples) - 1))))]
    return {"p50": statistics.median(samples), "p10": q(0.1), "p90": q(0.9), "p99": q(0.99),
            "mean": sum(samples) / len(samples)}, len(samples)


def rel_error(a, ref):
    a = a.detach().to("cpu", torch.complex128).numpy()
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def adjoint_rows(args, device):
    freqs, tx, rx = paper_system(args.freqs)
    A64 = observation_matrix(freqs, tx, rx, paper_grid())
    M, V = A64.shape
    A = torch.from_numpy(A64).to(device)
    AH = A.conj().t().contiguous()  # [V, M]
    rows = []
    max_batch = max(args.batch)
    gen = np.random.default_rng(2)
    y_all = (gen.standard_normal((max_batch, M)) + 1j * gen.standard_normal((max_batch, M))).astype(np.complex64)
    ref0 = (y_all[0].astype(np.complex128) @ np.conj(A64.astype(np.complex128)))  # frame 0, double
    variants = [("einsum", "fp32"), ("matmul", "fp32")]
    if device == "cuda":
        variants += [("matmul", "tf32"), ("real-gemm", "fp16")]
    for variant, precision in variants:
        for batch in args.batch:
            y = torch.from_numpy(y_all[:batch]).to(device)
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            if variant == "einsum":
                fn = lambda: torch.einsum("nm,mv->nv", y, A.conj())
            elif variant == "matmul":
                fn = lambda: y @ AH.t()
            else:
                # [yr, yi] @ [[Ar, -Ai]^T ...]: x = y conj(A) -> xr = yr Ar + yi Ai, xi = yi Ar - yr Ai
                Ar, Ai = A.real.half(), A.imag.half()
                W = torch.cat([torch.cat([Ar, -Ai], 1), torch.cat([Ai, Ar], 1)], 0)  # [2M, 2V]
                yri = torch.cat([y.real, y.imag], 1).half()
                fn = lambda: yri @ W
            stats, iters = time_calls(fn, device, args.min_iters, args.seconds)
            out = fn()
            if variant == "real-gemm":
                out = torch.complex(out[:, :V].float(), out[:, V:].float())
            err = rel_error(out[0], ref0)
            rows.append({"op": "adjoint", "mode": f"dense-{variant}", "device": device, "precision": precision,
                         "batch": batch, "iterations": iters, "latency_ms": stats,
                         "us_per_volume": stats["p50"] * 1e3 / batch,
                         "volumes_per_s": batch / (stats["p50"] * 1e-3),
                         "check": {"relative_error": err, "passed": err <= (1e-2 if precision == "fp16" else 1e-3 if precision == "tf32" else 1e-5)}})
            print(f"peer: adjoint dense-{variant} {precision} {device} batch {batch}: "
                  f"{stats['p50']*1e3/batch:.2f} us/volume (err {err:.1e})", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", default="1,64,512")
    p.add_argument("--freqs", type=int, default=15)
    p.add_argument("--methods", default="adjoint")
    p.add_argument("--min-iters", type=int, default=100)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--json", default="")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (torch's default here is 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.batch = [int(b) for b in args.batch.split(",")]
    torch.backends.cudnn.benchmark = True
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor()}
    rows = []
    for m in args.methods.split(","):
        if m == "adjoint":
            rows += adjoint_rows(args, args.device)
        else:
            raise SystemExit(f"torch_reference.py: unknown method '{m}'")
    report = {"environment": env, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The PyTorch peer of `nfmimo bench`: the same operations as a skilled PyTorch user would write them.

Adjoint (`adjoint`): the authors' approach, a dense observation matrix A [K*T*R, V] (complex64, 573 MB at K=15)
and x = y @ conj(A) (einsum and matmul forms), in float32, TF32 (GPU), and as a real fp16 GEMM on stacked real and
imaginary parts.

Networks (`unet3d`, `unet2d`, `resnet`, `cv-unet3d`): the paper's architectures as torch.nn modules (the same
layers, names aside, as models/nn/architectures.cpp; random weights), inference with batch norm in eval mode.
Pipelines (`deep2s`, `cv-deep2s`, `deep2s-unet2d`, `deep2s-resnet`): dense adjoint (TF32 matmul on the GPU) ->
magnitude (or real/imaginary channels) -> per-sample max normalisation -> network. Training (`train-unet3d`, ...):
forward + MSE + backward + Adam (fused=True where PyTorch has it), batch norm in training mode.

Variants per row (the `mode` field), as a skilled user would try them:
  eager        float32 (TF32 off everywhere) / TF32 (allow_tf32 on) / bf16 or fp16 autocast with channels-last 3D
               memory format; cudnn.benchmark on
  graph        batch 1: the fp16 (networks, pipelines) step captured in a CUDA graph and replayed
  compile      torch.compile (default mode) of the fp16 channels-last model (throughput)
  compile-ro   torch.compile(mode="reduce-overhead") at batch 1 (CUDA graphs inside)
torch.compile needs PyTorch 2 (Debian's 1.13 has none: those variants are skipped with a note); the CPU runs the
eager float32 variants only (16-bit autocast on this CPU is slower than float32).

Checks: the adjoint against the double-precision product; every other row against the peer's own eager float32
output (training: the first step's loss) at the precision's tolerance, so a broken variant shows.

Timing: warm-up, then CUDA events (GPU) or perf_counter (CPU), median of the calls, at least `--min-iters` calls
or `--seconds` per row. Output: JSON rows in the schema of `nfmimo bench --json`.

  /usr/bin/python3 tools/bench/torch_reference.py --device cpu --batch 1,8 --methods adjoint,unet3d --json peer.json
  python3 tools/bench/torch_reference.py --device cuda --methods unet3d,deep2s,train-unet3d --json peer.json
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
import torch.nn as nn
import torch.nn.functional as F

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


# ---- networks ---------------------------------------------------------------------------------------------------
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # Keras's, as the authors used (and our weights files)
ARCHS = {"unet3d": (1, True), "unet2d": (1, False), "cv-unet3d": (2, True), "resnet": (1, None)}
PIPELINES = {"deep2s": "unet3d", "cv-deep2s": "cv-unet3d", "deep2s-unet2d": "unet2d", "deep2s-resnet": "resnet"}


def conv_block(c_in, c_out, kernel):
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, padding="same"),
                         nn.BatchNorm3d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """The paper's U-Net: crop to a multiple of 8, three levels of two conv blocks and 2x2x2 pooling, transposed
    convolutions striding 2 on every axis (2x2x1 kernels for the 2D-kernel variant: output_padding keeps the size),
    skip concatenations, pad back, head block, 1x1x1 convolution, sigmoid."""

    def __init__(self, in_channels, kernels_3d, grid, width=32):
        super().__init__()
        k3 = (3, 3, 3) if kernels_3d else (3, 3, 1)
        up = (2, 2, 2) if kernels_3d else (2, 2, 1)
        self.crop = tuple(n % 8 for n in grid)
        self.enc = nn.ModuleList()
        c_in = in_channels
        for level in range(3):
            c = width << level
            self.enc.append(nn.Sequential(conv_block(c_in, c, k3), conv_block(c, c, k3)))
            c_in = c
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        for level in (2, 1, 0):
            c = width << level
            self.up.append(nn.ConvTranspose3d(c_in, c, up, stride=2, output_padding=tuple(2 - k for k in up)))
            self.dec.append(nn.Sequential(conv_block(2 * c, c, k3), conv_block(c, c, k3)))
            c_in = c
        self.head = conv_block(c_in, 2 * width, k3)
        self.out = nn.Conv3d(2 * width, 1, 1)

    def forward(self, x):
        cx, cy, cz = self.crop
        x = x[:, :, cx:, cy:, cz:]
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        for up, block, skip in zip(self.up, self.dec, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        x = F.pad(x, (cz, 0, cy, 0, cx, 0))
        return torch.sigmoid(self.out(self.head(x)))


class ResNet(nn.Module):
    def __init__(self, width=64, blocks=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, width, 3, padding="same"), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[conv_block(width, width, (3, 3, 3)) for _ in range(blocks)])
        self.out = nn.Conv3d(width, 1, 3, padding="same")

    def forward(self, x):
        return x + self.out(self.blocks(self.stem(x)))


def make_network(arch, grid, width):
    torch.manual_seed(1)
    channels, kernels_3d = ARCHS[arch]
    net = ResNet(width or 64) if arch == "resnet" else UNet(channels, kernels_3d, grid, width or 32)
    with torch.no_grad():  # non-trivial running statistics, as in our benchmark
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net


TOLERANCE = {"fp32": 1e-4, "tf32": 2e-3, "bf16": 3e-2, "fp16": 1e-2}


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def variants(device, batch, can_compile):
    """(mode, precision, channels_last, compile_mode, graph) of the inference variants for one batch size."""
    if device != "cuda":
        return [("eager", "fp32", False, None, False)]
    v = [("eager", "fp32", False, None, False), ("eager", "tf32", False, None, False),
         ("eager", "bf16", True, None, False), ("eager", "fp16", True, None, False)]
    if batch == 1:
        v.append(("graph", "fp16", True, None, True))
    if can_compile:
        v.append(("compile", "fp16", True, "default", False))
        if batch == 1:
            v.append(("compile-ro", "fp16", True, "reduce-overhead", False))
    return v


def compile_available(device, notes):
    if not hasattr(torch, "compile"):
        notes.append(f"torch {torch.__version__} has no torch.compile: the compile variants are skipped")
        return False
    if device != "cuda":
        notes.append("torch.compile variants run on the GPU only")
        return False
    return True


class Runner:
    """Wraps fn(x) in the variant: autocast dtype, channels-last input, CUDA-graph capture or torch.compile."""

    def __init__(self, fn, example, precision, device, graph, compile_mode, channels_last_input=True):
        self.device, self.precision = device, precision
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        set_tf32(precision != "fp32")

        def call(x):
            if dtype is not None:
                with torch.autocast(device_type=device, dtype=dtype):
                    return fn(x)
            return fn(x)

        self.call = torch.compile(call, mode=compile_mode) if compile_mode else call
        self.static_in = example
        self.graph = None
        if graph:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.call(self.static_in)
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_out = self.call(self.static_in)

    def __call__(self):
        if self.graph is not None:
            self.graph.replay()
            return self.static_out
        return self.call(self.static_in)


def row(op, mode, device, precision, batch, stats, iters, err, tol, extra=None):
    r = {"op": op, "mode": mode, "device": device, "precision": precision, "batch": batch, "iterations": iters,
         "latency_ms": stats, "us_per_volume": stats["p50"] * 1e3 / batch,
         "volumes_per_s": batch / (stats["p50"] * 1e-3),
         "check": {"relative_error": err, "tolerance": tol, "passed": bool(err <= tol),
                   "against": "the peer's eager float32 result"}}
    if extra:
        r.update(extra)
    print(f"peer: {op} {mode} {precision} {device} batch {batch}: {r['us_per_volume']:.2f} us/volume "
          f"(err {err:.1e})", flush=True)
    return r


def rel(a, b):
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def network_rows(args, device, arch, notes, can_compile):
    grid = tuple(len(a) for a in paper_grid())
    channels = ARCHS[arch][0]
    net = make_network(arch, grid, args.width).to(device).eval()
    rows = []
    gen = torch.Generator().manual_seed(3)
    x_all = torch.rand((max(args.batch), channels) + grid, generator=gen).to(device)
    for batch in args.batch:
        x = x_all[:batch].contiguous()
        set_tf32(False)
        with torch.no_grad():
            ref = net(x)
        for mode, precision, cl, compile_mode, graph in variants(device, batch, can_compile):
            model = net.to(memory_format=torch.channels_last_3d) if cl else net.to(memory_format=torch.contiguous_format)
            xin = x.to(memory_format=torch.channels_last_3d) if cl else x
            try:
                with torch.no_grad():
                    runner = Runner(model, xin, precision, device, graph, compile_mode)
                    stats, iters = time_calls(runner, device, args.min_iters, args.seconds)
                    err = rel(runner(), ref)
            except Exception as e:  # a variant that does not run here is reported, not fatal
                notes.append(f"{arch} {mode} {precision} batch {batch}: {type(e).__name__}: {e}")
                continue
            rows.append(row(arch, mode, device, precision, batch, stats, iters, err, TOLERANCE[precision]))
    set_tf32(False)
    return rows


def pipeline_rows(args, device, method, notes, can_compile):
    arch = PIPELINES[method]
    grid = tuple(len(a) for a in paper_grid())
    freqs, tx, rx = paper_system(args.freqs)
    A = torch.from_numpy(observation_matrix(freqs, tx, rx, paper_grid())).to(device)
    AH = A.conj().t().contiguous().t()  # [M, V] view whose transpose is contiguous: y @ AH is one GEMM
    net = make_network(arch, grid, args.width).to(device).eval()
    complex_input = ARCHS[arch][0] == 2
    M, V = A.shape
    gen = np.random.default_rng(2)
    y_all = (gen.standard_normal((max(args.batch), M)) + 1j * gen.standard_normal((max(args.batch), M))).astype(np.complex64)
    y_all = torch.from_numpy(y_all).to(device)
    rows = []

    def make_fn(model, channels_last):
        def fn(y):
            a = y @ AH  # the adjoint, complex [n, V] (TF32 when allowed)
            peak = a.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
            a = a / peak
            if complex_input:
                x = torch.stack([a.real, a.imag], dim=1).reshape((-1, 2) + grid)
            else:
                x = a.abs().reshape((-1, 1) + grid)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            return model(x)
        return fn

    for batch in args.batch:
        y = y_all[:batch].contiguous()
        set_tf32(False)
        with torch.no_grad():
            ref = make_fn(net, False)(y)
        for mode, precision, cl, compile_mode, graph in variants(device, batch, can_compile):
            model = net.to(memory_format=torch.channels_last_3d) if cl else net.to(memory_format=torch.contiguous_format)
            try:
                with torch.no_grad():
                    runner = Runner(make_fn(model, cl), y, precision, device, graph, compile_mode)
                    stats, iters = time_calls(runner, device, args.min_iters, args.seconds)
                    err = rel(runner(), ref)
            except Exception as e:
                notes.append(f"{method} {mode} {precision} batch {batch}: {type(e).__name__}: {e}")
                continue
            # The adjoint runs in TF32 (matmul) whenever the variant is not fp32: like the compiled peer figure.
            rows.append(row(method, mode, device, precision, batch, stats, iters, err, TOLERANCE[precision]))
    set_tf32(False)
    return rows


def training_rows(args, device, arch, notes, can_compile):
    grid = tuple(len(a) for a in paper_grid())
    channels = ARCHS[arch][0]
    rows = []
    variants_t = [("eager", "fp32", False, False)] if device != "cuda" else [
        ("eager", "tf32", False, False), ("eager", "bf16", True, False), ("eager", "fp16", True, False)]
    if device == "cuda" and can_compile:
        variants_t.append(("compile", "bf16", True, True))
    for batch in args.train_batch:
        gen = torch.Generator().manual_seed(21)
        x = torch.rand((batch, channels) + grid, generator=gen).to(device)
        t = torch.rand((batch, 1) + grid, generator=gen).to(device)
        set_tf32(False)
        with torch.no_grad():  # the first step's loss in float32, training-mode batch norm
            ref_net = make_network(arch, grid, args.width).to(device).train()
            ref_loss = F.mse_loss(ref_net(x), t).item()
        for mode, precision, cl, compiled in variants_t:
            net = make_network(arch, grid, args.width).to(device).train()
            if cl:
                net = net.to(memory_format=torch.channels_last_3d)
            xin = x.contiguous(memory_format=torch.channels_last_3d) if cl else x
            try:
                fused = {"fused": True} if device == "cuda" else {}
                opt = torch.optim.Adam(net.parameters(), lr=1e-4, eps=1e-7, **fused)
            except (TypeError, RuntimeError):
                opt = torch.optim.Adam(net.parameters(), lr=1e-4, eps=1e-7)
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
            set_tf32(precision != "fp32")
            scaler = torch.cuda.amp.GradScaler() if precision == "fp16" else None
            model = torch.compile(net) if compiled else net
            losses = []

            def step():
                opt.zero_grad(set_to_none=True)
                if dtype is not None:
                    with torch.autocast(device_type=device, dtype=dtype):
                        loss = F.mse_loss(model(xin).float(), t)
                else:
                    loss = F.mse_loss(model(xin), t)
                if scaler:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                losses.append(loss)

            try:
                step()
                first = losses[0].item()
                stats, iters = time_calls(step, device, args.min_iters, args.seconds)
            except Exception as e:
                notes.append(f"train-{arch} {mode} {precision} batch {batch}: {type(e).__name__}: {e}")
                continue
            err = abs(first - ref_loss) / ref_loss
            rows.append(row(f"train-{arch}", mode if device == "cuda" else "eager", device, precision, batch, stats,
                            iters, err, TOLERANCE[precision]))
    set_tf32(False)
    return rows


def compiles(args, op):
    return args.compile_ops == "all" or op in args.compile_ops.split(",")


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
    p.add_argument("--train-batch", default="32")
    p.add_argument("--width", type=int, default=0, help="network width (0: the paper's)")
    p.add_argument("--compile-ops", default="all",
                   help="ops with torch.compile variants: all, none, or a comma list (about a minute per variant)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.batch = [int(b) for b in args.batch.split(",")]
    args.train_batch = [int(b) for b in args.train_batch.split(",")]
    torch.backends.cudnn.benchmark = True
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor(),
           "cudnn": torch.backends.cudnn.version() if args.device == "cuda" else None}
    notes = []
    can_compile = compile_available(args.device, notes)
    rows = []
    for m in args.methods.split(","):
        if m == "adjoint":
            rows += adjoint_rows(args, args.device)
        elif m in ARCHS:
            rows += network_rows(args, args.device, m, notes, can_compile and compiles(args, m))
        elif m in PIPELINES:
            rows += pipeline_rows(args, args.device, m, notes, can_compile and compiles(args, m))
        elif m.startswith("train-") and m[6:] in ARCHS:
            rows += training_rows(args, args.device, m[6:], notes, can_compile and compiles(args, m))
        else:
            notes.append(f"no peer for '{m}'")
    for n in notes:
        print(f"peer: note: {n}", flush=True)
    report = {"environment": env, "rows": rows, "notes": notes}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

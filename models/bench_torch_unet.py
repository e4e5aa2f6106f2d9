#!/usr/bin/python3
"""The PyTorch peer of nfmimo_bench_networks: Debian's python3-torch running the same 3D U-Net (paper grid,
width 32, 2.87 M parameters), eager float32 inference, on this machine's CPU threads.

  /usr/bin/python3 models/bench_torch_unet.py [--batch 8] [--repeat 3] [--arch unet3d|unet2d] [--train]

The network is built by tests/fixtures/make_torch_fixtures.py's functional definition (random weights).
Prints one JSON object per line, like the C++ benchmark.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
import make_torch_fixtures as fx  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--arch", default="unet3d", choices=["unet3d", "unet2d"])
    parser.add_argument("--train", action="store_true", help="also time a training step (batch statistics + backward)")
    args = parser.parse_args()
    builder = fx.Builder(np.random.default_rng(1), np.float32)
    x = torch.rand(args.batch, 1, 25, 25, 49)
    kernels_3d = args.arch == "unet3d"
    with torch.no_grad():
        fx.unet(builder, x, kernels_3d, 32, False)  # creates the parameters (and warms up)
        params = {k: v.detach() for k, v in builder.t.items()}

        class Replay(fx.Builder):
            """Reuses the created parameters instead of drawing new ones."""

            def _param(self, name, shape, values):
                return params[name]

        replay = Replay(np.random.default_rng(1), np.float32)
        fx.unet(replay, x, kernels_3d, 32, False)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fx.unet(replay, x, kernels_3d, 32, False)
            times.append((time.perf_counter() - t0) * 1e3)
    report(args, "inference", times)
    if args.train:
        trainable = {k: v.clone().requires_grad_(not k.endswith(("running_mean", "running_var"))) for k, v in params.items()}

        class Trainable(fx.Builder):
            def _param(self, name, shape, values):
                return trainable[name]

        grad = (torch.rand(args.batch, 1, 25, 25, 49) - 0.5) * 1e-3

        def step():
            out = fx.unet(Trainable(np.random.default_rng(1), np.float32), x, kernels_3d, 32, True)
            (out * grad).sum().backward()

        step()
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        report(args, "train_step", times)


def report(args, phase, times):
    median = sorted(times)[len(times) // 2]
    print(json.dumps({"arch": args.arch, "batch": args.batch, "phase": phase, "median_ms": round(median, 2),
                      "us_per_volume": round(median * 1e3 / args.batch),
                      "device": f"torch {torch.__version__} cpu ({torch.get_num_threads()} threads, eager fp32)"}), flush=True)


if __name__ == "__main__":
    main()

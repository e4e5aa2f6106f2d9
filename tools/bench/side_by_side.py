#!/usr/bin/env python3
"""Runs `nfmimo bench` and the PyTorch peer on the same device in one call and prints one table with the ratio
per row (peer time / our time: above 1 means nfmimo is faster).

For every row of ours (op, mode, precision, batch) the table shows the peer's fastest variant at the same
precision and the peer's fastest variant overall (any precision, eager, CUDA graph or torch.compile), and the
ratio against the latter: the figure a user would compare.

  /usr/bin/python3 tools/bench/side_by_side.py --device cpu --batch 1,8 --methods adjoint,unet3d --out-dir bench-out
  python3 tools/bench/side_by_side.py --device cuda --batch 1,64,512 --methods adjoint,unet3d,deep2s,train-unet3d \\
      --out-dir $OUT

Both JSON reports and a merged one (side_by_side.json) are written to --out-dir, and with --plot a PNG of
throughput against batch size per op (matplotlib, when installed).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def fmt_variant(r):
    return f"{r['mode']} {r['precision']}"


def plot(merged, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("side_by_side: matplotlib is not installed; no plot", file=sys.stderr)
        return
    ops = sorted({m["op"] for m in merged})
    fig, axes = plt.subplots(1, len(ops), figsize=(5 * len(ops), 4), squeeze=False)
    for ax, op in zip(axes[0], ops):
        rows = [m for m in merged if m["op"] == op]
        for who, key in (("nfmimo", "nfmimo"), ("peer", "peer_best")):
            best = {}
            for m in rows:
                r = m[key]
                best[m["batch"]] = max(best.get(m["batch"], 0), r["volumes_per_s"])
            xs = sorted(best)
            ax.plot(xs, [best[x] for x in xs], marker="o", label=who)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(op)
        ax.set_xlabel("batch")
        ax.set_ylabel("volumes / s (best variant)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", default="1,64,512")
    p.add_argument("--train-batch", default="32")
    p.add_argument("--freqs", type=int, default=15)
    p.add_argument("--methods", default="adjoint")
    p.add_argument("--precision", default="fp32,tf32,fp16")
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "nfmimo"))
    p.add_argument("--out-dir", default="bench-out")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--plot", action="store_true", help="write throughput.png (needs matplotlib)")
    p.add_argument("--peer-compile", default="all",
                   help="ops whose torch.compile variants the peer runs: all, none, or a comma list (compiling "
                        "takes about a minute per variant)")
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    ours_json = os.path.join(args.out_dir, "nfmimo.json")
    peer_json = os.path.join(args.out_dir, "torch.json")

    subprocess.run([args.binary, "bench", "--device", args.device, "--batch", args.batch, "--freqs", str(args.freqs),
                    "--methods", args.methods, "--precision", args.precision, "--train-batch", args.train_batch,
                    "--width", str(args.width), "--seconds", str(args.seconds), "--json", ours_json], check=True)
    subprocess.run([args.python, os.path.join(HERE, "torch_reference.py"), "--device", args.device, "--batch",
                    args.batch, "--train-batch", args.train_batch, "--freqs", str(args.freqs), "--methods",
                    args.methods, "--width", str(args.width), "--seconds", str(args.seconds), "--compile-ops",
                    args.peer_compile, "--json", peer_json],
                   check=True)
    ours = json.load(open(ours_json))
    peer = json.load(open(peer_json))

    merged = []
    print(f"\n{'op':<14} {'batch':>6} {'nfmimo':<16} {'us/vol':>10} {'peer, same precision':<24} {'us/vol':>10} "
          f"{'peer, best':<22} {'us/vol':>10} {'ratio':>7}")
    for r in ours["rows"]:
        same = [q for q in peer["rows"] if q["op"] == r["op"] and q["batch"] == r["batch"] and q["device"] == r["device"]]
        if not same:
            continue
        best = min(same, key=lambda q: q["us_per_volume"])
        same_prec = [q for q in same if q["precision"] == r["precision"]]
        best_same = min(same_prec, key=lambda q: q["us_per_volume"]) if same_prec else None
        ratio = best["us_per_volume"] / r["us_per_volume"]
        same_name = fmt_variant(best_same) if best_same else "-"
        same_us = f"{best_same['us_per_volume']:10.2f}" if best_same else f"{'-':>10}"
        print(f"{r['op']:<14} {r['batch']:>6} {fmt_variant(r):<16} {r['us_per_volume']:>10.2f} {same_name:<24} "
              f"{same_us} {fmt_variant(best):<22} {best['us_per_volume']:>10.2f} {ratio:>7.2f}")
        merged.append({"op": r["op"], "batch": r["batch"], "device": r["device"], "nfmimo": r, "peer_best": best,
                       "peer_same_precision": best_same, "peer_all": same, "ratio_peer_over_nfmimo": ratio})
    for n in peer.get("notes", []):
        print(f"peer note: {n}")
    with open(os.path.join(args.out_dir, "side_by_side.json"), "w") as f:
        json.dump({"nfmimo_environment": ours["environment"], "peer_environment": peer["environment"],
                   "ceilings": ours.get("ceilings"), "peer_notes": peer.get("notes", []), "rows": merged}, f, indent=2)
    if args.plot:
        plot(merged, os.path.join(args.out_dir, "throughput.png"))


if __name__ == "__main__":
    main()

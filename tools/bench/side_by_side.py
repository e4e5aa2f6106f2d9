#!/usr/bin/env python3
"""Runs `nfmimo bench` and the PyTorch peer on the same device in one call and prints one table with the ratio
per row (peer time / our time: above 1 means nfmimo is faster).

  /usr/bin/python3 tools/bench/side_by_side.py --device cpu --batch 1,8 --out-dir bench-out
  /usr/bin/python3 tools/bench/side_by_side.py --device cuda --batch 1,64,512 --out-dir $OUT

Both JSON reports and a merged one (side_by_side.json) are written to --out-dir.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", default="1,64,512")
    p.add_argument("--freqs", type=int, default=15)
    p.add_argument("--methods", default="adjoint")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "nfmimo"))
    p.add_argument("--out-dir", default="bench-out")
    p.add_argument("--python", default=sys.executable)
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    ours_json = os.path.join(args.out_dir, "nfmimo.json")
    peer_json = os.path.join(args.out_dir, "torch.json")

    subprocess.run([args.binary, "bench", "--device", args.device, "--batch", args.batch, "--freqs", str(args.freqs),
                    "--methods", args.methods, "--seconds", str(args.seconds), "--json", ours_json], check=True)
    subprocess.run([args.python, os.path.join(HERE, "torch_reference.py"), "--device", args.device, "--batch",
                    args.batch, "--freqs", str(args.freqs), "--methods", args.methods, "--seconds", str(args.seconds),
                    "--json", peer_json], check=True)
    ours = json.load(open(ours_json))
    peer = json.load(open(peer_json))

    merged = []
    print(f"\n{'op':<10} {'batch':>6} {'nfmimo':<22} {'us/vol':>10} {'peer (best)':<28} {'us/vol':>10} {'ratio':>7}")
    for r in ours["rows"]:
        same = [q for q in peer["rows"] if q["op"] == r["op"] and q["batch"] == r["batch"] and q["device"] == r["device"]]
        if not same:
            continue
        best = min(same, key=lambda q: q["us_per_volume"])
        ratio = best["us_per_volume"] / r["us_per_volume"]
        ours_name = f"{r['mode']} {r['precision']}"
        peer_name = f"{best['mode']} {best['precision']}"
        print(f"{r['op']:<10} {r['batch']:>6} {ours_name:<22} {r['us_per_volume']:>10.2f} {peer_name:<28} "
              f"{best['us_per_volume']:>10.2f} {ratio:>7.2f}")
        merged.append({"op": r["op"], "batch": r["batch"], "device": r["device"], "nfmimo": r, "peer_best": best,
                       "peer_all": same, "ratio_peer_over_nfmimo": ratio})
    with open(os.path.join(args.out_dir, "side_by_side.json"), "w") as f:
        json.dump({"nfmimo_environment": ours["environment"], "peer_environment": peer["environment"],
                   "ceilings": ours.get("ceilings"), "rows": merged}, f, indent=2)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""tools/scripts/results_table.py's `splice` (docs/results.md's marked blocks) and `records` (training records from
the trainer's logs); standard library only: run directly or through CTest."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "scripts", "results_table.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class Splice(unittest.TestCase):
    def test_replaces_only_the_marked_block(self):
        with tempfile.TemporaryDirectory() as d:
            doc, table = os.path.join(d, "results.md"), os.path.join(d, "t.md")
            with open(doc, "w") as f:
                f.write("intro\n<!-- results.sh: a -->\nold 1\nold 2\n<!-- /results.sh: a -->\noutro\n")
            with open(table, "w") as f:
                f.write("| new |\n")
            r = run("splice", doc, f"a={table}")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(doc) as f:
                self.assertEqual(f.read(),
                                 "intro\n<!-- results.sh: a -->\n| new |\n<!-- /results.sh: a -->\noutro\n")

    def test_refuses_a_missing_block_and_leaves_the_page(self):
        with tempfile.TemporaryDirectory() as d:
            doc, table = os.path.join(d, "results.md"), os.path.join(d, "t.md")
            with open(doc, "w") as f:
                f.write("no markers\n")
            with open(table, "w") as f:
                f.write("x\n")
            r = run("splice", doc, f"b={table}")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("<!-- results.sh: b -->", r.stderr)
            with open(doc) as f:
                self.assertEqual(f.read(), "no markers\n")


class Records(unittest.TestCase):
    def test_a_trainer_log_gives_minutes_scenes_validation_and_slope(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "models"))
            # Three epochs of 1 000 scenes gaining 0.5 dB each: the slope over the last two is +0.50 dB per 1 000.
            epochs = [{"epoch": n, "samples": 1000 * n, "elapsed_s": 600.0 * n, "val_psnr_db": 20 + 0.5 * n,
                       "val_ssim_3d": 0.5, "partial": False} for n in (1, 2, 3)]
            with open(os.path.join(d, "models", "deep2s_k10_snr20.log.json"), "w") as f:
                json.dump({"epochs": epochs, "run": {"init_from": "/x/deep2s_paper_k15_snr30.h5"}}, f)
            r = run("records", d, "k10_snr20")
            self.assertEqual(r.returncode, 0, r.stderr)
            row = [line for line in r.stdout.splitlines() if line.startswith("| deep2s |")]
            self.assertEqual(row, ["| deep2s | k10_snr20 | from `deep2s_paper_k15_snr30.h5` | 30 | 3000 | 21.50 | "
                                   "0.500 | +0.50 |"])
            self.assertIn("| cv-deep2s | k10_snr20 | (no record) |", r.stdout)


if __name__ == "__main__":
    unittest.main()

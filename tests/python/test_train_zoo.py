#!/usr/bin/env python3
"""tools/scripts/train_zoo.py's bookkeeping, with a stand-in for `nfmimo train` (standard library only: run
directly or through CTest): sessions resume from their checkpoint with the same arguments, the best weights are
replaced only when the validation improves, every call is logged, a transfer model starts from its source's best,
and a new session starts from the best with fresh scenes and a lower peak learning rate."""
import csv
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "scripts", "train_zoo.py")

# Writes what `nfmimo train` writes (log.json/csv, checkpoint, output) and records its arguments. Each call
# validates FAKE_PSNR dB / FAKE_SSIM and completes at most FAKE_EPOCHS epochs of the run (a time budget).
FAKE = textwrap.dedent("""\
    #!/usr/bin/env python3
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    out = args[args.index("--out") + 1]
    stem = out[:-3]
    epochs = int(args[args.index("--epochs") + 1])
    log = stem + ".log.json"
    if "--resume" in args and os.path.exists(stem + ".checkpoint.h5"):
        records = json.load(open(log))["epochs"]
    else:
        records = []
    for _ in range(int(os.environ.get("FAKE_EPOCHS", "1000"))):
        if len(records) >= epochs:
            break
        n = len(records) + 1
        records.append({"epoch": n, "partial": False, "steps": 32 * n, "samples": 128 * n, "train_loss": 0.01,
                        "learning_rate": 1e-4, "gradient_norm": 1, "val_loss": 0.01,
                        "val_psnr_db": float(os.environ["FAKE_PSNR"]) + 0.01 * n,
                        "val_ssim_3d": float(os.environ["FAKE_SSIM"]), "val_ssim_2d": 0.1, "samples_per_s": 2.0,
                        "epoch_s": 64, "elapsed_s": 64.0 * n})
    json.dump({"epochs": records}, open(log, "w"))
    open(stem + ".log.csv", "w").write("epoch\\n" + "".join(f"{r['epoch']}\\n" for r in records))
    open(stem + ".checkpoint.h5", "w").write("checkpoint")
    open(out, "w").write("weights psnr " + os.environ["FAKE_PSNR"])
""")


class TrainZoo(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        self.fake = os.path.join(d, "nfmimo")
        with open(self.fake, "w") as f:
            f.write(FAKE)
        os.chmod(self.fake, 0o755)
        self.shipped = os.path.join(d, "trained")
        self.work = os.path.join(d, "work")
        self.calls = os.path.join(d, "calls.jsonl")
        os.makedirs(self.shipped)

    def tearDown(self):
        self.tmp.cleanup()

    def zoo(self, models, psnr, ssim=0.3, epochs=1000, budget="30m", check=True):
        env = dict(os.environ, FAKE_CALLS=self.calls, FAKE_PSNR=str(psnr), FAKE_SSIM=str(ssim),
                   FAKE_EPOCHS=str(epochs))
        r = subprocess.run([sys.executable, SCRIPT, "--models", models, "--budget", budget, "--work", self.work,
                            "--nfmimo", self.fake, "--shipped", self.shipped], env=env, capture_output=True,
                           text=True)
        if check:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def last_call(self):
        with open(self.calls) as f:
            return json.loads(f.read().splitlines()[-1])

    def state(self, stem):
        with open(os.path.join(self.shipped, "zoo", stem + ".json")) as f:
            return json.load(f)

    def runs(self, stem):
        with open(os.path.join(self.shipped, "zoo", stem + ".runs.csv")) as f:
            return list(csv.DictReader(f))

    def shipped_text(self, stem):
        with open(os.path.join(self.shipped, stem + ".h5")) as f:
            return f.read()

    def test_sessions_resume_keep_only_improvements_and_log_every_call(self):
        stem = "deep2s_paper_k15_snr30"
        # Call 1: a new session from random weights (nothing shipped), cut after 2 epochs: kept (first), open.
        self.zoo("deep2s", 20.0, epochs=2)
        first = self.last_call()
        self.assertIn("--force", first)
        self.assertNotIn("--init", first)
        planned = int(first[first.index("--epochs") + 1])
        self.assertGreater(planned, 2)
        s = self.state(stem)
        self.assertEqual(s["sessions"], 1)
        self.assertIsNotNone(s["open"])
        self.assertEqual(self.shipped_text(stem), "weights psnr 20.0")
        self.assertEqual(s["samples"], 256)

        # Call 2: the same session resumes with the same arguments (schedule position in its checkpoint) and
        # completes; a better validation replaces the shipped weights; the session closes.
        self.zoo("deep2s", 21.0)
        second = self.last_call()
        self.assertIn("--resume", second)
        strip = lambda a: [x for i, x in enumerate(a) if x not in ("--force", "--resume")
                           and (i == 0 or a[i - 1] != "--time-budget") and x != "--time-budget"]
        self.assertEqual(strip(first), strip(second))
        s = self.state(stem)
        self.assertIsNone(s["open"])
        self.assertEqual(self.shipped_text(stem), "weights psnr 21.0")
        self.assertEqual(s["samples"], 128 * planned)

        # Call 3: a new session from the best, with fresh scenes and a lower peak rate; worse: not kept.
        self.zoo("deep2s", 15.0)
        third = self.last_call()
        self.assertEqual(third[third.index("--data-seed") + 1], "102")
        self.assertEqual(first[first.index("--data-seed") + 1], "101")
        self.assertLess(float(third[third.index("--lr") + 1]), float(first[first.index("--lr") + 1]))
        init = third[third.index("--init") + 1]
        with open(init) as f:
            self.assertEqual(f.read(), "weights psnr 21.0")
        self.assertEqual(self.shipped_text(stem), "weights psnr 21.0")
        rows = self.runs(stem)
        self.assertEqual([r["kept"] for r in rows], ["1", "1", "0"])
        self.assertEqual([r["session"] for r in rows], ["1", "1", "2"])
        self.assertTrue(os.path.exists(os.path.join(self.shipped, "zoo", stem + ".s2.log.csv")))

        # Same PSNR, much better SSIM: an improvement; better PSNR bought with SSIM: not one.
        self.zoo("deep2s", 21.0, ssim=0.6)
        self.assertEqual(self.runs(stem)[-1]["kept"], "1")
        self.zoo("deep2s", 23.0, ssim=0.2)
        self.assertEqual(self.runs(stem)[-1]["kept"], "0")

    def test_a_transfer_model_starts_from_its_sources_best(self):
        r = self.zoo("deep2s-unet2d", 20.0, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("train deep2s first", r.stdout + r.stderr)
        self.zoo("deep2s", 25.0)
        self.zoo("deep2s-unet2d", 22.0)
        call = self.last_call()
        self.assertEqual(call[call.index("--arch") + 1], "unet2d")
        with open(call[call.index("--init") + 1]) as f:
            self.assertEqual(f.read(), "weights psnr 25.0")

    def test_a_session_whose_checkpoint_is_gone_is_closed_and_a_new_one_starts(self):
        self.zoo("deep2s", 20.0, epochs=1)
        os.remove(os.path.join(self.work, "deep2s", "s1.checkpoint.h5"))  # another machine
        r = self.zoo("deep2s", 21.0)
        self.assertIn("is closed", r.stdout)
        call = self.last_call()
        self.assertIn("--force", call)
        self.assertEqual(call[call.index("--data-seed") + 1], "102")
        with open(call[call.index("--init") + 1]) as f:
            self.assertEqual(f.read(), "weights psnr 20.0")


if __name__ == "__main__":
    unittest.main()

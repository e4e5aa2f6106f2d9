#!/usr/bin/python3
"""Hostile-input probe of the nfmimo CLI (docs/reliability.md).

Runs several hundred bad or edge inputs over every subcommand, as a hostile or careless user would: damaged
and lying HDF5 files (huge declared sizes, NaN, wrong shapes), bad numbers (nan, inf, negative, 1e18, 20-digit
counts), FIFOs, directories and devices as inputs, colliding and unwritable output paths, a full disk (a small
tmpfs, when mounting works), signals mid-run and concurrent writers to one output.

Each case expects one outcome:
  ok       exit 0 and every declared output is valid (the program's own `info` reads it, values finite);
  refuse   exit 2 with an "error:" message, no file left behind, nothing the user had changed;
  either   ok or refuse (edge values where both are reasonable; a success must still be valid);
and a few custom ones (interrupt, concurrent) explained where they are built. Every run is classified as
  ok | crash (signal, sanitizer report) | hang (timeout) | memory (hit the address-space cap or "out of host
  memory") | wrong_success (exit 0 where a refusal was due, or an invalid output) | wrong_refusal (a valid
  input refused) | leftover (a file left behind after a refusal) | clobbered (a file the user had changed) |
  bad_exit (an exit code other than 0/2, e.g. 1 = internal error) | bad_message (exit 2 without a message)

  tools/scripts/probe.py --binary build/nfmimo --out probe.json [--only SUBSTRING] [--keep-inputs DIR]

Needs Debian's python3 with h5py and numpy. Runs one case at a time with OMP_NUM_THREADS=1.
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

SMALL_GRID = "-0.05:0.05:5,-0.05:0.05:5,0.45:0.55:5"
NET_GRID = "-0.05:0.05:8,-0.05:0.05:8,0.45:0.55:8"
K = "4"
AS_CAP = 4 << 30  # address-space cap of every run (bytes)
CLASSES = ["ok", "crash", "hang", "memory", "wrong_success", "wrong_refusal", "leftover", "clobbered",
           "bad_exit", "bad_message", "probe_error"]


class Case:
    def __init__(self, name, argv, expect="refuse", outputs=(), setup=None, timeout=30, group=None,
                 runner=None, message=None, threads_env=True):
        self.name = name
        self.argv = argv            # list (after the binary); "{d}" is replaced by the case folder
        self.expect = expect        # ok | refuse | either | custom (runner decides)
        self.outputs = list(outputs)  # files a success must produce (relative to the case folder)
        self.setup = setup          # callable(case_dir) preparing inputs
        self.timeout = timeout
        self.group = group or name.split("/")[0]
        self.runner = runner        # callable(probe, case, case_dir) -> (class, detail) for custom cases
        self.message = message      # substring a refusal's message must contain (lower case), if any
        self.threads_env = threads_env


class Probe:
    def __init__(self, binary, work):
        self.binary = os.path.abspath(binary)
        self.work = work
        self.fix = os.path.join(work, "fixtures")
        os.makedirs(self.fix)
        self.full_mount = None
        self.tight_mount = None
        self.ro_mount = None
        self.notes = []

    # ---------------------------------------------------------------------------------------------- running
    def env(self, threads=True):
        e = dict(os.environ)
        if threads:
            e["OMP_NUM_THREADS"] = "1"
        e["OMP_WAIT_POLICY"] = "passive"
        e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "allocator_may_return_null=1:detect_leaks=0")
        return e

    @staticmethod
    def _limits():
        resource.setrlimit(resource.RLIMIT_AS, (AS_CAP, AS_CAP))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # A probe started in the background of a non-interactive shell inherits SIGINT/SIGQUIT ignored, and so
        # would every run: give them the default action a user's terminal gives, so the signal cases mean it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)

    def start(self, argv, cwd, threads=True):
        return subprocess.Popen([self.binary] + argv, cwd=cwd, env=self.env(threads), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=self._limits,
                                start_new_session=True)

    def finish(self, proc, timeout):
        """Waits for proc; returns dict(rc, timed_out, stdout, stderr, maxrss_mb, seconds)."""
        t0 = time.monotonic()
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        def clip(b):  # the head names the error, the tail holds sanitizer reports
            t = b.decode(errors="replace")
            return t if len(t) <= 4000 else t[:2000] + "\n[...]\n" + t[-2000:]
        return {"rc": proc.returncode, "timed_out": timed_out, "stdout": clip(out), "stderr": clip(err),
                "seconds": round(time.monotonic() - t0, 2),
                "children_maxrss_mb": ru.ru_maxrss // 1024}

    def run(self, argv, cwd, timeout=60, threads=True):
        return self.finish(self.start(argv, cwd, threads), timeout)

    # ------------------------------------------------------------------------------------------- checking
    def valid_output(self, path):
        """None when the file is a valid output of its kind, else what is wrong."""
        if not os.path.isfile(path):
            return "missing"
        if os.path.getsize(path) == 0:
            return "empty"
        ext = os.path.splitext(path)[1].lower()
        with open(path, "rb") as f:
            head = f.read(16)
        if ext == ".png":
            return None if head.startswith(b"\x89PNG\r\n\x1a\n") else "not a PNG"
        if ext == ".vti":
            with open(path, "rb") as f:
                text = f.read()
            return None if b"<VTKFile" in text[:400] and text.rstrip().endswith(b"</VTKFile>") else "bad VTI"
        if ext == ".json":
            try:
                with open(path) as f:
                    json.load(f)
                return None
            except ValueError as e:
                return f"bad JSON: {e}"
        if ext == ".csv":
            with open(path) as f:
                lines = [ln for ln in f.read().splitlines() if ln]
            if not lines or len({ln.count(",") for ln in lines}) != 1:
                return "ragged CSV"
            return None
        if ext == ".h5" or head.startswith(b"\x89HDF"):
            r = self.run(["info", path], os.path.dirname(path) or ".", timeout=60)
            if r["rc"] != 0:
                return "nfmimo info refuses it: " + r["stderr"].strip()[-300:]
            try:
                with h5py.File(path, "r") as f:
                    bad = []

                    def visit(name, obj):
                        if isinstance(obj, h5py.Dataset) and obj.size and obj.size < 50_000_000:
                            v = obj[()]
                            if v.dtype.names:
                                v = np.stack([v[n] for n in v.dtype.names])
                            # /snr_db holds +inf for noiseless samples (docs/synthesizer.md).
                            finite = np.isnan(v) if name.endswith("snr_db") else ~np.isfinite(v)
                            if v.dtype.kind in "fc" and finite.any():
                                bad.append(name)
                    f.visititems(visit)
                    if bad:
                        return "non-finite values in " + ", ".join(bad)
            except OSError as e:
                return f"h5py cannot read it: {e}"
        return None

    @staticmethod
    def snapshot(d):
        """{relative path: sha256 or 'dir'/'fifo'} of everything under d."""
        snap = {}
        for root, dirs, files in os.walk(d):
            for name in dirs + files:
                p = os.path.join(root, name)
                rel = os.path.relpath(p, d)
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    continue
                if os.path.isdir(p) and not os.path.islink(p):
                    snap[rel] = "dir"
                elif not os.path.isfile(p) or os.path.islink(p):
                    snap[rel] = f"special:{st.st_mode:o}"
                else:
                    h = hashlib.sha256()
                    with open(p, "rb") as f:
                        for block in iter(lambda: f.read(1 << 20), b""):
                            h.update(block)
                    snap[rel] = h.hexdigest()
        return snap

    def classify(self, case, d, before, r):
        err = r["stderr"]
        if r["timed_out"]:
            return "hang", f"no exit after {case.timeout} s"
        if r["rc"] < 0:
            return "crash", f"killed by signal {-r['rc']}: {err.strip()[-300:]}"
        if "AddressSanitizer" in err or "runtime error:" in err or "LeakSanitizer" in err:
            return "crash", "sanitizer report: " + err.strip()[-300:]
        if "out of host memory" in err or "std::bad_alloc" in err:
            return "memory", err.strip()[-300:]
        after = self.snapshot(d)
        changed = [p for p, h in before.items() if after.get(p) != h and h != "dir"]
        new = sorted(p for p in after if p not in before)
        if r["rc"] == 0:
            if case.expect == "refuse":
                return "wrong_success", "exit 0: " + (r["stdout"].strip()[-200:] or "(no output)")
            for out in case.outputs:
                bad = self.valid_output(os.path.join(d, out))
                if bad:
                    return "wrong_success", f"exit 0 but {out}: {bad}"
            temporaries = [p for p in new if ".tmp" in p and p not in case.outputs]
            if temporaries:
                return "leftover", "temporary files after success: " + ", ".join(temporaries)
            return "ok", ""
        if r["rc"] == 2:
            if case.expect == "ok":
                return "wrong_refusal", err.strip()[-300:]
            if new:
                return "leftover", "left after exit 2: " + ", ".join(new[:5])
            if changed:
                return "clobbered", "changed by a refused run: " + ", ".join(changed[:5])
            if not err.strip():
                return "bad_message", "exit 2 without a message"
            if case.message and case.message not in err.lower():
                return "bad_message", f"message lacks '{case.message}': {err.strip()[-200:]}"
            return "ok", ""
        return "bad_exit", f"exit {r['rc']}: {err.strip()[-300:]}"

    def run_case(self, case, index):
        d = os.path.join(self.work, f"case{index:04d}")
        os.makedirs(d)
        if case.setup:
            case.setup(d)
        if case.runner:
            t0 = time.monotonic()
            cls, detail = case.runner(self, case, d)
            return {"class": cls, "detail": detail, "seconds": round(time.monotonic() - t0, 2)}
        before = self.snapshot(d)
        argv = [a.replace("{d}", d) for a in case.argv]
        r = self.run(argv, d, case.timeout, case.threads_env)
        cls, detail = self.classify(case, d, before, r)
        for m in (self.full_mount, self.tight_mount):  # shared by every case: leave it as it was
            left = sorted(p for p in os.listdir(m) if p != "filler") if m else []
            if left and cls == "ok" and case.expect == "refuse":
                cls, detail = "leftover", "left on the shared disk: " + ", ".join(left[:5])
            for p in left:
                path = os.path.join(m, p)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        return {"class": cls, "detail": detail, "rc": r["rc"], "seconds": r["seconds"],
                "stderr": r["stderr"].strip()[-400:]}

    # ------------------------------------------------------------------------------------------- fixtures
    def make_fixtures(self):
        f = self.fix
        steps = [
            ["simulate", "--points", "0,0,0.5,1;0.02,-0.02,0.48,0.6", "--freqs", K, "--grid", SMALL_GRID,
             "--snr", "30", "--out", f"{f}/meas.h5"],
            ["synthesize", "--out", f"{f}/ds.h5", "--count", "4", "--freqs", K, "--grid", SMALL_GRID, "--device",
             "cpu", "--batch", "4", "--seed", "1"],
            ["synthesize", "--out", f"{f}/shard0.h5", "--count", "4", "--shard", "0/2", "--freqs", K, "--grid",
             SMALL_GRID, "--device", "cpu", "--batch", "2", "--seed", "1"],
            ["synthesize", "--out", f"{f}/shard1.h5", "--count", "4", "--shard", "1/2", "--freqs", K, "--grid",
             SMALL_GRID, "--device", "cpu", "--batch", "2", "--seed", "1"],
            ["synthesize", "--out", f"{f}/otherseed1.h5", "--count", "4", "--shard", "1/2", "--freqs", K, "--grid",
             SMALL_GRID, "--device", "cpu", "--batch", "2", "--seed", "2"],
            ["synthesize", "--out", f"{f}/netds.h5", "--count", "4", "--freqs", K, "--grid", NET_GRID, "--device",
             "cpu", "--batch", "4", "--seed", "3"],
            ["synthesize", "--out", f"{f}/netval.h5", "--count", "2", "--freqs", K, "--grid", NET_GRID, "--device",
             "cpu", "--batch", "2", "--seed", "4"],
            ["train", "--arch", "resnet", "--data", f"{f}/netds.h5", "--val", f"{f}/netval.h5", "--freqs", K,
             "--grid", NET_GRID, "--epochs", "1", "--batch", "2", "--width", "2", "--blocks", "1", "--device",
             "cpu", "--out", f"{f}/w.h5"],
            ["synthesize", "--out", f"{f}/part.h5", "--count", "8", "--freqs", K, "--grid", SMALL_GRID, "--device",
             "cpu", "--batch", "2", "--seed", "1", "--stop-after", "2"],
        ]
        for argv in steps:
            r = self.run(argv, f, timeout=600)
            if r["rc"] not in (0, 130):
                sys.exit(f"probe: fixture step failed: nfmimo {' '.join(argv)}\n{r['stderr']}")
        for name in ["meas.h5", "ds.h5", "shard0.h5", "shard1.h5", "w.h5", "part.h5.partial", "netds.h5"]:
            if not os.path.isfile(os.path.join(f, name)):
                sys.exit(f"probe: fixture {name} was not made")
        self.make_hostile_files()
        self.try_mounts()

    def try_mounts(self):
        full = os.path.join(self.work, "full")
        ro = os.path.join(self.work, "ro")
        os.makedirs(full)
        os.makedirs(ro)
        if os.geteuid() != 0 or shutil.which("mount") is None:
            self.notes.append("not root: full-disk and read-only-folder cases skipped")
            return
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "nfmimo-probe-full", full],
                          capture_output=True).returncode == 0:
            self.full_mount = full
            # Completely full: a name can still be created (tmpfs), no data block can.
            with open(os.path.join(full, "filler"), "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\0" * 4096)
                except OSError:
                    pass
        else:
            self.notes.append("mount failed: full-disk cases skipped")
        # A nearly full disk: room for a file's first blocks but not for all of it (the case where buffered
        # writes fail only at flush or close).
        tight = os.path.join(self.work, "tight")
        os.makedirs(tight)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "nfmimo-probe-tight", tight],
                          capture_output=True).returncode == 0:
            self.tight_mount = tight
            with open(os.path.join(tight, "filler"), "wb") as fh:
                fh.write(b"\0" * (256 * 1024 - 40 * 1024))
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "nfmimo-probe-ro", ro],
                          capture_output=True).returncode == 0:
            self.ro_mount = ro
        else:
            self.notes.append("mount failed: read-only-folder cases skipped")

    def unmount(self):
        for m in (self.full_mount, self.tight_mount, self.ro_mount):
            if m:
                subprocess.run(["umount", "-l", m], capture_output=True)

    def make_hostile_files(self):
        """Hostile measurement, dataset and weights files: self.hostile[kind] = [(name, expect)]."""
        h = os.path.join(self.fix, "hostile")
        os.makedirs(h)
        meas = os.path.join(self.fix, "meas.h5")
        self.hostile = {"measurements": [], "dataset": [], "weights": []}

        def variant(kind, name, edit, expect="refuse", base=None):
            path = os.path.join(h, name)
            shutil.copy(base or meas, path)
            with h5py.File(path, "r+") as f:
                edit(f)
            self.hostile[kind].append((name, expect))

        def raw(kind, name, data, expect="refuse"):
            with open(os.path.join(h, name), "wb") as fh:
                fh.write(data)
            self.hostile[kind].append((name, expect))

        def fresh(kind, name, build, expect="refuse"):
            with h5py.File(os.path.join(h, name), "w") as f:
                build(f)
            self.hostile[kind].append((name, expect))

        with open(meas, "rb") as fh:
            mbytes = fh.read()
        raw("measurements", "empty.h5", b"")
        raw("measurements", "text.h5", b"x,y,z\n1,2,3\n")
        raw("measurements", "half.h5", mbytes[: len(mbytes) // 2])
        raw("measurements", "head1k.h5", mbytes[:1024])
        raw("measurements", "superblock_only.h5", mbytes[:96])
        flipped = bytearray(mbytes)
        for i in range(len(flipped) // 2, len(flipped), 97):
            flipped[i] ^= 0xFF
        raw("measurements", "bitflips.h5", bytes(flipped))
        raw("measurements", "zeros.h5", b"\0" * 4096)
        with h5py.File(meas, "r") as f:
            freqs = f["system/frequencies"][()]
            tx = f["system/tx_positions"][()]
            rx = f["system/rx_positions"][()]
            y = f["measurements"][()]
            attrs = dict(f.attrs)
        Kn, T, R = len(freqs), len(tx), len(rx)
        cdt = np.dtype([("r", "<f4"), ("i", "<f4")])

        def base_file(f, frames_shape=None, meas_data=True):
            for k, v in attrs.items():
                f.attrs[k] = v
            f["system/frequencies"] = freqs
            f["system/tx_positions"] = tx
            f["system/rx_positions"] = rx
            if meas_data:
                f["measurements"] = y

        def del_attr(a):
            return lambda f: f.attrs.__delitem__(a)

        def set_attr(a, v):
            return lambda f: f.attrs.__setitem__(a, v)

        def replace(name, value):
            def edit(f):
                del f[name]
                f[name] = value
            return edit

        def remove(name):
            return lambda f: f.__delitem__(name)

        M = "measurements"
        variant(M, "no_format.h5", del_attr("nfmimo_format"))
        variant(M, "format_volumes.h5", set_attr("nfmimo_format", "volumes"))
        variant(M, "format_bogus.h5", set_attr("nfmimo_format", "x" * 10000))
        variant(M, "version99.h5", set_attr("nfmimo_version", 99))
        variant(M, "version_string.h5", set_attr("nfmimo_version", "1"))
        variant(M, "version_negative.h5", set_attr("nfmimo_version", -1))
        variant(M, "no_measurements.h5", remove("measurements"))
        variant(M, "no_frequencies.h5", remove("system/frequencies"))
        variant(M, "no_system.h5", remove("system"))
        variant(M, "freq_negative.h5", replace("system/frequencies", -freqs))
        variant(M, "freq_zero.h5", replace("system/frequencies", freqs * 0))
        variant(M, "freq_nan.h5", replace("system/frequencies", freqs * np.nan))
        variant(M, "freq_inf.h5", replace("system/frequencies", freqs * np.inf))
        variant(M, "freq_empty.h5", replace("system/frequencies", np.zeros(0)))
        variant(M, "freq_2d.h5", replace("system/frequencies", freqs.reshape(1, -1)))
        variant(M, "freq_string.h5", replace("system/frequencies", np.array([b"4e9"] * Kn)))
        variant(M, "freq_int.h5", replace("system/frequencies", freqs.astype(np.int64)), expect="either")
        variant(M, "freq_1e300.h5", replace("system/frequencies", freqs * 1e290), expect="either")
        variant(M, "freq_tiny.h5", replace("system/frequencies", freqs * 1e-300), expect="either")
        variant(M, "tx_2cols.h5", replace("system/tx_positions", tx[:, :2]))
        variant(M, "tx_empty.h5", replace("system/tx_positions", np.zeros((0, 3))))
        variant(M, "rx_nan.h5", replace("system/rx_positions", rx * np.nan))
        variant(M, "rx_huge.h5", replace("system/rx_positions", rx + 1e300), expect="either")
        variant(M, "meas_nan.h5", replace("measurements", (y.view(np.float32) * np.nan).view(y.dtype)))
        yi = y.copy()
        yi.view(np.float32).reshape(-1)[3] = np.inf
        variant(M, "meas_inf.h5", replace("measurements", yi))
        variant(M, "meas_real.h5", replace("measurements", np.ones(y.shape, np.float32)))
        variant(M, "meas_int.h5", replace("measurements", np.ones(y.shape, np.int32)))
        variant(M, "meas_wrong_k.h5", replace("measurements", np.zeros((1, Kn + 1, T, R), cdt)))
        variant(M, "meas_rank5.h5", replace("measurements", np.zeros((1, 1, Kn, T, R), cdt)))
        variant(M, "meas_rank1.h5", replace("measurements", np.zeros((Kn * T * R,), cdt)))
        variant(M, "meas_zero_frames.h5", replace("measurements", np.zeros((0, Kn, T, R), cdt)))
        variant(M, "meas_group.h5", lambda f: (f.__delitem__("measurements"), f.create_group("measurements")))
        variant(M, "meas_re_im.h5", replace("measurements", np.zeros(y.shape, [("re", "<f4"), ("im", "<f4")])))
        variant(M, "meas_3members.h5",
                replace("measurements", np.zeros(y.shape, [("r", "<f4"), ("i", "<f4"), ("x", "<f4")])))
        variant(M, "meas_complex128.h5", replace("measurements", y.astype(np.complex128)), expect="ok")
        yd = np.zeros(y.shape, [("r", "<f8"), ("i", "<f8")])
        yd["r"], yd["i"] = y.real, y.imag
        variant(M, "meas_cdouble_compound.h5", replace("measurements", yd), expect="ok")
        variant(M, "meas_gzip.h5", lambda f: (f.__delitem__("measurements"),
                                              f.create_dataset("measurements", data=y, compression="gzip",
                                                               shuffle=True, chunks=True)), expect="ok")
        variant(M, "meas_softlink_missing.h5",
                lambda f: (f.__delitem__("measurements"), f.__setitem__("measurements", h5py.SoftLink("/nowhere"))))
        variant(M, "meas_extlink.h5",
                lambda f: (f.__delitem__("measurements"),
                           f.__setitem__("measurements", h5py.ExternalLink("/nonexistent.h5", "/m"))))
        variant(M, "system_dataset.h5", lambda f: (f.__delitem__("system"), f.__setitem__("system", [1, 2, 3])))
        variant(M, "grid_nonuniform.h5", replace("grid/x", np.array([-0.05, -0.04, 0.0, 0.03, 0.05])))
        variant(M, "grid_on_antenna.h5", replace("grid/z", np.array([0.0, 0.1, 0.2, 0.3, 0.4])))
        variant(M, "grid_nan.h5", replace("grid/y", np.full(5, np.nan)))
        variant(M, "grid_empty.h5", replace("grid/x", np.zeros(0)))
        variant(M, "grid_missing_z.h5", remove("grid/z"))
        variant(M, "targets_bad_shape.h5", replace("targets", np.zeros((1, 2, 2, 2), cdt)))
        variant(M, "targets_nan.h5", lambda f: f["targets"].__setitem__((0, 0, 0, 0), complex(np.nan, 0)))
        variant(M, "snr_wrong_length.h5", replace("snr_db", np.zeros(7, np.float32)))
        # Huge declared sizes: chunked datasets that are never written stay a few KB on disk.
        fresh(M, "huge_freqs_1e9.h5", lambda f: (
            base_file(f, meas_data=False),
            f.__delitem__("system/frequencies"),
            f.create_dataset("system/frequencies", shape=(10**9,), dtype="f8", chunks=(4096,), fillvalue=4e9),
            f.create_dataset("measurements", shape=(1, 10**9, T, R), dtype=cdt, chunks=(1, 64, T, R))))
        fresh(M, "huge_frames_1e9.h5", lambda f: (
            base_file(f, meas_data=False),
            f.create_dataset("measurements", shape=(10**9, Kn, T, R), dtype=cdt, chunks=(1, Kn, T, R))))
        fresh(M, "huge_tx_1e8.h5", lambda f: (
            base_file(f, meas_data=False),
            f.__delitem__("system/tx_positions"),
            f.create_dataset("system/tx_positions", shape=(10**8, 3), dtype="f8", chunks=(4096, 3), fillvalue=0.1),
            f.create_dataset("measurements", shape=(1, Kn, 10**8, R), dtype=cdt, chunks=(1, 1, 4096, R))))
        fresh(M, "huge_grid_1e9.h5", lambda f: (
            base_file(f),
            f.create_dataset("grid/x", shape=(10**9,), dtype="f8", chunks=(4096,)),
            f.__setitem__("grid/y", np.linspace(-0.05, 0.05, 5)),
            f.__setitem__("grid/z", np.linspace(0.45, 0.55, 5))))
        fresh(M, "huge_attr.h5", lambda f: (base_file(f), f.attrs.__setitem__("nfmimo_format", "m" * (1 << 20))))
        # A fixed-length NULLPAD string attribute, as MATLAB writes: valid, must be read in full.
        def nullpad(f):
            base_file(f)
            del f.attrs["nfmimo_format"]
            tid = h5py.h5t.C_S1.copy()
            tid.set_size(len(b"measurements"))
            tid.set_strpad(h5py.h5t.STR_NULLPAD)
            space = h5py.h5s.create(h5py.h5s.SCALAR)
            aid = h5py.h5a.create(f.id, b"nfmimo_format", tid, space)
            aid.write(np.array(b"measurements", dtype="S12"))
        fresh(M, "nullpad_format.h5", nullpad, expect="ok")
        fresh(M, "userblock.h5", lambda f: base_file(f), expect="ok")
        with h5py.File(os.path.join(h, "userblock.h5"), "w", userblock_size=512) as f:
            base_file(f)

        # Datasets (merge, synthesize --resume, train --data).
        ds = os.path.join(self.fix, "shard1.h5")
        D = "dataset"
        variant(D, "ds_count_huge.h5", set_attr("count", 10**18), base=ds)
        variant(D, "ds_count_negative.h5", set_attr("count", -4), base=ds)
        variant(D, "ds_config_bad_json.h5", set_attr("synthesizer_config", "{not json"), base=ds)
        variant(D, "ds_config_unknown_key.h5", set_attr("synthesizer_config", '{"bogus": 1}'), base=ds)
        variant(D, "ds_shard_bad.h5", set_attr("shard", "3/2"), base=ds)
        variant(D, "ds_shard_text.h5", set_attr("shard", "one of two"), base=ds)
        variant(D, "ds_first_negative.h5", set_attr("first_sample", -1), base=ds)
        variant(D, "ds_complete_but_short.h5", lambda f: (f["targets"].resize(1, axis=0),
                                                         f["measurements"].resize(1, axis=0),
                                                         f["snr_db"].resize(1, axis=0)), base=ds)
        variant(D, "ds_seed_string.h5", set_attr("seed", "seven"), base=ds)
        variant(D, "ds_no_targets.h5", remove("targets"), base=ds)

        # Weights (reconstruct/evaluate --model).
        w = os.path.join(self.fix, "w.h5")
        W = "weights"
        with open(w, "rb") as fh:
            wbytes = fh.read()
        raw(W, "w_half.h5", wbytes[: len(wbytes) // 2])
        with h5py.File(w, "r") as f:
            names = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and o.ndim >= 1
                         and o.dtype.kind == "f" and o.size > 1 else None)
        param = [n for n in names if "weight" in n] or names
        p0 = param[0]
        variant(W, "w_arch_bogus.h5", set_attr("architecture", "bogus"), base=w)
        variant(W, "w_missing_param.h5", remove(p0), base=w)

        def nan_param(f):
            v = f[p0][()]
            v.reshape(-1)[0] = np.nan
            del f[p0]
            f[p0] = v
        variant(W, "w_nan.h5", nan_param, base=w)
        variant(W, "w_wrong_shape.h5", lambda f: (f.__delitem__(p0), f.__setitem__(p0, np.zeros(3, np.float32))),
                base=w)
        variant(W, "w_huge_shape.h5", lambda f: (f.__delitem__(p0), f.create_dataset(
            p0, shape=(10**9,), dtype="f4", chunks=(4096,))), base=w)
        variant(W, "w_extra.h5", lambda f: f.__setitem__("parameters/zz_unexpected", np.zeros(2, np.float32)), base=w)
        variant(W, "w_format_measurements.h5", set_attr("nfmimo_format", "measurements"), base=w)
        self.hostile_dir = h


# ----------------------------------------------------------------------------------------------- helpers
def fx(p):
    return f"{{fix}}/{p}"


def copy_in(probe, *names):
    def setup(d):
        for n in names:
            shutil.copy(os.path.join(probe.fix, n), os.path.join(d, os.path.basename(n)))
    return setup


def mkfifo(name):
    return lambda d: os.mkfifo(os.path.join(d, name))


def mkdir(name):
    return lambda d: os.makedirs(os.path.join(d, name))


def touch(name, text=b"precious user data\n"):
    def setup(d):
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(text)
    return setup


def chain(*setups):
    def setup(d):
        for s in setups:
            if s:
                s(d)
    return setup


# -------------------------------------------------------------------------------------- custom runners
def interrupt_runner(argv, signals, delay, allowed, resume_argv=None, final=None, must_exist=()):
    """Starts argv, sends `signals` (one after another, 0.3 s apart) after `delay` s. Expected: an exit code
    of 130 or 2 (or death by that signal), nothing left but `allowed` files; then resume_argv (if any) must
    succeed and `final` be valid."""
    def run(probe, case, d):
        argv2 = [a.replace("{d}", d) for a in argv]
        before = set(probe.snapshot(d))
        p = probe.start(argv2, d)
        time.sleep(delay)
        if p.poll() is not None:
            r = probe.finish(p, 5)
            return ("ok" if r["rc"] == 0 else "bad_exit",
                    f"ended before the signal (exit {r['rc']}); raise the run length")
        for s in signals:
            try:
                os.killpg(p.pid, s)
            except ProcessLookupError:
                pass
            time.sleep(0.3)
        r = probe.finish(p, case.timeout)
        if r["timed_out"]:
            return "hang", "did not stop after the signal"
        if r["rc"] < 0 and -r["rc"] not in signals:
            return "crash", f"killed by signal {-r['rc']}"
        if "AddressSanitizer" in r["stderr"] or "runtime error:" in r["stderr"]:
            return "crash", r["stderr"][-300:]
        if r["rc"] not in (130, 2, 143) and r["rc"] >= 0:
            return "bad_exit", f"exit {r['rc']} after the signal: {r['stderr'][-200:]}"
        new = sorted(set(probe.snapshot(d)) - before)
        extra = [p for p in new if not any(p == a or p.endswith(a) for a in allowed)]
        if extra:
            return "leftover", "after the signal: " + ", ".join(extra[:5])
        for m in must_exist:
            if not os.path.exists(os.path.join(d, m)):
                return "wrong_success", f"{m} missing after the interrupt (nothing to resume)"
        if resume_argv:
            r2 = probe.run([a.replace("{d}", d) for a in resume_argv], d, 300)
            if r2["rc"] != 0:
                return "wrong_refusal", "resume failed: " + r2["stderr"][-300:]
            bad = probe.valid_output(os.path.join(d, final))
            if bad:
                return "wrong_success", f"after resume {final}: {bad}"
            left = [p for p in probe.snapshot(d) if ".tmp" in p]
            if left:
                return "leftover", "after resume: " + ", ".join(left)
        return "ok", ""
    return run


def concurrent_runner(argvs, delays, out, check_count=None):
    """Starts each argv after its delay; all must end with 0 or 2 (2 with a message), at least one with 0,
    and when any reports 0 the final `out` must be valid (and hold check_count samples)."""
    def run(probe, case, d):
        procs = []
        t0 = time.monotonic()
        for argv, delay in zip(argvs, delays):
            while time.monotonic() - t0 < delay:
                time.sleep(0.05)
            procs.append(probe.start([a.replace("{d}", d) for a in argv], d))
        results = [probe.finish(p, case.timeout) for p in procs]
        rcs = [r["rc"] for r in results]
        if any(r["timed_out"] for r in results):
            return "hang", f"exit codes {rcs}"
        if any(rc < 0 for rc in rcs):
            return "crash", f"exit codes {rcs}"
        if any(rc not in (0, 2) for rc in rcs):
            return "bad_exit", f"exit codes {rcs}: " + " | ".join(r["stderr"][-150:] for r in results)
        for r in results:
            if r["rc"] == 2 and not r["stderr"].strip():
                return "bad_message", "a writer exited 2 without a message"
        if 0 not in rcs:
            return "wrong_refusal", f"every writer failed: {[r['stderr'][-150:] for r in results]}"
        bad = probe.valid_output(os.path.join(d, out))
        if bad:
            return "wrong_success", f"exit codes {rcs} but {out}: {bad}"
        if check_count is not None:
            with h5py.File(os.path.join(d, out), "r") as f:
                n = f["measurements"].shape[0]
            if n != check_count:
                return "wrong_success", f"{out} holds {n} samples, not {check_count}"
        left = [p for p in probe.snapshot(d) if ".tmp" in p or p.endswith(".partial")]
        if left:
            return "leftover", "after the writers: " + ", ".join(left)
        return "ok", ""
    return run


# ---------------------------------------------------------------------------------------------- the cases
def build_cases(probe):
    cases = []
    F = probe.fix
    H = probe.hostile_dir

    def add(name, argv, **kw):
        argv = [a.replace("{fix}", F).replace("{hostile}", H) for a in argv]
        cases.append(Case(name, argv, **kw))

    meas, ds, w = f"{F}/meas.h5", f"{F}/ds.h5", f"{F}/w.h5"
    sim = ["simulate", "--points", "0,0,0.5,1", "--freqs", K, "--grid", SMALL_GRID]
    rec = ["reconstruct", meas, "--method", "adjoint"]
    ev = ["evaluate", "--data", ds, "--methods", "adjoint"]
    syn = ["synthesize", "--count", "2", "--freqs", K, "--grid", SMALL_GRID, "--device", "cpu", "--batch", "2"]
    mrg = ["merge", f"{F}/shard0.h5", f"{F}/shard1.h5"]
    trn = ["train", "--arch", "resnet", "--synthesize", "--freqs", K, "--grid", NET_GRID, "--epochs", "1",
           "--epoch-size", "2", "--val-count", "2", "--batch", "2", "--width", "2", "--blocks", "1", "--device",
           "cpu"]
    bench = ["bench", "--methods", "adjoint", "--modes", "exact", "--batch", "1", "--device", "cpu", "--freqs", "2",
             "--grid", SMALL_GRID, "--seconds", "0.05"]

    # --- valid baselines (each must succeed with valid outputs) -------------------------------------------
    add("simulate/valid", sim + ["--out", "o.h5"], expect="ok", outputs=["o.h5"])
    add("simulate/valid_snr", sim + ["--snr", "10", "--seed", "3", "--out", "o.h5"], expect="ok", outputs=["o.h5"])
    for m in ["adjoint", "backprojection", "kirchhoff"]:
        add(f"reconstruct/valid_{m}", ["reconstruct", meas, "--method", m, "--out", "v.h5", "--png", "v.png", "--vti",
                                       "v.vti"], expect="ok", outputs=["v.h5", "v.png", "v.vti"])
    add("reconstruct/valid_fast", rec + ["--mode", "fast", "--out", "v.h5"], expect="ok", outputs=["v.h5"])
    add("reconstruct/valid_complex", rec + ["--complex", "--out", "v.h5"], expect="ok", outputs=["v.h5"])
    add("reconstruct/valid_l1", ["reconstruct", meas, "--method", "l1", "--param", "iterations=3", "--out", "v.h5"],
        expect="ok", outputs=["v.h5"])
    add("reconstruct/valid_tv", ["reconstruct", meas, "--method", "tv", "--param", "iterations=2", "--out", "v.h5"],
        expect="ok", outputs=["v.h5"])
    add("reconstruct/valid_deep2s_resnet", ["reconstruct", f"{F}/netds.h5", "--method", "deep2s-resnet", "--model",
                                            w, "--out", "v.h5"], expect="ok", outputs=["v.h5"])
    add("reconstruct/force_replaces", rec + ["--out", "v.h5", "--force"], setup=touch("v.h5"), expect="ok",
        outputs=["v.h5"])
    add("evaluate/valid", ev + ["--json", "r.json", "--csv", "r.csv", "--png", "r.png"], expect="ok",
        outputs=["r.json", "r.csv", "r.png"])
    add("evaluate/valid_frames1", ev + ["--frames", "1", "--json", "r.json"], expect="ok", outputs=["r.json"])
    add("synthesize/valid", syn + ["--out", "s.h5"], expect="ok", outputs=["s.h5"])
    add("synthesize/valid_gzip", syn + ["--gzip", "9", "--snr", "none", "--out", "s.h5"], expect="ok",
        outputs=["s.h5"])
    add("merge/valid", mrg + ["--out", "m.h5"], expect="ok", outputs=["m.h5"])
    add("merge/valid_reversed", ["merge", f"{F}/shard1.h5", f"{F}/shard0.h5", "--out", "m.h5"], expect="ok",
        outputs=["m.h5"])
    add("train/valid", trn + ["--out", "t.h5"], expect="ok", outputs=["t.h5"], timeout=300)
    add("bench/valid", bench + ["--json", "b.json", "--csv", "b.csv"], expect="ok", outputs=["b.json", "b.csv"],
        timeout=300)
    for name in ["meas.h5", "ds.h5", "w.h5", "shard0.h5", "part.h5.partial"]:
        add(f"info/valid_{name}", ["info", f"{F}/{name}"], expect="ok")

    # --- hostile files through every reader ------------------------------------------------------------------
    for name, expect in probe.hostile["measurements"]:
        path = f"{H}/{name}"
        t = 60 if "huge" not in name else 60
        # `info` describes what a file holds without reading the data: only unreadable files must be refused.
        unreadable = name in ("empty.h5", "text.h5", "half.h5", "head1k.h5", "superblock_only.h5", "zeros.h5")
        add(f"info/{name}", ["info", path], expect="refuse" if unreadable else "either", timeout=t)
        # reconstruct reads neither /targets nor /snr_db.
        rec_expect = "either" if name in ("targets_nan.h5", "snr_wrong_length.h5") else expect
        add(f"reconstruct/{name}", ["reconstruct", path, "--method", "adjoint", "--out", "v.h5"], expect=rec_expect,
            outputs=["v.h5"], timeout=t)
        add(f"evaluate/{name}", ["evaluate", "--data", path, "--methods", "adjoint", "--frames", "1", "--json",
                                 "r.json"], expect="refuse" if expect == "refuse" else "either",
            outputs=["r.json"], timeout=t)
        add(f"train/{name}", ["train", "--arch", "resnet", "--data", path, "--val", f"{F}/netval.h5", "--freqs", K,
                              "--grid", NET_GRID, "--epochs", "1", "--batch", "2", "--width", "2", "--blocks", "1",
                              "--device", "cpu", "--out", "t.h5"], expect="refuse" if expect == "refuse" else "either",
            outputs=["t.h5"], timeout=t)
    for name, expect in probe.hostile["dataset"]:
        path = f"{H}/{name}"
        add(f"merge/{name}", ["merge", f"{F}/shard0.h5", path, "--out", "m.h5"], expect=expect, outputs=["m.h5"])
        add(f"info/{name}", ["info", path], expect="either")
        add(f"synthesize_resume/{name}", syn[:1] + ["--count", "4", "--freqs", K, "--grid", SMALL_GRID, "--device",
                                                    "cpu", "--batch", "2", "--shard", "1/2", "--resume", "--out",
                                                    "s.h5"],
            setup=lambda d, p=path: shutil.copy(p, os.path.join(d, "s.h5.partial")), expect="either",
            outputs=["s.h5"])
    for name, expect in probe.hostile["weights"]:
        path = f"{H}/{name}"
        add(f"reconstruct_model/{name}", ["reconstruct", f"{F}/netds.h5", "--method", "deep2s-resnet", "--model", path,
                                          "--out", "v.h5"], expect=expect, outputs=["v.h5"])
        add(f"evaluate_model/{name}", ["evaluate", "--data", f"{F}/netds.h5", "--methods", "deep2s-resnet", "--model",
                                       path, "--json", "r.json"], expect=expect, outputs=["r.json"])
        add(f"info/{name}", ["info", path], expect="either")

    # --- not regular files as inputs -------------------------------------------------------------------------
    specials = [("fifo", mkfifo("in.h5"), "in.h5"), ("dir", mkdir("in.h5"), "in.h5"), ("devnull", None, "/dev/null"),
                ("devzero", None, "/dev/zero"), ("missing", None, "nope.h5"), ("proc", None, "/proc/self/status")]
    for label, setup, path in specials:
        add(f"info/{label}", ["info", path], setup=setup, timeout=20)
        add(f"reconstruct/{label}", ["reconstruct", path, "--out", "v.h5"], setup=setup, timeout=20)
        add(f"evaluate/{label}", ["evaluate", "--data", path, "--methods", "adjoint"], setup=setup, timeout=20)
        add(f"merge/{label}", ["merge", f"{F}/shard0.h5", path, "--out", "m.h5"], setup=setup, timeout=20)
        add(f"train/{label}", ["train", "--arch", "resnet", "--data", path, "--val", f"{F}/netval.h5", "--out", "t.h5"],
            setup=setup, timeout=20)
        add(f"reconstruct_model/{label}", ["reconstruct", f"{F}/netds.h5", "--method", "deep2s-resnet", "--model", path,
                                           "--out", "v.h5"], setup=setup, timeout=20)
        add(f"synthesize_config/{label}", syn + ["--config", path, "--out", "s.h5"], setup=setup, timeout=20)

    # --- bad numbers ---------------------------------------------------------------------------------------
    bad_ints = ["nan", "inf", "-1", "abc", "", "1e18", "99999999999999999999", "2.5", "0x10", "-9223372036854775809"]
    # Values a careful tool may accept: hexadecimal integers (CLI11 reads 0x10 as 16), an empty entry in a
    # comma list, a huge time budget when --epochs ends the run first, a CPU run's GPU batch size.
    lenient = {"0x10", "adjoint,,kirchhoff", "99999999999999999999h"}

    def numbers(prefix, base, option, values, expect="refuse", timeout=30, outputs=(), tail=()):
        for v in values:
            e = "either" if v in lenient or (prefix == "reconstruct" and option == "--batch" and
                                             v == "1000000000") else expect
            add(f"{prefix}/{option}={v}", base + [option, v] + list(tail), expect=e, timeout=timeout,
                outputs=outputs)

    numbers("simulate", sim + ["--out", "o.h5"], "--snr", ["nan", "inf", "-inf", "-800", "1e308", "abc", ""])
    numbers("simulate", sim + ["--out", "o.h5"], "--freqs", bad_ints + ["0", "2000000000", "100000000"])
    numbers("simulate", sim + ["--out", "o.h5"], "--seed", ["nan", "abc", "", "99999999999999999999", "1e18"])
    numbers("simulate", sim + ["--out", "o.h5"], "--grid",
            ["0:1:0,0:1:1,0:1:1", "1:0:3,0:1:2,0:1:2", "nan:1:2,0:1:2,0:1:2", "0:1:2,0:1:2", "bogus",
             "-1:1:100000,-1:1:100000,0.4:0.6:100000", "0:0:2,0:1:2,0:1:2", "0:1:2147483648,0:1:2,0:1:2",
             "-0.05:0.05:5,-0.05:0.05:5,0:0.1:5", "0:1:1e3,0:1:2,0:1:2"])
    numbers("simulate", ["simulate", "--freqs", K, "--grid", SMALL_GRID, "--out", "o.h5"], "--points",
            ["", ";", "nan,0,0.5,1", "1e999,0,0.5,1", "0,0,0.5", "0,0,0.5,1,2", "a,b,c,d", "0,0,0,1",
             "0,0,0.5,inf", ";".join(["0,0,0.5,1"] * 2)[:-1] + "x"])
    numbers("simulate", sim + ["--out", "o.h5"], "--system", ["bogus", "", "PAPER"])
    numbers("reconstruct", rec + ["--out", "v.h5"], "--batch", bad_ints + ["0", "1000000000"])
    numbers("reconstruct", rec + ["--out", "v.h5"], "--method", ["bogus", "", "ADJOINT", "adjoint "])
    numbers("reconstruct", rec + ["--out", "v.h5"], "--mode", ["bogus", "", "FAST"])
    numbers("reconstruct", rec + ["--out", "v.h5"], "--device", ["bogus", "", "gpu"])
    numbers("reconstruct", rec + ["--out", "v.h5"], "--precision", ["bogus", "fp8"])
    numbers("reconstruct", rec + ["--out", "v.h5"], "--grid",
            ["0:1:0,0:1:1,0:1:1", "nan:1:2,0:1:2,0:1:2", "0:1:1,0:1:1,0:1:1", "-1:1:100000,-1:1:100000,0.4:0.6:100000",
             "-0.05:0.05:5,-0.05:0.05:5,0:0.1:5", "0:1:2,0:1:2"])
    l1 = ["reconstruct", meas, "--method", "l1", "--out", "v.h5", "--param"]
    for p in ["lambda=nan", "lambda=-1", "lambda=inf", "lambda=abc", "iterations=-1", "iterations=0",
              "iterations=99999999999", "iterations=1e3", "tol=nan", "tol=-1", "accel=bogus", "bogus=1", "=1",
              "lambda", "lambda=", "lambda=1e-3=4"]:
        add(f"reconstruct/l1_param_{p}", l1 + [p], timeout=30)
    add("reconstruct/param_for_adjoint", rec + ["--out", "v.h5", "--param", "lambda=1"])
    add("reconstruct/param_repeated", ["reconstruct", meas, "--method", "l1", "--param", "iterations=2", "--param",
                                       "iterations=3", "--out", "v.h5"])
    add("reconstruct/model_with_adjoint", rec + ["--model", w, "--out", "v.h5"])
    add("reconstruct/deep2s_no_model", ["reconstruct", meas, "--method", "deep2s", "--out", "v.h5"])
    add("reconstruct/model_grid_mismatch", ["reconstruct", meas, "--method", "deep2s-resnet", "--model", w, "--out",
                                            "v.h5"])
    add("reconstruct/pnp_param_bad", ["reconstruct", meas, "--method", "pnp", "--param", "rho=-1", "--out", "v.h5"])

    numbers("evaluate", ev + ["--json", "r.json"], "--frames", bad_ints)
    numbers("evaluate", ev + ["--json", "r.json"], "--png-frames", ["-1", "nan", "abc", "99999999999999999999"])
    numbers("evaluate", ev + ["--json", "r.json"], "--batch", ["0", "-1", "nan", "99999999999999999999"])
    numbers("evaluate", ["evaluate", "--data", ds, "--json", "r.json"], "--methods",
            ["", "bogus", ",", "adjoint,,kirchhoff", "adjoint,bogus"])
    numbers("evaluate", ev + ["--json", "r.json"], "--system", ["bogus"])
    numbers("evaluate", ev + ["--json", "r.json"], "--freqs", ["0", "-1", "5", "nan"])
    numbers("evaluate", ev + ["--json", "r.json"], "--param", ["lambda=nan", "l1.iterations=-1", "nokey"])

    s_out = syn + ["--out", "s.h5"]
    numbers("synthesize", ["synthesize", "--freqs", K, "--grid", SMALL_GRID, "--device", "cpu", "--out", "s.h5"],
            "--count", bad_ints + ["0", "1e3"], timeout=20)
    numbers("synthesize", s_out, "--batch", ["0", "-1", "nan", "1000000000", "99999999999999999999"], timeout=20)
    numbers("synthesize", s_out, "--gzip", ["10", "-1", "nan", "99999999999"])
    numbers("synthesize", s_out, "--shard", ["2/2", "1/0", "-1/2", "a/b", "1", "0/99999999999", "/"])
    numbers("synthesize", s_out, "--snr", ["nan", "-800", "inf", "40:20", "nan:30", "abc", "", "1e308"])
    numbers("synthesize", s_out, "--objects", ["0", "-1", "17", "5:1", "abc", "99999999999", "1:99999999999"])
    numbers("synthesize", s_out, "--types", ["bogus", "", ",", "ellipsoid,bogus"])
    numbers("synthesize", s_out, "--phase", ["bogus", ""])
    numbers("synthesize", s_out, "--smooth", ["2", "-1", "nan", "inf", "abc"])
    numbers("synthesize", s_out, "--seed", ["-1", "nan", "99999999999999999999"])
    numbers("synthesize", s_out, "--stop-after", ["-1", "-2", "nan", "99999999999999999999"])
    numbers("synthesize", s_out, "--freqs", ["0", "-1", "2000000000"])
    numbers("synthesize", s_out, "--device", ["bogus", ""])
    numbers("synthesize", s_out, "--system-file", [f"{H}/text.h5", f"{H}/freq_nan.h5", "nope.h5"])
    for label, text in [("bad_json", "{"), ("unknown_key", '{"bogus": 1}'), ("supersampling_huge",
                        '{"supersampling": 100000}'), ("negative_size", '{"size_m": {"min": -1, "max": 0.1}}'),
                        ("types_zero", '{"types": [0,0,0,0,0]}'), ("array", "[]"), ("nan", '{"smooth_magnitude": NaN}'),
                        ("objects_swap", '{"objects": {"min": 4, "max": 2}}'), ("objects_17", '{"objects": 17}'),
                        ("huge_number", '{"size_m": 1e999}'), ("string_number", '{"supersampling": "2"}'),
                        ("snr_nan", '{"snr_db": {"min": "nan", "max": 30}}'), ("snr_minus_800", '{"snr_db": -800}'),
                        ("magnitude_2", '{"magnitude": {"min": 0.5, "max": 2}}'), ("deep", "[" * 100000),
                        ("empty", ""), ("objects_1e20", '{"objects": 100000000000000000000}'),
                        ("plate_huge", '{"plate_thickness_voxels": {"min": 1, "max": 2147483648}}')]:
        add(f"synthesize/config_{label}", s_out + ["--config", "c.json"], setup=touch("c.json", text.encode()),
            timeout=30)

    numbers("merge", mrg + ["--out", "m.h5"], "--gzip", ["10", "-1", "nan"])
    add("merge/one_shard", ["merge", f"{F}/shard0.h5", "--out", "m.h5"])
    add("merge/same_twice", ["merge", f"{F}/shard0.h5", f"{F}/shard0.h5", "--out", "m.h5"])
    add("merge/other_seed", ["merge", f"{F}/shard0.h5", f"{F}/otherseed1.h5", "--out", "m.h5"])
    add("merge/partial_input", ["merge", f"{F}/shard0.h5", f"{F}/part.h5.partial", "--out", "m.h5"])
    add("merge/measurement_input", ["merge", f"{F}/shard0.h5", meas, "--out", "m.h5"])
    add("merge/out_is_input", ["merge", "a.h5", f"{F}/shard1.h5", "--out", "a.h5", "--force"],
        setup=copy_in(probe, "shard0.h5") if False else (lambda d: shutil.copy(f"{F}/shard0.h5", f"{d}/a.h5")))

    t_out = trn + ["--out", "t.h5"]
    numbers("train", t_out, "--lr", ["nan", "-1", "0", "inf", "abc"])
    numbers("train", t_out, "--width", ["-1", "1000000000", "nan"])
    numbers("train", t_out, "--blocks", ["0", "-1", "1000000000"])
    numbers("train", t_out, "--epochs", ["-1", "nan", "99999999999999999999"])
    numbers("train", t_out, "--epoch-size", ["0", "-1", "1000000000000", "99999999999999999999", "3"])
    numbers("train", t_out, "--batch", ["0", "-1", "1000000000"])
    numbers("train", t_out, "--val-count", ["0", "-1", "1000000000"])
    numbers("train", t_out, "--time-budget", ["abc", "0s", "-1m", "1x", "nan", "99999999999999999999h"])
    numbers("train", t_out, "--loss", ["bogus", ""])
    numbers("train", t_out, "--schedule", ["bogus"])
    numbers("train", t_out, "--clip", ["-1", "nan"])
    numbers("train", t_out, "--ssim-weight", ["nan", "-1"])
    numbers("train", t_out, "--weight-decay", ["-1", "nan"])
    numbers("train", t_out, "--factor", ["2", "0", "nan"])
    numbers("train", t_out, "--patience", ["-1", "nan"])
    numbers("train", t_out, "--arch", ["bogus", ""])
    numbers("train", t_out, "--precision", ["bogus"])
    numbers("train", t_out, "--init", ["nope.h5", f"{H}/w_nan.h5"])
    add("train/no_source", ["train", "--arch", "resnet", "--epochs", "1", "--out", "t.h5"])
    add("train/both_sources", trn + ["--data", ds, "--out", "t.h5"])
    add("train/data_without_val", ["train", "--arch", "resnet", "--data", f"{F}/netds.h5", "--epochs", "1", "--out",
                                   "t.h5"])
    add("train/grid_mismatch", ["train", "--arch", "resnet", "--data", ds, "--val", f"{F}/netval.h5", "--epochs", "1",
                                "--out", "t.h5"])

    b_out = bench + ["--json", "b.json"]
    numbers("bench", b_out, "--seconds", ["nan", "-1", "0", "inf", "1e18", "abc"])
    numbers("bench", b_out, "--batch", ["0", "-1", "nan", "1000000000"])
    numbers("bench", b_out, "--methods", ["bogus", ""])
    numbers("bench", b_out, "--modes", ["bogus"])
    numbers("bench", b_out, "--freqs", ["0", "-1", "2000000000"])
    numbers("bench", b_out, "--width", ["-1", "nan"])
    numbers("bench", b_out, "--train-batch", ["0", "-1"])

    for v in ["65536", "10000", "-1", "nan", "abc", "99999999999999999999"]:
        add(f"global/--threads={v}", ["--threads", v, "info", meas], timeout=30, threads_env=False)
    add("global/--threads=1", ["--threads", "1", "info", meas], expect="ok", threads_env=False)
    add("global/no_subcommand", [])
    add("global/unknown_subcommand", ["bogus"])
    add("global/unknown_option", ["info", meas, "--bogus"])

    # --- output paths ----------------------------------------------------------------------------------------
    writers = {
        "simulate": (sim + ["--out", "{o}"], "o"),
        "reconstruct": (rec + ["--out", "{o}"], "o"),
        "synthesize": (syn + ["--out", "{o}"], "o"),
        "merge": (mrg + ["--out", "{o}"], "o"),
        "evaluate": (ev + ["--json", "{o}"], "o"),
        "bench": (bench + ["--json", "{o}"], "o"),
        "train": (trn + ["--out", "{o}"], "o"),
        "reconstruct_png": (rec + ["--out", "v.h5", "--png", "{o}"], "o"),
        "reconstruct_vti": (rec + ["--out", "v.h5", "--vti", "{o}"], "o"),
        "evaluate_csv": (ev + ["--csv", "{o}"], "o"),
    }
    for cmd, (argv, _) in writers.items():
        ext = ".json" if cmd in ("evaluate", "bench") else ".csv" if cmd.endswith("csv") else \
            ".png" if cmd.endswith("png") else ".vti" if cmd.endswith("vti") else ".h5"
        def out(path, argv=argv):
            return [a.replace("{o}", path) for a in argv]
        add(f"{cmd}/out_exists", out("x" + ext), setup=touch("x" + ext), timeout=120)
        add(f"{cmd}/out_missing_dir", out("nodir/x" + ext), timeout=120)
        add(f"{cmd}/out_is_dir", out("x" + ext), setup=mkdir("x" + ext), timeout=120)
        add(f"{cmd}/out_is_fifo", out("x" + ext), setup=mkfifo("x" + ext), timeout=120)
        add(f"{cmd}/out_name_300", out("x" * 296 + ext), timeout=120)
        long_ok = "y" * (250 - len(ext)) + ext
        add(f"{cmd}/out_name_250", out(long_ok), expect="ok", outputs=[long_ok], timeout=300)
        if probe.ro_mount:
            add(f"{cmd}/out_readonly_dir", out(f"{probe.ro_mount}/x{ext}"), timeout=120)
        if probe.full_mount:
            add(f"{cmd}/out_full_disk", out(f"{probe.full_mount}/x{ext}"), timeout=300, message="space")
        if probe.tight_mount:
            add(f"{cmd}/out_nearly_full_disk", out(f"{probe.tight_mount}/x{ext}"), expect="either", timeout=300,
                message="space", outputs=[f"{probe.tight_mount}/x{ext}"])
    if probe.ro_mount:
        add("reconstruct/vti_readonly_with_others", rec + ["--out", "v.h5", "--png", "v.png", "--vti",
                                                           f"{probe.ro_mount}/v.vti"])
    if probe.full_mount:
        add("reconstruct/vti_full_with_others", rec + ["--out", "v.h5", "--png", "v.png", "--vti",
                                                       f"{probe.full_mount}/v.vti"], message="space")
        add("evaluate/csv_full_with_json", ev + ["--json", "r.json", "--csv", f"{probe.full_mount}/r.csv"],
            message="space")
    add("reconstruct/out_equals_png", rec + ["--out", "v.h5", "--png", "v.h5", "--force"])
    add("reconstruct/png_equals_vti", rec + ["--out", "v.h5", "--png", "p", "--vti", "p"])
    add("reconstruct/out_equals_input", ["reconstruct", "in.h5", "--out", "in.h5", "--force"],
        setup=copy_in(probe, "meas.h5") if False else (lambda d: shutil.copy(meas, f"{d}/in.h5")))
    add("reconstruct/out_equals_input_dotslash", ["reconstruct", "in.h5", "--out", "./in.h5", "--force"],
        setup=lambda d: shutil.copy(meas, f"{d}/in.h5"))
    add("evaluate/json_equals_csv", ev + ["--json", "r", "--csv", "r"])
    add("evaluate/json_equals_png", ev + ["--json", "r", "--png", "r"])
    add("evaluate/json_equals_data", ["evaluate", "--data", "d.h5", "--methods", "adjoint", "--json", "d.h5",
                                      "--force"], setup=lambda d: shutil.copy(ds, f"{d}/d.h5"))
    add("bench/json_equals_csv", bench + ["--json", "b", "--csv", "b"])
    add("train/out_equals_data", ["train", "--arch", "resnet", "--data", "d.h5", "--val", f"{F}/netval.h5",
                                  "--out", "d.h5", "--force"], setup=lambda d: shutil.copy(f"{F}/netds.h5", f"{d}/d.h5"))
    add("train/checkpoint_equals_out", trn + ["--out", "t.h5", "--checkpoint", "t.h5"])
    add("simulate/out_equals_existing_force", sim + ["--out", "o.h5", "--force"], setup=touch("o.h5"), expect="ok",
        outputs=["o.h5"])
    add("synthesize/out_partial_is_dir", syn + ["--out", "s.h5"], setup=mkdir("s.h5.partial"))

    # --- signals ---------------------------------------------------------------------------------------------
    long_syn = ["synthesize", "--count", "100000", "--freqs", K, "--grid", SMALL_GRID, "--device", "cpu", "--batch",
                "8", "--seed", "5", "--out", "s.h5"]
    short_resume = ["synthesize", "--count", "100000", "--freqs", K, "--grid", SMALL_GRID, "--device", "cpu",
                    "--batch", "8", "--seed", "5", "--out", "s.h5", "--resume", "--stop-after", "16"]
    cases.append(Case("synthesize/sigint", [], expect="custom", timeout=60, group="synthesize",
                      runner=interrupt_runner(long_syn, [signal.SIGINT], 2.0, ["s.h5.partial"], short_resume,
                                              "s.h5.partial", must_exist=["s.h5.partial"])))
    cases.append(Case("synthesize/sigint_twice", [], expect="custom", timeout=60, group="synthesize",
                      runner=interrupt_runner(long_syn, [signal.SIGINT, signal.SIGINT], 2.0, ["s.h5.partial"])))
    cases.append(Case("synthesize/sigterm", [], expect="custom", timeout=60, group="synthesize",
                      runner=interrupt_runner(long_syn, [signal.SIGTERM], 2.0, ["s.h5.partial"])))
    long_train = ["train", "--arch", "resnet", "--synthesize", "--freqs", K, "--grid", NET_GRID, "--epochs", "1000",
                  "--epoch-size", "4", "--val-count", "2", "--batch", "2", "--width", "2", "--blocks", "1",
                  "--device", "cpu", "--out", "t.h5"]
    train_allowed = ["t.checkpoint.h5", "t.log.csv", "t.log.json", "t.h5.checkpoint.h5"]
    cases.append(Case("train/sigint", [], expect="custom", timeout=120, group="train",
                      runner=interrupt_runner(long_train, [signal.SIGINT], 6.0, train_allowed)))
    cases.append(Case("train/sigint_twice", [], expect="custom", timeout=120, group="train",
                      runner=interrupt_runner(long_train, [signal.SIGINT, signal.SIGINT], 6.0, train_allowed)))
    long_l1 = ["reconstruct", meas, "--method", "l1", "--param", "iterations=100000000", "--param", "tol=0",
               "--out", "v.h5", "--png", "v.png"]
    cases.append(Case("reconstruct/sigint", [], expect="custom", timeout=60, group="reconstruct",
                      runner=interrupt_runner(long_l1, [signal.SIGINT], 2.0, [])))
    long_eval = ["evaluate", "--data", ds, "--methods", "l1", "--param", "iterations=100000000", "--param", "tol=0",
                 "--json", "r.json"]
    cases.append(Case("evaluate/sigint", [], expect="custom", timeout=60, group="evaluate",
                      runner=interrupt_runner(long_eval, [signal.SIGINT], 2.0, [])))
    long_bench = ["bench", "--methods", "adjoint,backprojection,kirchhoff", "--modes", "exact", "--batch", "1",
                  "--device", "cpu", "--freqs", "15", "--grid", "paper", "--seconds", "30", "--json", "b.json"]
    cases.append(Case("bench/sigint", [], expect="custom", timeout=60, group="bench",
                      runner=interrupt_runner(long_bench, [signal.SIGINT], 2.0, [])))

    # --- concurrent writers ----------------------------------------------------------------------------------
    # Long enough (several seconds) for the writers to overlap.
    conc = ["synthesize", "--count", "3000", "--freqs", K, "--grid", SMALL_GRID, "--device", "cpu", "--batch", "16",
            "--seed", "9", "--out", "s.h5"]
    for i in range(3):
        cases.append(Case(f"synthesize/concurrent_same_out_{i}", [], expect="custom", timeout=300, group="synthesize",
                          runner=concurrent_runner([conc, conc], [0, 0.05 * i], "s.h5", check_count=3000)))
    cases.append(Case("synthesize/concurrent_force_midway", [], expect="custom", timeout=300, group="synthesize",
                      runner=concurrent_runner([conc, conc + ["--force"]], [0, 1.0], "s.h5", check_count=3000)))
    cases.append(Case("synthesize/concurrent_resume_midway", [], expect="custom", timeout=300, group="synthesize",
                      runner=concurrent_runner([conc, conc + ["--resume"]], [0, 1.0], "s.h5", check_count=3000)))
    simf = sim + ["--out", "o.h5", "--force"]
    cases.append(Case("simulate/concurrent_force", [], expect="custom", timeout=120, group="simulate",
                      runner=concurrent_runner([simf, simf, simf], [0, 0, 0], "o.h5")))
    recf = ["reconstruct", meas, "--method", "kirchhoff", "--out", "v.h5", "--png", "v.png", "--force"]
    cases.append(Case("reconstruct/concurrent_force", [], expect="custom", timeout=120, group="reconstruct",
                      runner=concurrent_runner([recf, recf], [0, 0], "v.h5")))
    mrgf = mrg + ["--out", "m.h5", "--force"]
    cases.append(Case("merge/concurrent_force", [], expect="custom", timeout=120, group="merge",
                      runner=concurrent_runner([mrgf, mrgf], [0, 0], "m.h5", check_count=4)))
    trnc = trn + ["--out", "t.h5", "--force"]
    cases.append(Case("train/concurrent_same_out", [], expect="custom", timeout=300, group="train",
                      runner=concurrent_runner([trnc, trnc], [0, 0.5], "t.h5")))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/nfmimo")
    ap.add_argument("--out", default="probe.json", help="JSON report")
    ap.add_argument("--only", action="append", default=[], help="run only cases whose name contains this")
    ap.add_argument("--keep-inputs", metavar="DIR", help="copy the hostile HDF5 files here (fuzz seeds)")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"probe: {args.binary} is not an executable (build it first)")
    work = tempfile.mkdtemp(prefix="nfmimo-probe-")
    probe = Probe(args.binary, work)
    results = []
    try:
        t0 = time.monotonic()
        probe.make_fixtures()
        if args.keep_inputs:
            os.makedirs(args.keep_inputs, exist_ok=True)
            for n in os.listdir(probe.hostile_dir):
                shutil.copy(os.path.join(probe.hostile_dir, n), args.keep_inputs)
        cases = build_cases(probe)
        if args.only:
            cases = [c for c in cases if any(o in c.name for o in args.only)]
        print(f"probe: {len(cases)} cases, fixtures in {time.monotonic() - t0:.0f} s", flush=True)
        for i, case in enumerate(cases):
            try:
                res = probe.run_case(case, i)
            except Exception as e:  # a problem of the probe itself, not of nfmimo: reported, not counted as ok
                res = {"class": "probe_error", "detail": f"{type(e).__name__}: {e}"}
            res.update({"name": case.name, "group": case.group, "expect": case.expect})
            results.append(res)
            mark = "." if res["class"] == "ok" else res["class"][0].upper()
            print(mark, end="" if (i + 1) % 80 else "\n", flush=True)
            if not args.keep_work:
                shutil.rmtree(os.path.join(work, f"case{i:04d}"), ignore_errors=True)
        print()
    finally:
        probe.unmount()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    counts = {c: sum(r["class"] == c for r in results) for c in CLASSES}
    groups = {}
    for r in results:
        g = groups.setdefault(r["group"], {})
        g[r["class"]] = g.get(r["class"], 0) + 1
    report = {"binary": os.path.abspath(args.binary), "cases": len(results), "counts": counts, "by_group": groups,
              "notes": probe.notes, "results": results}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"probe: {len(results)} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for n in probe.notes:
        print("probe: note:", n)
    for r in results:
        if r["class"] != "ok":
            print(f"  {r['class']:13s} {r['name']}: {r['detail'][:160]}")
    print(f"probe: report in {args.out}")
    return 0 if counts["ok"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

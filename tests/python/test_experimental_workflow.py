"""The experimental workflow end to end (docs/experimental.md), as a smoke test on a tiny problem:
import a TU Delft .mat file (written by scipy), train every learned architecture for the imported array and
frequencies with `train --system meas.h5`, reconstruct with every method, export PNG and VTI.

The networks train for one epoch of 4 scenes: this checks that the path works (the imported system and grid
reach the model, the model is accepted for the measurement, outputs are written), not image quality.
"""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tudelft_fixture as fx  # noqa: E402

BINARY = os.environ.get("NFMIMO_BINARY") or str(Path(__file__).resolve().parents[2] / "build" / "nfmimo")
GRID = "-0.06:0.06:8,-0.06:0.06:8,0.44:0.58:8"
TARGET = (2, 5, 3)  # voxel of the point target in nfmimo's axes

# method -> architecture to train for it (None: no model)
METHODS = {
    "adjoint": None, "backprojection": None, "kirchhoff": None, "l1": None, "tv": None,
    "pnp": "denoiser", "deep2s": "unet3d", "cv-deep2s": "cv-unet3d", "deep2s-unet2d": "unet2d",
    "deep2s-resnet": "resnet", "deepdi": "deepdi", "deep2s-plus": "deep2s-plus",
}


def run(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
    p = subprocess.run([BINARY, *map(str, args)], capture_output=True, text=True, env=env)
    assert p.returncode == 0, f"nfmimo {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    d = tmp_path_factory.mktemp("workflow")
    axes = [np.linspace(*map(float, a.split(":")[:2]), int(a.split(":")[2])) for a in GRID.split(",")]
    position = np.array([axes[i][TARGET[i]] for i in range(3)])
    src = d / "scan.mat"
    fx.write_v5(str(src), fx.layout(fx.born([(fx.file_position(position), 1.0)]), False))
    meas = d / "meas.h5"
    run("import", "tudelft", src, "--out", meas, "--freqs", 5, "--grid", GRID)
    return d, meas


def test_train_system_file_uses_the_imported_geometry(imported):
    d, meas = imported
    out = d / "unet3d.h5"
    p = run("train", "--arch", "unet3d", "--width", 2, "--synthesize", "--system", meas, "--snr", 30,
            "--epochs", 1, "--epoch-size", 4, "--batch", 2, "--val-count", 2, "--device", "cpu", "--out", out)
    assert f"radar system from {meas}" in p.stdout
    with h5py.File(meas, "r") as m, h5py.File(out, "r") as w:
        for name in ("system/frequencies", "system/tx_positions", "system/rx_positions", "grid/x", "grid/y",
                     "grid/z"):
            np.testing.assert_array_equal(w[name][()], m[name][()], err_msg=name)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_reconstructs_the_measurement(imported, method):
    d, meas = imported
    arch = METHODS[method]
    args = []
    if arch:
        model = d / f"model_{arch}.h5"  # never the volume's name: reconstruct refuses to overwrite its model
        if not model.exists():
            extra = ["--width", 2] if arch not in ("resnet",) else ["--width", 4, "--blocks", 2]
            if arch == "denoiser":
                extra = ["--width", 2]
            run("train", "--arch", arch, *extra, "--synthesize", "--system", meas, "--epochs", 1, "--epoch-size",
                4, "--batch", 2, "--val-count", 2, "--device", "cpu", "--out", model, "--force")
        args = ["--model", model]
    vol, png, vti = d / f"{method}.h5", d / f"{method}.png", d / f"{method}.vti"
    run("reconstruct", meas, "--method", method, *args, "--device", "cpu", "--out", vol, "--png", png, "--vti", vti,
        "--force")
    with h5py.File(vol, "r") as f:
        v = np.abs(f["volumes"][0])
        assert v.shape == (8, 8, 8) and np.all(np.isfinite(v)) and v.max() > 0
        if arch is None and method in ("adjoint", "kirchhoff", "backprojection"):
            assert tuple(int(i) for i in np.unravel_index(np.argmax(v), v.shape)) == TARGET
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<VTKFile" in vti.read_bytes()[:200]


def test_train_system_file_refusals(imported):
    d, meas = imported
    base = ["train", "--arch", "unet3d", "--synthesize", "--epochs", "1", "--device", "cpu", "--out", str(d / "no.h5")]
    for extra, words in [
        (["--system", str(d / "missing.h5")], "is neither a system name (paper) nor an existing file"),
        (["--system", str(meas), "--freqs", "7"], "holds K = 5 frequencies"),
    ]:
        p = subprocess.run([BINARY, *base, *extra], capture_output=True, text=True)
        assert p.returncode == 2 and words in p.stderr, p.stderr
        assert not (d / "no.h5").exists()

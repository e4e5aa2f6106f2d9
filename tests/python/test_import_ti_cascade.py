"""nfmimo import ti-cascade on captures written in TI's layout by a numpy writer (ti_cascade_fixture.py).

Checks: the RX mapping and TDM TX order put every channel's data and position where TI's tables say; the sample
frequencies follow f_k = f_start + slope (t_adc + k / f_s); loops and frames are averaged; a calibration estimated
from a corner-reflector capture removes injected per-channel gain and phase-slope errors so that the exact channel
data come back; truncated or inconsistent files are refused with exit code 2 naming the file.
"""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ti_cascade_fixture as fx  # noqa: E402

BINARY = os.environ.get("NFMIMO_BINARY") or str(Path(__file__).resolve().parents[2] / "build" / "nfmimo")
ORDER = np.array(fx.RX_ORDER) - 1  # output receiver j <- device channel ORDER[j]
SCENE = [(np.array([0.02, 0.01, 0.45]), 1.0), (np.array([-0.03, -0.02, 0.6]), 0.7)]
REFLECTOR = np.array([0.03, 0.0, 0.5])


def run(*args, check=True):
    p = subprocess.run([BINARY, "--threads", "1", *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"nfmimo {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def capture(tmp_path, name, points, errors=None, scale=None, frames=3):
    folder = tmp_path / name
    folder.mkdir()
    scale = fx.write_capture(folder, fx.born(points), errors=errors, scale=scale, frames=frames)
    chirp = tmp_path / "chirp.json"
    fx.write_chirp(chirp)
    return folder, chirp, scale


def read(path):
    with h5py.File(path, "r") as f:
        return ({k: f[k][()] for k in ("measurements", "system/frequencies", "system/tx_positions",
                                       "system/rx_positions", "provenance/frequency_indices")},
                dict(f["provenance"].attrs))


def test_mapping_order_frequencies_and_averaging(tmp_path):
    folder, chirp, scale = capture(tmp_path, "scene", SCENE)
    out = tmp_path / "meas.h5"
    p = run("import", "ti-cascade", folder, "--chirp", chirp, "--out", out)
    assert "receiver j is device channel rx_order[j]" in p.stdout
    d, prov = read(out)
    np.testing.assert_allclose(d["system/frequencies"], fx.frequencies(), rtol=1e-12)
    np.testing.assert_allclose(d["system/tx_positions"], fx.tx_positions(), atol=1e-12)
    np.testing.assert_allclose(d["system/rx_positions"], fx.rx_positions_by_channel()[ORDER], atol=1e-12)
    # RX positions come out sorted along x for TI's order (a check of the table against the mapping).
    assert np.all(np.diff(d["system/rx_positions"][:, 0]) > 0)
    expected = scale * fx.born(SCENE)[:, :, ORDER]
    assert d["measurements"].shape == expected.shape == (32, 12, 16)
    # int16 rounding (0.5 count per part, averaged over 12 loop-frames): 1 count of slack.
    np.testing.assert_allclose(d["measurements"], expected, atol=1.0)
    assert prov["importer"] == "ti-cascade" and prov["field_rx_order"].startswith("13 14 15 16 1 2")


def test_frame_selection_and_sample_choice(tmp_path):
    folder, chirp, scale = capture(tmp_path, "scene", SCENE)
    out = tmp_path / "meas.h5"
    # Frames 0:1 average +a and -a offsets away; K = 5 of 32 samples -> round-half-up(j 31 / 4) = 0 8 16 23 31.
    run("import", "ti-cascade", folder, "--chirp", chirp, "--out", out, "--frames", "0:1", "--freqs", 5)
    d, _ = read(out)
    assert list(d["provenance/frequency_indices"]) == [0, 8, 16, 23, 31]
    expected = scale * fx.born(SCENE)[[0, 8, 16, 23, 31]][:, :, ORDER]
    np.testing.assert_allclose(d["measurements"], expected, atol=1.0)
    # One frame alone keeps its offset: the average really is over the chosen frames.
    run("import", "ti-cascade", folder, "--chirp", chirp, "--out", tmp_path / "f0.h5", "--frames", "0:0")
    d0, _ = read(tmp_path / "f0.h5")
    assert np.abs(d0["measurements"] - scale * fx.born(SCENE)[:, :, ORDER]).max() > 100


def test_calibration_recovers_the_channel_data(tmp_path):
    errors = fx.channel_errors(7)
    cal_folder, chirp, scale = capture(tmp_path, "reflector", [(REFLECTOR, 1.0)], errors=errors)
    scene_folder, _, _ = capture(tmp_path, "scene", SCENE, errors=errors, scale=scale)
    cal = tmp_path / "cal.h5"
    run("import", "ti-cascade", cal_folder, "--chirp", chirp, "--calibrate", "--target", ",".join(map(str, REFLECTOR)),
        "--out", cal)
    with h5py.File(cal, "r") as f:
        gain, slope = f["gain"][()], f["phase_slope"][()]
    # The estimate is the injected error (times the writer's scale), mapped to output receivers.
    np.testing.assert_allclose(slope, errors[1][:, ORDER], atol=1e-4)
    np.testing.assert_allclose(gain / scale, errors[0][:, ORDER], rtol=2e-3, atol=2e-3)

    raw, calibrated = tmp_path / "raw.h5", tmp_path / "calibrated.h5"
    run("import", "ti-cascade", scene_folder, "--chirp", chirp, "--out", raw)
    run("import", "ti-cascade", scene_folder, "--chirp", chirp, "--out", calibrated, "--calibration", cal)
    truth = fx.born(SCENE)[:, :, ORDER]
    r, _ = read(raw)
    c, prov = read(calibrated)
    err = lambda y: np.linalg.norm(y - truth) / np.linalg.norm(truth)  # noqa: E731
    assert err(r["measurements"] / scale) > 0.5  # the injected errors are large ...
    assert err(c["measurements"]) < 5e-3, err(c["measurements"])  # ... and calibration removes them
    assert "calibration applied" in prov["assumptions"]


def _frame_bytes():
    ch = fx.CHIRP
    return ch["loops"] * len(ch["tx_order"]) * ch["samples_per_chirp"] * 4 * 2 * 2


@pytest.mark.parametrize("case, words", [
    ("idx-truncated", ["slave1_0000_idx.bin", "numIdx", "truncated"]),
    ("data-truncated", ["slave2_0000_data.bin", "dataFileSize"]),
    ("split-mid-frame", ["master_0000_data.bin", "mid-frame"]),
    ("record-size", ["slave3_0000_idx.bin", "frame 1 has size"]),
    ("frame-count", ["slave1_0000_idx.bin", "master's lists 3"]),
    ("missing-device", ["slave2_0000_idx.bin", "cannot be opened"]),
])
def test_bad_capture_exits_2(tmp_path, case, words):
    folder, chirp, _ = capture(tmp_path, "scene", SCENE)
    fb = _frame_bytes()
    if case == "idx-truncated":
        p = folder / "slave1_0000_idx.bin"
        p.write_bytes(p.read_bytes()[:-10])
    elif case == "data-truncated":
        p = folder / "slave2_0000_data.bin"
        p.write_bytes(p.read_bytes()[:-100])
    elif case == "split-mid-frame":
        # Data and idx agree on the size, but the data end half-way through frame 2.
        p = folder / "master_0000_data.bin"
        data = p.read_bytes()[:2 * fb + fb // 2]
        p.write_bytes(data)
        fx.write_index(folder / "master_0000_idx.bin", [fb, fb, fb // 2], len(data))
    elif case == "record-size":
        fx.write_index(folder / "slave3_0000_idx.bin", [fb, fb - 4, fb], 3 * fb)
    elif case == "frame-count":
        p = folder / "slave1_0000_data.bin"
        p.write_bytes(p.read_bytes()[:2 * fb])
        fx.write_index(folder / "slave1_0000_idx.bin", [fb, fb], 2 * fb)
    elif case == "missing-device":
        (folder / "slave2_0000_idx.bin").unlink()
    out = tmp_path / "out.h5"
    p = run("import", "ti-cascade", folder, "--chirp", chirp, "--out", out, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith("out")]


def test_user_antenna_table_and_bad_chirp(tmp_path):
    folder, chirp, _ = capture(tmp_path, "scene", SCENE)
    table = tmp_path / "ant.json"
    table.write_text('{"design_frequency_hz": 76.8e9, "tx": ' + str(fx.TX_TABLE.tolist()) + ', "rx": '
                     + str([[float(a) * 2, 0.0] for a in fx.RX_AZIMUTH]) + ', "rx_order": ' + str(fx.RX_ORDER) + '}')
    out = tmp_path / "meas.h5"
    run("import", "ti-cascade", folder, "--chirp", chirp, "--antennas", table, "--out", out)
    d, _ = read(out)
    np.testing.assert_allclose(d["system/rx_positions"][:, 0], 2 * fx.rx_positions_by_channel()[ORDER, 0], atol=1e-12)
    bad = tmp_path / "bad.json"
    bad.write_text('{"start_frequency_hz": 77e9}')
    p = run("import", "ti-cascade", folder, "--chirp", bad, "--out", tmp_path / "x.h5", check=False)
    assert p.returncode == 2 and "bad.json" in p.stderr and "slope_hz_per_s" in p.stderr, p.stderr

"""nfmimo import tudelft on .mat files written by scipy (v5) and h5py (v7.3), never by nfmimo.

The files hold point targets simulated in numpy (tudelft_fixture.py) in front of a 16 TX x 9 RX irregular array
in the TU Delft axes (array in x-z, range along y). After import the adjoint's and Kirchhoff's peaks must sit at
the targets' voxels, the axis map must move them where it says, the frequency selection must pick the expected
indices, and bad files must stop with exit code 2 naming the file and the field, leaving no output.
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

# Grid of the checks: 1 cm voxels, about the array's resolution (lambda R / 2D ~ 1 cm at 10 GHz, 0.5 m, 0.6 m).
GRID = "-0.1:0.1:21,-0.1:0.1:21,0.35:0.65:31"
GX, GY, GZ = np.linspace(-0.1, 0.1, 21), np.linspace(-0.1, 0.1, 21), np.linspace(0.35, 0.65, 31)
# Two targets at voxels (in nfmimo's axes), away from the edges and from each other.
TARGETS = [((6, 13, 10), 1.0), ((14, 7, 20), 0.8)]
# The paper's 15 of 251 (4-16 GHz): round(j * 250 / 14), no ties for these sizes.
PAPER_INDICES = [0, 18, 36, 54, 71, 89, 107, 125, 143, 161, 179, 196, 214, 232, 250]


def voxel_position(ix, iy, iz):
    return np.array([GX[ix], GY[iy], GZ[iz]])


def scene_values(targets=TARGETS):
    return fx.born([(fx.file_position(voxel_position(*v)), a) for v, a in targets])


def run(*args, check=True):
    p = subprocess.run([BINARY, "--threads", "1", *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"nfmimo {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def write(path, variables, version):
    if version == "v5":
        fx.write_v5(str(path), variables)
    else:
        fx.write_v73(str(path), variables)
    return path


@pytest.fixture(params=[("v5", False), ("v5", True), ("v73", False), ("v73", True)],
                ids=["v5-experimental", "v5-synthetic", "v73-experimental", "v73-synthetic"])
def scene_file(request, tmp_path):
    version, synthetic = request.param
    return write(tmp_path / f"scene_{version}.mat", fx.layout(scene_values(), synthetic), version)


def image(measurements, method, tmp_path):
    out = tmp_path / f"{method}.h5"
    run("reconstruct", measurements, "--method", method, "--out", out, "--device", "cpu", "--force")
    with h5py.File(out, "r") as f:
        return np.abs(f["volumes"][0])


def assert_peaks_at(volume, targets):
    """The global maximum is a target; around each target (+-3 voxels) the maximum is that target's voxel."""
    peak = np.unravel_index(np.argmax(volume), volume.shape)
    assert tuple(int(i) for i in peak) in [v for v, _ in targets], f"global peak at {peak}"
    for v, _ in targets:
        lo = [max(0, i - 3) for i in v]
        box = volume[lo[0]:v[0] + 4, lo[1]:v[1] + 4, lo[2]:v[2] + 4]
        local = np.unravel_index(np.argmax(box), box.shape)
        assert tuple(int(a + b) for a, b in zip(local, lo)) == v, f"target {v}: local peak at {local} + {lo}"


def test_import_peaks_at_targets(scene_file, tmp_path):
    out = tmp_path / "meas.h5"
    p = run("import", "tudelft", scene_file, "--out", out, "--freqs", 15, "--grid", GRID)
    assert "axes (--axes x,z,y)" in p.stdout and "frequency selection: 15 of 251" in p.stdout
    with h5py.File(out, "r") as f:
        assert f.attrs["nfmimo_format"] == "measurements"
        assert list(f["provenance/frequency_indices"][()]) == PAPER_INDICES
        np.testing.assert_allclose(f["system/frequencies"][()], fx.FREQS[PAPER_INDICES], rtol=1e-12)
        # Positions remapped (x, z, y) and still in metres.
        np.testing.assert_allclose(f["system/tx_positions"][()], fx.TX[:, [0, 2, 1]], atol=1e-12)
        np.testing.assert_allclose(f["system/rx_positions"][()], fx.RX[:, [0, 2, 1]], atol=1e-12)
        assert f["measurements"].shape == (15, 16, 9)
        prov = f["provenance"].attrs
        assert prov["axis_map"] == "x,z,y"
        assert prov["source_file"] == str(Path(scene_file).resolve())
        assert prov["field_measurements"] in ("EMData.Values", "EMData")
        assert prov["field_frequencies"] in ("OperateFreq", "OperatingFreq")
        assert prov["field_tx_x"] in ("MIMOArray.Transmitter.X", "MIMOArray.Transmitter.TX")
        assert "phase convention" in prov["assumptions"]
        # The imported values are the file's, reordered [K, T, R].
        expected = np.transpose(scene_values()[:, :, PAPER_INDICES], (2, 1, 0))
        np.testing.assert_allclose(f["measurements"][()], expected, rtol=1e-6, atol=1e-7 * np.abs(expected).max())
    for method in ("adjoint", "kirchhoff"):
        assert_peaks_at(image(out, method, tmp_path), TARGETS)


def test_axis_map_moves_the_peaks(tmp_path):
    src = write(tmp_path / "scene.mat", fx.layout(scene_values(), False), "v5")
    out = tmp_path / "mirrored.h5"
    run("import", "tudelft", src, "--out", out, "--freqs", 15, "--grid", GRID, "--axes=-x,z,y")
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["system/tx_positions"][()], fx.TX[:, [0, 2, 1]] * [-1, 1, 1], atol=1e-12)
        assert f["provenance"].attrs["axis_map"] == "-x,z,y"
        np.testing.assert_array_equal(f["provenance/axis_matrix"][()], [[-1, 0, 0], [0, 0, 1], [0, 1, 0]])
    # x mirrored: the grid is symmetric, so voxel ix moves to 20 - ix.
    mirrored = [((20 - v[0], v[1], v[2]), a) for v, a in TARGETS]
    assert_peaks_at(image(out, "adjoint", tmp_path), mirrored)
    # Without the remap (x,y,z) the range stays along y: on a grid with y as the range axis the peaks sit at the
    # targets' file coordinates, with y and z swapped.
    plain = tmp_path / "plain.h5"
    run("import", "tudelft", src, "--out", plain, "--freqs", 15, "--axes", "x,y,z",
        "--grid", "-0.1:0.1:21,0.35:0.65:31,-0.1:0.1:21")
    vol = image(plain, "adjoint", tmp_path)
    assert_peaks_at(vol, [((v[0], v[2], v[1]), a) for v, a in TARGETS])


@pytest.mark.parametrize("args, expected", [
    (["--freqs", 15], PAPER_INDICES),
    (["--freqs", 2], [0, 250]),
    (["--freqs", 1], [0]),
    ([], list(range(251))),
    # 6..10 GHz holds indices 42..125 (84 frequencies, M - 1 = 83); K = 5 -> round(j * 83 / 4) = 0, 21, 42, 62, 83
    # (20.75 -> 21, 41.5 -> 42 half up, 62.25 -> 62).
    (["--freq-range", "6GHz:10GHz", "--freqs", 5], [42, 63, 84, 104, 125]),
    (["--freq-range", "6e9:10e9"], list(range(42, 126))),
])
def test_frequency_selection(tmp_path, args, expected):
    src = write(tmp_path / "scene.mat", fx.layout(scene_values(), True), "v73")
    out = tmp_path / "meas.h5"
    run("import", "tudelft", src, "--out", out, "--grid", GRID, *args)
    with h5py.File(out, "r") as f:
        assert list(f["provenance/frequency_indices"][()]) == expected
        np.testing.assert_allclose(f["system/frequencies"][()], fx.FREQS[expected], rtol=1e-12)
    assert np.isclose(fx.FREQS[42], 6.016e9) and np.isclose(fx.FREQS[125], 10e9)


def _without(variables, dotted):
    import copy
    v = copy.deepcopy(variables)
    *parents, leaf = dotted.split(".")
    node = v
    for p in parents:
        node = node[p]
    del node[leaf]
    return v


def _with(variables, dotted, value):
    import copy
    v = copy.deepcopy(variables)
    *parents, leaf = dotted.split(".")
    node = v
    for p in parents:
        node = node[p]
    node[leaf] = value
    return v


BASE = fx.layout(scene_values(), False)
NAN_VALUES = scene_values()
NAN_VALUES[2, 3, 18] = np.nan  # frequency index 18 is among the 15 chosen


@pytest.mark.parametrize("version", ["v5", "v73"])
@pytest.mark.parametrize("case, variables, words", [
    ("missing-field", _without(BASE, "MIMOArray.Receiver.Z"), ["'MIMOArray.Receiver.Z'", "missing"]),
    ("missing-values", _without(BASE, "EMData"), ["'EMData.Values'", "missing"]),
    ("missing-freqs", _without(BASE, "OperateFreq"), ["'OperateFreq'", "OperatingFreq"]),
    ("positions-matrix", _with(BASE, "MIMOArray.Transmitter.X", fx.TX[:, 0].reshape(4, 4)),
     ["'MIMOArray.Transmitter.X'", "[4 x 4]", "vector"]),
    ("positions-length", _with(BASE, "MIMOArray.Transmitter.Y", fx.TX[:15, 1]),
     ["MIMOArray.Transmitter.Y has 15", "disagree"]),
    ("values-transposed", _with(BASE, "EMData.Values", np.transpose(scene_values(), (1, 0, 2))),
     ["'EMData.Values'", "[16 x 9 x 251]", "[9 x 16 x 251]"]),
    ("values-real", _with(BASE, "EMData.Values", scene_values().real.copy()), ["'EMData.Values'", "real"]),
    ("values-nan", _with(BASE, "EMData.Values", NAN_VALUES), ["'EMData.Values'", "not finite", "(3, 4, 19)"]),
    ("position-nan", _with(BASE, "MIMOArray.Receiver.X", np.where(np.arange(9) == 4, np.nan, fx.RX[:, 0])),
     ["'MIMOArray.Receiver.X'", "element 4", "not finite"]),
    ("freq-in-ghz", _with(BASE, "OperateFreq", fx.FREQS / 1e9), ["'OperateFreq'", "--frequency-unit"]),
])
def test_bad_input_exits_2(tmp_path, version, case, variables, words):
    src = write(tmp_path / f"{case}.mat", variables, version)
    out = tmp_path / "out.h5"
    p = run("import", "tudelft", src, "--out", out, "--freqs", 15, "--grid", GRID, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert str(src) in p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
    assert sorted(os.listdir(tmp_path)) == [src.name], "output or temporary left behind"


@pytest.mark.parametrize("version", ["v5", "v73"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_file_exits_2(tmp_path, version, fraction):
    src = write(tmp_path / "scene.mat", BASE, version)
    data = src.read_bytes()
    src.write_bytes(data[:int(len(data) * fraction)])
    out = tmp_path / "out.h5"
    p = run("import", "tudelft", src, "--out", out, "--freqs", 15, "--grid", GRID, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert str(src) in p.stderr and "nfmimo: error:" in p.stderr, p.stderr
    assert not out.exists()


def test_existing_output_is_kept(tmp_path):
    src = write(tmp_path / "scene.mat", BASE, "v5")
    out = tmp_path / "meas.h5"
    out.write_bytes(b"precious")
    p = run("import", "tudelft", src, "--out", out, check=False)
    assert p.returncode == 2 and "--force" in p.stderr
    assert out.read_bytes() == b"precious"

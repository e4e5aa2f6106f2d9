"""Measurement, volume and dataset files from Python, without h5py: round trips, CLI files, bad files."""
import numpy as np
import pytest

import nfmimo
from conftest import TINY_GRID_ARG, crandn


def test_measurement_round_trip(tmp_path, tiny_system, tiny_grid):
    rng = np.random.default_rng(1)
    y = crandn(rng, 3, *tiny_system.measurement_shape)
    x = crandn(rng, 3, *tiny_grid.shape)
    snr = np.array([10, 20, 30], np.float32)
    nfmimo.write_measurements(tmp_path / "m.h5", y, tiny_system, grid=tiny_grid, targets=x, snr_db=snr)
    m = nfmimo.read_measurements(tmp_path / "m.h5")
    assert m.system == tiny_system and m.grid == tiny_grid
    np.testing.assert_array_equal(m.y, y)
    np.testing.assert_array_equal(m.targets, x)
    np.testing.assert_array_equal(m.snr_db, snr)
    assert nfmimo.read_measurements(tmp_path / "m.h5", targets=False).targets is None
    # One frame stored as [K, T, R] stays that shape.
    nfmimo.write_measurements(tmp_path / "one.h5", y[0], tiny_system)
    one = nfmimo.read_measurements(tmp_path / "one.h5")
    assert one.y.shape == tiny_system.measurement_shape and one.grid is None


def test_existing_files_are_kept_unless_overwrite(tmp_path, tiny_system):
    y = np.zeros((1,) + tiny_system.measurement_shape, np.complex64)
    nfmimo.write_measurements(tmp_path / "m.h5", y, tiny_system)
    with pytest.raises(ValueError, match="exists"):
        nfmimo.write_measurements(tmp_path / "m.h5", y + 1, tiny_system)
    assert np.all(nfmimo.read_measurements(tmp_path / "m.h5").y == 0)
    nfmimo.write_measurements(tmp_path / "m.h5", y + 1, tiny_system, overwrite=True)
    assert np.all(nfmimo.read_measurements(tmp_path / "m.h5").y == 1)


def test_bad_input_names_the_problem(tmp_path, tiny_system, tiny_grid):
    with pytest.raises(ValueError, match="missing.h5"):
        nfmimo.read_measurements(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="text.h5"):
        nfmimo.read_measurements(tmp_path / "text.h5")
    y = np.full((1,) + tiny_system.measurement_shape, np.nan, np.complex64)
    # The writer refuses what the reader would refuse, and leaves no file.
    with pytest.raises(ValueError, match=r"nan.h5.*/measurements.*non-finite"):
        nfmimo.write_measurements(tmp_path / "nan.h5", y, tiny_system)
    assert not (tmp_path / "nan.h5").exists()
    # The reader refuses non-finite values that another writer (h5py here) put in a file.
    nfmimo.write_measurements(tmp_path / "nan.h5", np.zeros_like(y), tiny_system)
    import h5py
    with h5py.File(tmp_path / "nan.h5", "r+") as f:
        f["measurements"][...] = y
    with pytest.raises(ValueError, match=r"nan.h5.*/measurements.*(finite|NaN)"):
        nfmimo.read_measurements(tmp_path / "nan.h5")
    with pytest.raises(ValueError, match="targets: 2 frames, but y has 1"):
        nfmimo.write_measurements(tmp_path / "t.h5", y, tiny_system, grid=tiny_grid,
                                  targets=np.zeros((2,) + tiny_grid.shape, np.complex64))
    assert not (tmp_path / "t.h5").exists()


def test_volume_round_trip_and_cli_volumes(tmp_path, cli, tiny_system, tiny_grid):
    rng = np.random.default_rng(2)
    v = np.abs(crandn(rng, 2, *tiny_grid.shape))
    nfmimo.write_volumes(tmp_path / "v.h5", v, tiny_grid, method="mine")
    back = nfmimo.read_volumes(tmp_path / "v.h5")
    assert back.grid == tiny_grid and back.method == "mine"
    np.testing.assert_array_equal(back.volumes, v)
    c = crandn(rng, 1, *tiny_grid.shape)
    nfmimo.write_volumes(tmp_path / "c.h5", c, tiny_grid)
    np.testing.assert_array_equal(nfmimo.read_volumes(tmp_path / "c.h5").volumes, c)
    # The CLI reads what Python wrote and Python reads what the CLI wrote.
    nfmimo.write_measurements(tmp_path / "m.h5", crandn(rng, 1, *tiny_system.measurement_shape), tiny_system,
                              grid=tiny_grid)
    cli("reconstruct", tmp_path / "m.h5", "--device", "cpu", "--out", tmp_path / "r.h5")
    r = nfmimo.read_volumes(tmp_path / "r.h5")
    assert r.method == "adjoint (exact)" and r.volumes.shape == (1,) + tiny_grid.shape
    assert "volumes" in cli("info", tmp_path / "v.h5").stdout


def test_dataset_from_the_cli(tmp_path, cli):
    cli("synthesize", "--out", tmp_path / "d.h5", "--count", 5, "--seed", 4, "--freqs", 4, TINY_GRID_ARG,
        "--device", "cpu", "--snr", "20:40")
    info = nfmimo.read_dataset_info(tmp_path / "d.h5")
    assert info["seed"] == 4 and info["count"] == 5 and info["complete"] and info["rows"] == 5
    assert info["config"]["snr_db"] == {"min": 20.0, "max": 40.0}
    d = nfmimo.read_measurements(tmp_path / "d.h5")
    assert d.y.shape == (5, 4, 12, 13) and d.targets.shape == (5, 8, 8, 8) and d.snr_db.shape == (5,)
    with pytest.raises(ValueError):
        nfmimo.read_dataset_info(tmp_path / "missing.h5")

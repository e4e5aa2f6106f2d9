"""The synthesizer from Python gives the same samples as `nfmimo synthesize` for the same seed and config."""
import json

import numpy as np
import pytest

import nfmimo
from conftest import TINY_GRID_ARG, rel_err


def cli_dataset(cli, path, *args):
    cli("synthesize", "--out", path, "--freqs", 4, TINY_GRID_ARG, "--device", "cpu", *args)
    return nfmimo.read_measurements(path)


def test_same_samples_as_the_cli(tmp_path, cli, tiny_system, tiny_grid):
    d = cli_dataset(cli, tmp_path / "d.h5", "--count", 7, "--seed", 9001, "--batch", 3)
    synth = nfmimo.Synthesizer(tiny_system, tiny_grid, seed=9001, device="cpu")
    y, x, snr = synth.batch(0, 7)
    np.testing.assert_array_equal(y, d.y)  # CPU measurements are bit-identical for any batch split
    np.testing.assert_array_equal(x, d.targets)
    np.testing.assert_array_equal(snr, d.snr_db)
    # Any sub-range is the same samples.
    y2, x2, _ = synth.batch(4, 2)
    np.testing.assert_array_equal(y2, d.y[4:6])
    np.testing.assert_array_equal(x2, d.targets[4:6])


def test_same_samples_with_a_config_and_noiseless_forward_parity(tmp_path, cli, tiny_system, tiny_grid):
    config = {"objects": {"min": 2, "max": 3}, "types": ["cuboid", "point"], "phase": "constant"}
    (tmp_path / "c.json").write_text(json.dumps(config))
    d = cli_dataset(cli, tmp_path / "d.h5", "--count", 4, "--seed", 3, "--config", tmp_path / "c.json", "--snr",
                    "none")
    for cfg in (config, tmp_path / "c.json"):
        y, x, snr = nfmimo.Synthesizer(tiny_system, tiny_grid, config=cfg, snr="none", seed=3, device="cpu").batch(0, 4)
        np.testing.assert_array_equal(y, d.y)
        np.testing.assert_array_equal(x, d.targets)
        assert np.all(np.isinf(snr))
    # Noiseless measurements are the forward operator of the targets: the CLI's forward, number for number.
    assert rel_err(nfmimo.Operator(tiny_system, tiny_grid).forward(d.targets), d.y) <= 1e-6
    assert nfmimo.read_dataset_info(tmp_path / "d.h5")["config"] == \
        nfmimo.Synthesizer(tiny_system, tiny_grid, config=config, snr="none", device="cpu").config


def test_bad_settings_raise_value_error(tiny_system, tiny_grid):
    with pytest.raises(ValueError, match="config"):
        nfmimo.Synthesizer(tiny_system, tiny_grid, config={"objekts": 3}, device="cpu")
    with pytest.raises(ValueError, match="snr"):
        nfmimo.Synthesizer(tiny_system, tiny_grid, snr="loud", device="cpu")
    with pytest.raises(ValueError, match="seed must be a non-negative"):
        nfmimo.Synthesizer(tiny_system, tiny_grid, seed=-1, device="cpu")
    with pytest.raises(ValueError, match="count must be non-negative"):
        nfmimo.Synthesizer(tiny_system, tiny_grid, device="cpu").batch(0, -1)
    with pytest.raises(ValueError, match="device"):
        nfmimo.Synthesizer(tiny_system, tiny_grid, device="tpu")


def test_synthesize_dataset_writes_what_the_cli_writes(tmp_path, cli, tiny_system, tiny_grid):
    d = cli_dataset(cli, tmp_path / "cli.h5", "--count", 6, "--seed", 21, "--snr", "10:20", "--shard", "1/2")
    r = nfmimo.synthesize_dataset(tmp_path / "py.h5", 6, tiny_system, tiny_grid, snr="10:20", seed=21, shard=(1, 2),
                                  device="cpu")
    assert r["complete"] and r["written"] == 3
    p = nfmimo.read_measurements(tmp_path / "py.h5")
    np.testing.assert_array_equal(p.y, d.y)
    np.testing.assert_array_equal(p.targets, d.targets)
    np.testing.assert_array_equal(p.snr_db, d.snr_db)
    a, b = nfmimo.read_dataset_info(tmp_path / "py.h5"), nfmimo.read_dataset_info(tmp_path / "cli.h5")
    for key in ("config", "seed", "count", "shard", "first_sample", "rows", "complete"):
        assert a[key] == b[key], key
    with pytest.raises(ValueError, match="exists"):
        nfmimo.synthesize_dataset(tmp_path / "py.h5", 6, tiny_system, tiny_grid, seed=21, device="cpu")
    with pytest.raises(ValueError, match="shard"):
        nfmimo.synthesize_dataset(tmp_path / "bad.h5", 6, tiny_system, tiny_grid, shard=(2, 2), device="cpu")

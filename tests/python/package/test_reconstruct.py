"""nfmimo.reconstruct: every method of the CLI with the same parameters, the same numbers, reusable models."""
import numpy as np
import pytest

import nfmimo
from conftest import SOURCE_DIR, crandn, rel_err

SAMPLE = SOURCE_DIR / "data/samples/paper_k15_snr30.h5"
DEEP2S = SOURCE_DIR / "models/trained/deep2s_paper_k15_snr30.h5"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory, tiny_system, tiny_grid):
    path = tmp_path_factory.mktemp("recon") / "m.h5"
    y, x, snr = nfmimo.Synthesizer(tiny_system, tiny_grid, seed=5, device="cpu").batch(0, 2)
    nfmimo.write_measurements(path, y, tiny_system, grid=tiny_grid, targets=x, snr_db=snr)
    return path


def cli_volumes(cli, tmp_path, infile, *args):
    out = tmp_path / "cli.h5"
    cli("reconstruct", infile, "--device", "cpu", "--out", out, "--force", *args)
    return nfmimo.read_volumes(out).volumes


def test_every_cli_method_is_offered():
    assert nfmimo.methods() == ["adjoint", "backprojection", "kirchhoff", "deep2s", "cv-deep2s", "deep2s-unet2d",
                                "deep2s-resnet", "deepdi", "deep2s-plus", "l1", "tv", "pnp"]


@pytest.mark.parametrize("method,params", [("adjoint", {}), ("kirchhoff", {}),
                                           ("l1", {"iterations": 5, "lambda": 0.05}), ("tv", {"iterations": 4})])
def test_analytic_and_iterative_match_the_cli(tmp_path, cli, tiny_file, method, params):
    m = nfmimo.read_measurements(tiny_file)
    cli_args = ["--method", method, "--complex"] + [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
    expected = cli_volumes(cli, tmp_path, tiny_file, *cli_args)
    got = nfmimo.reconstruct(m.y, m.system, method=method, grid=m.grid, device="cpu", complex=True, params=params)
    assert got.dtype == np.complex64 and got.shape == expected.shape
    assert rel_err(got, expected) <= 1e-6
    mag = nfmimo.reconstruct(m.y, m.system, method=method, grid=m.grid, device="cpu", params=params)
    assert mag.dtype == np.float32
    np.testing.assert_allclose(mag, np.abs(got), rtol=1e-6, atol=0)


@pytest.mark.parametrize("arch,method", [("unet3d", "deep2s"), ("cv-unet3d", "cv-deep2s"),
                                         ("unet2d", "deep2s-unet2d"), ("resnet", "deep2s-resnet"),
                                         ("deepdi", "deepdi"), ("deep2s-plus", "deep2s-plus")])
def test_learned_methods_match_the_cli_and_reuse_the_model(tmp_path, cli, tiny_file, tiny_system, tiny_grid,
                                                           arch, method):
    path = tmp_path / f"{arch}.h5"
    model = nfmimo.Model.create(path, arch, tiny_system, tiny_grid, width=2, blocks=2)
    m = nfmimo.read_measurements(tiny_file)
    expected = cli_volumes(cli, tmp_path, tiny_file, "--method", method, "--model", path)
    first = nfmimo.reconstruct(m.y, m.system, method=method, model=model, device="cpu")
    second = nfmimo.reconstruct(m.y[::-1].copy(), m.system, method=method, model=model, device="cpu")
    by_path = nfmimo.reconstruct(m.y, m.system, method=method, model=path, grid=tiny_grid, device="cpu")
    assert model._model.cached_pipelines == 1
    assert rel_err(first, expected) <= 1e-6
    np.testing.assert_array_equal(second, first[::-1])
    np.testing.assert_array_equal(by_path, first)


def test_pnp_matches_the_cli(tmp_path, cli, tiny_file, tiny_system, tiny_grid):
    path = tmp_path / "denoiser.h5"
    nfmimo.Model.create(path, "unet3d", tiny_system, tiny_grid, width=2, role="denoiser")
    m = nfmimo.read_measurements(tiny_file)
    expected = cli_volumes(cli, tmp_path, tiny_file, "--method", "pnp", "--model", path, "--complex",
                           "--param", "iterations=3")
    got = nfmimo.reconstruct(m.y, m.system, method="pnp", model=nfmimo.Model(path), grid=tiny_grid, device="cpu",
                             complex=True, iterations=3)
    assert rel_err(got, expected) <= 1e-6


def test_shipped_deep2s_on_the_sample_from_numpy_and_torch(tmp_path, cli):
    m = nfmimo.read_measurements(SAMPLE, targets=False)
    y = m.y[:1]
    expected = cli_volumes(cli, tmp_path, SAMPLE, "--method", "deep2s", "--model", DEEP2S)[:1]
    got = nfmimo.reconstruct(y, m.system, method="deep2s", model=nfmimo.Model(DEEP2S), device="cpu")
    assert got.shape == (1, 25, 25, 49)
    assert rel_err(got, expected) <= 1e-6
    torch = pytest.importorskip("torch")
    t = nfmimo.reconstruct(torch.from_numpy(y), m.system, method="deep2s", model=DEEP2S, device="cpu")
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), got)


def test_errors_carry_the_engine_messages(tiny_file, tiny_system, tiny_grid, tmp_path):
    m = nfmimo.read_measurements(tiny_file)
    with pytest.raises(ValueError, match=r"unknown method 'nope' \(known: adjoint, backprojection"):
        nfmimo.reconstruct(m.y, m.system, method="nope", grid=m.grid)
    with pytest.raises(ValueError, match="method 'deep2s' needs a weights file"):
        nfmimo.reconstruct(m.y, m.system, method="deep2s", grid=m.grid)
    with pytest.raises(ValueError, match="is not a number"):
        nfmimo.reconstruct(m.y, m.system, method="l1", grid=m.grid, params={"lambda": "big"})
    with pytest.raises(ValueError, match=r"y: expected shape \(\.\.\., 4, 12, 13\)"):
        nfmimo.reconstruct(m.y[..., :5], m.system, grid=m.grid)
    with pytest.raises(ValueError, match="differs"):
        nfmimo.reconstruct(np.zeros((1, 15, 12, 13), np.complex64), nfmimo.paper_system(15), method="deep2s",
                           model=nfmimo.Model(DEEP2S), grid=tiny_grid)
    with pytest.raises(ValueError, match=str(tmp_path / "missing.h5")):
        nfmimo.Model(tmp_path / "missing.h5")

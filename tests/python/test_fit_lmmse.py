"""tools/scripts/fit_lmmse.py: the LMMSE fit against closed forms, and the deepdi file it writes, read and run by
the CLI. Small systems only (K = 2, an 8 x 8 x 8 grid): a few seconds."""
import json
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("NFMIMO_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD_DIR = pathlib.Path(os.environ.get("NFMIMO_BUILD_DIR", SOURCE_DIR / "build"))
NFMIMO = os.environ.get("NFMIMO_BINARY", str(BUILD_DIR / "nfmimo"))
sys.path.insert(0, str(SOURCE_DIR / "tools" / "scripts"))
sys.path.insert(0, str(BUILD_DIR / "python"))

import fit_lmmse  # noqa: E402

TINY_GRID_ARG = "--grid=-0.05:0.05:8,-0.05:0.05:8,0.4:0.5:8"


def gaussian_pairs(rng, n, A, sigma_x, sigma_n, sparsity=None):
    """x ~ CN(0, sigma_x^2 I) (optionally with voxels zeroed at random), y = A x + CN(0, sigma_n^2 I)."""
    M, V = A.shape
    x = sigma_x * (rng.standard_normal((n, V)) + 1j * rng.standard_normal((n, V))) / np.sqrt(2)
    if sparsity is not None:
        x *= rng.random((n, V)) < sparsity
    noise = sigma_n * (rng.standard_normal((n, M)) + 1j * rng.standard_normal((n, M))) / np.sqrt(2)
    return (x @ A.T + noise).astype(np.complex64), x.astype(np.complex64)


def fit_from(y, x, chunk=1000):
    pairs = fit_lmmse.Pairs(y.shape[1], x.shape[1])
    for i in range(0, len(y), chunk):
        pairs.add(y[i:i + chunk], x[i:i + chunk])
    return fit_lmmse.LmmseFit(pairs.finish(), chunk=257)


def test_fit_converges_to_the_closed_form_lmmse():
    # Known covariances: C_x = s_x^2 I, C_n = s_n^2 I, so W* = s_x^2 A^H (s_x^2 A A^H + s_n^2 I)^-1. The fit from
    # N samples (eps -> 0) has a relative error of order sqrt(M / N) ~ 0.03 here; a wrong conjugation or
    # transposition gives an error of order 1.
    rng = np.random.default_rng(3)
    M, V, N = 12, 20, 20000
    A = (rng.standard_normal((M, V)) + 1j * rng.standard_normal((M, V))) / np.sqrt(2 * V)
    sx, sn = 1.0, 0.3
    y, x = gaussian_pairs(rng, N, A, sx, sn)
    fit = fit_from(y, x)
    W = fit.weights(1e-9).astype(np.complex128)
    exact = sx**2 * A.conj().T @ np.linalg.inv(sx**2 * A @ A.conj().T + sn**2 * np.eye(M))
    err = np.linalg.norm(W - exact) / np.linalg.norm(exact)
    assert err < 0.06, f"relative error of the fitted W against the closed form: {err:.3g}"
    # Its mean-square error on fresh pairs is the LMMSE's, within the same sampling error.
    yt, xt = gaussian_pairs(rng, 4000, A, sx, sn)
    mse_fit = np.mean(np.abs(yt @ W.T - xt) ** 2)
    mse_opt = np.real(np.trace(sx**2 * np.eye(V) - exact @ A * sx**2)) / V
    assert abs(mse_fit / mse_opt - 1) < 0.05, (mse_fit, mse_opt)


@pytest.mark.parametrize("eps", [1e-4, 3e-2, 1.0])
def test_eigen_and_sparse_paths_equal_the_dense_ridge_formula(eps):
    # The factored computation (eigendecomposition, sparse X, complex64 products) against C_xy (C_yy + eps I)^-1
    # in float64 on dense matrices, on sparse scenes as the synthesizer's; more pairs than measurements and
    # fewer, where eps alone makes C_yy invertible. Tolerance: complex64 factors (rounding 6e-8), amplified by
    # the condition number of C_yy + eps I, with a floor of 2e-4 for the accumulated products.
    rng = np.random.default_rng(11)
    M, V = 30, 50
    A = (rng.standard_normal((M, V)) + 1j * rng.standard_normal((M, V))) / np.sqrt(2 * V)
    for N in (400, 20):
        y, x = gaussian_pairs(rng, N, A, 1.0, 0.05, sparsity=0.1)
        fit = fit_from(y, x, chunk=7)
        W = fit.weights(eps)
        ref = fit_lmmse.lmmse_dense_reference(x, y, eps)
        cond = (fit.lam.max() + eps * fit.scale) / (fit.lam.min() + eps * fit.scale)
        tol = max(2e-4, 3e-7 * cond)
        err = np.linalg.norm(W - ref) / np.linalg.norm(ref)
        assert np.all(np.isfinite(W)) and err < tol, f"N = {N}: {err:.3g} (condition {cond:.3g})"
        yv = y[:9]
        est = fit.estimate(eps, yv)
        err = np.linalg.norm(est - yv @ ref.T) / np.linalg.norm(yv @ ref.T)
        assert err < tol, f"N = {N}: validation estimate {err:.3g} (condition {cond:.3g})"


def test_means_are_reported_as_zero_for_zero_mean_data_and_not_otherwise():
    rng = np.random.default_rng(5)
    M, V, N = 8, 10, 4000
    A = (rng.standard_normal((M, V)) + 1j * rng.standard_normal((M, V))) / np.sqrt(2 * V)
    y, x = gaussian_pairs(rng, N, A, 1.0, 0.1)
    pairs = fit_lmmse.Pairs(M, V)
    pairs.add(y, x)
    mx, my = pairs.finish().mean_report()
    assert mx < 4 / np.sqrt(N) and my < 4 / np.sqrt(N)
    pairs = fit_lmmse.Pairs(M, V)
    pairs.add(y + 1, x + 1)
    mx, my = pairs.finish().mean_report()
    assert mx > 0.5


def run(*args):
    p = subprocess.run([NFMIMO, "--threads", "1", *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny unet3d (width 4, K = 2, 8^3 grid) and the deepdi file fitted from 400 pairs."""
    d = tmp_path_factory.mktemp("lmmse")
    common = ["--system", "paper", "--freqs", "2", "--snr", "30", TINY_GRID_ARG]
    run("train", "--arch", "unet3d", "--synthesize", *common, "--width", "4", "--epochs", "1", "--epoch-size", "4",
        "--batch", "2", "--val-count", "2", "--device", "cpu", "--out", str(d / "unet.h5"))
    run("synthesize", "--out", str(d / "meas.h5"), "--count", "3", *common, "--seed", "5", "--device", "cpu")
    rc = fit_lmmse.main(["--unet", str(d / "unet.h5"), "--out", str(d / "deepdi.h5"), "--pairs", "400",
                         "--val-pairs", "16", "--eps", "1e-3,0.1", "--chunk", "128",
                         "--python", str(BUILD_DIR / "python"), "--json", str(d / "fit.json")])
    assert rc == 0
    return d


def test_written_file_holds_the_estimator_and_the_transferred_unet(tiny):
    import nfmimo
    record = json.loads((tiny / "fit.json").read_text())
    with h5py.File(tiny / "deepdi.h5", "r") as f:
        assert f.attrs["architecture"] == "deepdi" and int(f.attrs["input_channels"]) == 2
        assert json.loads(f.attrs["training"])["start"] == "lmmse"
        with h5py.File(tiny / "unet.h5", "r") as u:
            for name in u["parameters"]:
                src, dst = u["parameters"][name][()], f["parameters"][name][()]
                if name == "enc1.block1.conv.weight":  # the magnitude filter on both input channels
                    assert dst.shape == (src.shape[0], 2) + src.shape[2:]
                    np.testing.assert_array_equal(dst[:, 0], src[:, 0])
                    np.testing.assert_array_equal(dst[:, 1], src[:, 0])
                else:
                    np.testing.assert_array_equal(dst, src)
    W, b = fit_lmmse.read_dense(tiny / "deepdi.h5")
    assert not np.any(b)
    # The same 400 pairs (the synthesizer is deterministic per seed and index), the dense formula, times the
    # recorded input calibration: the file's dense layer is c W, up to complex64 rounding.
    syn = nfmimo.Synthesizer(nfmimo.paper_system(2), nfmimo.linspace_grid((-0.05, 0.05, 8), (-0.05, 0.05, 8),
                                                                          (0.4, 0.5, 8)), snr="30", seed=7,
                             device="cpu")
    y, x, *_ = syn.batch(0, 400)
    ref = fit_lmmse.lmmse_dense_reference(x.reshape(400, -1), y.reshape(400, -1),
                                          record["eps_relative_to_trace_over_m"])
    ref *= record["input_calibration"]
    err = np.linalg.norm(W - ref) / np.linalg.norm(ref)
    assert err < 1e-3, f"dense layer against c C_xy (C_yy + eps I)^-1: {err:.3g}"
    assert record["validation_psnr_db"] == max(r["val_psnr_db"] for r in record["eps_table"])


def test_cli_reads_runs_and_trains_from_the_file(tiny):
    info = run("info", str(tiny / "deepdi.h5"))
    assert "deepdi" in info
    run("reconstruct", str(tiny / "meas.h5"), "-o", str(tiny / "rec.h5"), "--method", "deepdi", "--model",
        str(tiny / "deepdi.h5"), "--device", "cpu")
    with h5py.File(tiny / "rec.h5", "r") as f:
        v = f["volumes"][()]
    assert v.shape[0] == 3 and np.all(np.isfinite(v)) and v.max() > 0
    run("train", "--arch", "deepdi", "--synthesize", "--system", "paper", "--freqs", "2", "--snr", "30",
        TINY_GRID_ARG, "--width", "4", "--init", str(tiny / "deepdi.h5"), "--epochs", "1", "--epoch-size", "2",
        "--batch", "2", "--val-count", "2", "--device", "cpu", "--out", str(tiny / "trained.h5"))
    assert (tiny / "trained.h5").exists()


def test_refuses_a_unet_source_that_is_not_unet3d(tiny, tmp_path):
    with pytest.raises(SystemExit, match="unet3d"):  # a deepdi file is no U-Net source
        fit_lmmse.write_deepdi(str(tmp_path / "x.h5"), str(tiny / "deepdi.h5"), np.zeros((512, 312), np.complex64),
                               np.zeros(512, np.complex64), {})
    assert not list(tmp_path.iterdir())

#!/usr/bin/env python3
"""DeepDI's data-fitted start: the linear minimum-mean-square-error (LMMSE) estimator of the complex scene from
the measurements, fitted on synthesized (scene, measurement) pairs alone, written as a complete `deepdi` weights
file (dense layer = the estimator, U-Net transferred from a trained Deep2S U-Net) for `nfmimo train --init` and
`nfmimo reconstruct/evaluate --method deepdi --model` (docs/models.md, "DeepDI's LMMSE start").

The estimator is purely learned: the radar operator A never enters it; the synthesizer's forward model only
makes the training pairs. With column vectors x (V voxels) and y (M = K T R measurements) and N pairs stacked as
rows of X [N, V] and Y [N, M]:

    C_yy = Y^T conj(Y) / N,   C_xy = X^T conj(Y) / N,   W = C_xy (C_yy + eps I)^-1

Zero means: the synthesizer gives every voxel a uniform random phase, so E[x] = 0 and E[y] = 0 exactly (a
linear map of x plus zero-mean noise); the fit measures both sample means and reports them. eps is chosen on a
held-out validation set (by the evaluation protocol's PSNR of the normalised magnitude |W y|), never the test set.

How it stays affordable on one CPU thread (Debian's numpy runs the reference BLAS, about 1 GFLOP/s): the scenes
are sparse (a few per cent of the voxels), so X is kept as a sparse matrix and C_xy is never formed; with the
eigendecomposition C_yy = U diag(l) U^H (float64),

    W = X^T [conj(Y) U diag(1 / (l + eps)) U^H] / N

costs two dense N x M x M products and one sparse product, and each eps candidate's validation costs
N x M x n_val. Peak resident memory at K = 15: 2.5 GB measured with N = 16 384 (Y, P, G and W).

The composite's input convention (models/composite.hpp): the dense layer sees y * s with s = 1 / max|A^H y| per
frame and feeds its complex output, as [Re, Im] channels and without further normalisation, to the CV U-Net. The
U-Net (by transfer from a Deep2S unet3d: the magnitude filter on both input channels, models/transfer.hpp) was
trained on inputs whose largest magnitude is 1, so the dense weights are c W with c the median over the
validation frames of max|A^H y| / max|W y|: then the dense output of a typical frame peaks at 1. Computing s needs
A^H y, as the pipeline itself does; that constant is the only place the operator appears.

Usage (paper setting; the nfmimo Python package from the build: PYTHONPATH=build/python):
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 python3 tools/scripts/fit_lmmse.py \\
        --unet models/trained/deep2s_paper_k15_snr30.h5 --out deepdi_lmmse.h5
    python3 tools/scripts/fit_lmmse.py score --data test.h5 --model deepdi_lmmse.h5   # the estimator alone
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The defaults of `train_zoo.sh --models deepdi` (docs/models.md): the zoo's validation scenes (seed 1 000 001,
# the first 32 of them are the zoo's validation set) and training pairs of a seed no training run uses.
TRAIN_SEED, VAL_SEED = 7, 1000001
EPS_GRID = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0]  # times trace(C_yy) / M


def log(msg):
    print(f"fit_lmmse: {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------------
# The estimator (numpy and scipy only: importable by the tests without the nfmimo package)


class Pairs:
    """N training pairs: Y dense [N, M] complex64, X sparse CSR [N, V] complex64 (rows are scenes)."""

    def __init__(self, samples, voxels):
        self.samples, self.voxels = samples, voxels
        self.y_chunks, self.x_chunks = [], []
        self.sum_y = np.zeros(samples, np.complex128)
        self.sum_x = np.zeros(voxels, np.complex128)
        self.energy_x = 0.0

    def add(self, y, x):
        import scipy.sparse as sp
        y = np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.complex64)
        x = x.reshape(len(x), -1).astype(np.complex64, copy=False)
        if y.shape[1] != self.samples or x.shape[1] != self.voxels:
            raise ValueError(f"pairs of shape {y.shape[1]} / {x.shape[1]}, expected {self.samples} / {self.voxels}")
        self.y_chunks.append(y)
        self.x_chunks.append(sp.csr_matrix(x))
        self.sum_y += y.sum(0)
        self.sum_x += x.sum(0)
        self.energy_x += float(np.sum(np.abs(x) ** 2))

    def finish(self):
        import scipy.sparse as sp
        self.Y = np.concatenate(self.y_chunks)
        self.X = sp.vstack(self.x_chunks).tocsr()
        self.y_chunks = self.x_chunks = None
        self.n = self.Y.shape[0]
        return self

    def mean_report(self):
        """|sample mean| relative to the RMS, of x and y: near 1 / sqrt(N) when the true means are zero."""
        rms_x = math.sqrt(self.energy_x / (self.n * self.voxels))
        rms_y = float(np.sqrt(np.mean(np.abs(self.Y) ** 2)))
        return (float(np.sqrt(np.mean(np.abs(self.sum_x / self.n) ** 2))) / rms_x,
                float(np.sqrt(np.mean(np.abs(self.sum_y / self.n) ** 2))) / rms_y)


def covariance_yy(Y, chunk=512):
    """C_yy = Y^T conj(Y) / N, products in complex64 per chunk, accumulated in complex128."""
    M = Y.shape[1]
    C = np.zeros((M, M), np.complex128)
    for i in range(0, len(Y), chunk):
        b = Y[i:i + chunk]
        C += b.T @ b.conj()
    C /= len(Y)
    return 0.5 * (C + C.conj().T)


class LmmseFit:
    """C_yy's eigendecomposition and the factors shared by every eps (see the module's docstring)."""

    def __init__(self, pairs, chunk=512):
        self.pairs = pairs
        t = time.time()
        C = covariance_yy(pairs.Y, chunk)
        self.scale = float(np.real(np.trace(C))) / C.shape[0]
        self.lam, U = np.linalg.eigh(C)
        self.lam = np.maximum(self.lam, 0.0)  # round-off of a PSD matrix
        self.U = U
        self.U64 = U.astype(np.complex64)
        # P = conj(Y) U [N, M], once for every eps and the final weights.
        self.P = np.empty(pairs.Y.shape, np.complex64)
        for i in range(0, pairs.n, chunk):
            self.P[i:i + chunk] = pairs.Y[i:i + chunk].conj() @ self.U64
        self.seconds = time.time() - t

    def d(self, eps_rel):
        return (1.0 / (self.lam + eps_rel * self.scale)).astype(np.float32)

    def estimate(self, eps_rel, Yv):
        """X_hat [n, V] = (W Yv^T)^T for the validation measurements Yv [n, M]."""
        Q = self.U64.conj().T @ np.ascontiguousarray(Yv.reshape(len(Yv), -1).T, dtype=np.complex64)
        R = self.P @ (self.d(eps_rel)[:, None] * Q)  # [N, n]
        return np.asarray((self.pairs.X.T @ R).T) / self.pairs.n

    def weights(self, eps_rel, chunk=512):
        """W [V, M] complex64."""
        G = np.empty(self.P.shape, np.complex64)
        UH = np.ascontiguousarray(self.U64.conj().T)
        d = self.d(eps_rel)
        for i in range(0, self.pairs.n, chunk):
            G[i:i + chunk] = (self.P[i:i + chunk] * d[None, :]) @ UH
        W = np.asarray(self.pairs.X.T @ G)
        W /= self.pairs.n
        return W.astype(np.complex64, copy=False)


def lmmse_dense_reference(X, Y, eps_rel):
    """The textbook formula on dense float64 matrices (tests): C_xy (C_yy + eps I)^-1."""
    X = np.asarray(X, np.complex128)
    Y = np.asarray(Y, np.complex128)
    N, M = Y.shape
    Cyy = Y.T @ Y.conj() / N
    Cxy = X.T @ Y.conj() / N
    eps = eps_rel * np.real(np.trace(Cyy)) / M
    return np.linalg.solve((Cyy + eps * np.eye(M)).T, Cxy.T).T


# ---------------------------------------------------------------------------------------------------------
# Metrics of docs/metrics.md (scikit-image 0.19 with the protocol's parameters; tests/test_metrics.cpp checks
# the engine against exactly these calls)


def normalised(v):
    a = np.abs(v).astype(np.float64)
    m = a.max()
    return a / m if m > 0 else a


def psnr(est, truth):
    a, b = normalised(est), normalised(truth)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def ssim3d(est, truth):
    """nan on an axis shorter than the window (the engine's own rule for those is not scikit-image's)."""
    if min(np.shape(truth)) <= 10:
        return float("nan")
    from skimage.metrics import structural_similarity
    return float(structural_similarity(normalised(est), normalised(truth), gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0, K1=0.01, K2=0.03))


# ---------------------------------------------------------------------------------------------------------
# The weights file


def transfer_unet(src_params, target_names_shapes):
    """models/transfer.hpp's rules for unet3d -> cv-unet3d: same name and shape copied; a [co, 1, k...] filter
    goes on both input channels; anything else is refused here (the Deep2S U-Net holds every tensor)."""
    out = {}
    for name, shape in target_names_shapes.items():
        if name not in src_params:
            raise SystemExit(f"fit_lmmse: the U-Net source has no parameter '{name}'")
        w = src_params[name]
        if w.shape == shape:
            out[name] = w
        elif len(shape) == 5 and w.shape[1] == 1 and shape[1] == 2 and w.shape[2:] == shape[2:] and \
                w.shape[0] == shape[0]:
            out[name] = np.repeat(w, 2, axis=1)
        else:
            raise SystemExit(f"fit_lmmse: cannot transfer '{name}' of shape {w.shape} to {shape}")
    return out


def write_deepdi(path, unet_path, W, bias, record):
    """A deepdi weights file (docs/formats.md): root attributes, /system and /grid of the U-Net source's file
    (which must be the fit's system and grid: checked by the caller), its U-Net transferred, dense.weight
    [V, M, 2] and dense.bias [V, 2]. Written to a temporary name, then renamed (no partial file)."""
    import h5py
    V, M = W.shape
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path) + ".tmp")
    with h5py.File(unet_path, "r") as src:
        arch = src.attrs["architecture"]
        arch = arch.decode() if isinstance(arch, bytes) else str(arch)
        if arch not in ("unet3d", "cv-unet3d"):
            raise SystemExit(f"fit_lmmse: {unet_path}: the U-Net source must be a unet3d (Deep2S) or cv-unet3d "
                             f"(cv-deep2s) model, not '{arch}'")
        params = {k: src["parameters"][k][()] for k in src["parameters"]}
        # cv-unet3d differs from unet3d only in the first convolution's input channels; a cv-unet3d source is
        # the composite's U-Net as it is (what `nfmimo train --arch deepdi --init CV.h5` takes).
        shapes = {k: (v.shape[:1] + (2,) + v.shape[2:]) if k == "enc1.block1.conv.weight" else v.shape
                  for k, v in params.items()}
        unet = transfer_unet(params, shapes)
        try:
            with h5py.File(tmp, "w") as dst:
                for k in src.attrs:
                    dtype = src.attrs.get_id(k).dtype
                    value = src.attrs[k]
                    if k == "architecture":
                        value = "deepdi"
                    elif k == "input_channels":
                        value = 2
                    elif k == "trainable_parameters":
                        value = 0  # set below
                    elif k == "training":
                        value = json.dumps(record)
                    dst.attrs.create(k, value, dtype=dtype)
                if "training" not in src.attrs:
                    dst.attrs["training"] = json.dumps(record)
                src.copy(src["system"], dst, "system")
                src.copy(src["grid"], dst, "grid")
                g = dst.create_group("parameters")
                trainable = 0
                for k, v in unet.items():
                    g.create_dataset(k, data=v.astype(np.float32))
                    if not k.endswith(("running_mean", "running_var")):
                        trainable += v.size
                dw = g.create_dataset("dense.weight", shape=(V, M, 2), dtype=np.float32)
                step = 2048
                for i in range(0, V, step):
                    dw[i:i + step] = W[i:i + step].view(np.float32).reshape(-1, M, 2)
                g.create_dataset("dense.bias", data=np.ascontiguousarray(bias, np.complex64).view(np.float32)
                                 .reshape(V, 2))
                trainable += 2 * V * M + 2 * V
                dst.attrs.create("trainable_parameters", trainable, dtype=src.attrs.get_id("trainable_parameters").dtype)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def unet_transfer_kind(path):
    import h5py
    with h5py.File(path, "r") as f:
        arch = f.attrs["architecture"]
    return "copied (cv-unet3d)" if (arch.decode() if isinstance(arch, bytes) else str(arch)) == "cv-unet3d" \
        else "unet3d -> cv-unet3d"


def read_dense(path):
    import h5py
    with h5py.File(path, "r") as f:
        dw = f["parameters/dense.weight"]
        V, M, _ = dw.shape
        W = np.empty((V, M), np.complex64)
        for i in range(0, V, 2048):
            W[i:i + 2048] = dw[i:i + 2048].view(np.complex64).reshape(-1, M)
        b = f["parameters/dense.bias"][()].view(np.complex64).reshape(V)
    return W, b


# ---------------------------------------------------------------------------------------------------------
# Commands


def import_nfmimo(path):
    for p in ([path] if path else []) + [os.path.join(ROOT, "build", "python")]:
        if os.path.isdir(os.path.join(p, "nfmimo")):
            sys.path.insert(0, p)
            break
    import nfmimo
    return nfmimo


def system_and_grid(nf, args):
    import h5py
    with h5py.File(args.unet, "r") as f:
        freqs = f["system/frequencies"][()]
        tx, rx = f["system/tx_positions"][()], f["system/rx_positions"][()]
        axes = f["grid/x"][()], f["grid/y"][()], f["grid/z"][()]
    return nf.system_from_arrays(tx, rx, freqs), nf.grid_from_axes(*axes)


def fit_command(args):
    nf = import_nfmimo(args.python)
    nf.set_num_threads(args.threads)
    t0 = time.time()
    # The system and grid are the U-Net source's (the composite needs both to match; the paper's, for the zoo).
    system, grid = system_and_grid(nf, args)
    V = int(np.prod(grid.shape))
    syn = nf.Synthesizer(system, grid, snr=args.snr, seed=args.seed, device="cpu")
    y0, _, *_ = syn.batch(0, 1)
    M = y0[0].size
    log(f"{args.pairs} pairs of seed {args.seed} (M = {M}, V = {V}), snr {args.snr}, {args.threads} thread(s)")
    pairs = Pairs(M, V)
    for first in range(0, args.pairs, args.chunk):
        n = min(args.chunk, args.pairs - first)
        y, x, *_ = syn.batch(first, n)
        pairs.add(y, x)
        if (first // args.chunk) % 8 == 7:
            log(f"  {first + n} pairs, {time.time() - t0:.0f} s")
    pairs.finish()
    t_synth = time.time() - t0
    mx, my = pairs.mean_report()
    log(f"synthesized in {t_synth:.0f} s; nnz(X) = {pairs.X.nnz} ({pairs.X.nnz / (pairs.n * V):.2%}); "
        f"|mean| / rms: x {mx:.4f}, y {my:.4f} (1/sqrt(N) = {1 / math.sqrt(pairs.n):.4f})")

    vsyn = nf.Synthesizer(system, grid, snr=args.snr, seed=args.val_seed, device="cpu")
    yv, xv, *_ = vsyn.batch(0, args.val_pairs)
    yv = yv.reshape(len(yv), -1)
    xv = xv.reshape(len(xv), -1)

    t1 = time.time()
    fit = LmmseFit(pairs, args.chunk)
    log(f"C_yy, eigendecomposition and P in {fit.seconds:.0f} s; eigenvalues / (tr/M): "
        f"max {fit.lam.max() / fit.scale:.3g}, min {fit.lam.min() / fit.scale:.3g}")
    table = []
    for e in args.eps:
        xh = fit.estimate(e, yv)
        ps = [psnr(xh[i], xv[i]) for i in range(len(xv))]
        nmse = float(np.sum(np.abs(xh - xv) ** 2) / np.sum(np.abs(xv) ** 2))
        table.append({"eps": e, "val_psnr_db": float(np.mean(ps)), "val_complex_nmse": nmse})
        log(f"  eps {e:g} x tr/M: validation PSNR {np.mean(ps):.2f} dB, complex NMSE {nmse:.4f}")
    best = max(table, key=lambda r: r["val_psnr_db"])
    W = fit.weights(best["eps"], args.chunk)
    del fit
    t_fit = time.time() - t1

    # The input scale's calibration (module docstring): max|A^H y| against max|W y| on the validation frames.
    op = nf.Operator(system, grid, mode="exact")
    yv4 = yv.reshape((len(yv),) + tuple(y0.shape[1:]))
    adj = np.abs(op.adjoint(np.ascontiguousarray(yv4, np.complex64))).reshape(len(yv), -1).max(1)
    est = np.abs(yv @ W.T).max(1)
    ok = (adj > 0) & (est > 0)
    c = float(np.median(adj[ok] / est[ok]))
    xh = yv @ W.T
    ss = [ssim3d(xh[i].reshape(grid.shape), xv[i].reshape(grid.shape)) for i in range(len(xv))]
    best["val_ssim_3d"] = None if any(math.isnan(v) for v in ss) else float(np.mean(ss))
    log(f"chosen eps {best['eps']:g} x tr/M: validation PSNR {best['val_psnr_db']:.2f} dB, SSIM 3D "
        f"{best['val_ssim_3d'] if best['val_ssim_3d'] is None else round(best['val_ssim_3d'], 4)}; input calibration c = {c:.4g}; fit {t_fit:.0f} s")
    W *= np.float32(c)

    record = {"start": "lmmse", "script": "tools/scripts/fit_lmmse.py", "pairs": args.pairs,
              "pairs_seed": args.seed, "snr": args.snr, "validation": {"seed": args.val_seed, "count": args.val_pairs},
              "eps_relative_to_trace_over_m": best["eps"], "eps_table": table,
              "validation_psnr_db": best["val_psnr_db"], "validation_ssim_3d": best["val_ssim_3d"],
              "input_calibration": c, "mean_over_rms": {"x": mx, "y": my},
              "unet": {"source": os.path.basename(args.unet), "transfer": unet_transfer_kind(args.unet)},
              "seconds": {"synthesize": round(t_synth, 1), "fit": round(t_fit, 1)}, "threads": args.threads}
    write_deepdi(args.out, args.unet, W, np.zeros(V, np.complex64), record)
    log(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.0f} MB) in {time.time() - t0:.0f} s in all")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
    return 0


def score_command(args):
    """The estimator alone on a measurement file with /targets: |W y| against |x| (docs/metrics.md)."""
    import h5py
    W, b = read_dense(args.model)
    with h5py.File(args.data, "r") as f:
        y = f["measurements"][()] if "measurements" in f else None
        t = f["targets"][()]
    if y is None:
        raise SystemExit(f"fit_lmmse: {args.data}: no /measurements")
    y = _complex(y).reshape(len(t), -1)
    t = _complex(t)
    n = len(t) if args.frames <= 0 else min(args.frames, len(t))
    ps, ss = [], []
    for i in range(n):
        x = (W @ y[i] + b).reshape(t.shape[1:])
        ps.append(psnr(x, t[i]))
        ss.append(ssim3d(x, t[i]))
    res = {"frames": n, "psnr_db": float(np.mean(ps)), "psnr_std": float(np.std(ps, ddof=1)),
           "ssim_3d": float(np.mean(ss)), "ssim_3d_std": float(np.std(ss, ddof=1))}
    print(json.dumps(res))
    return 0


def rewrap_command(args):
    """The dense layer of a fitted deepdi file with the U-Net of another model (no refit)."""
    import h5py
    W, b = read_dense(args.dense)
    with h5py.File(args.dense, "r") as f:
        record = json.loads(f.attrs["training"])
    record["unet"] = {"source": os.path.basename(args.unet), "transfer": "unet3d -> cv-unet3d"}
    with h5py.File(args.unet, "r") as f:
        arch = f.attrs["architecture"]
        if (arch.decode() if isinstance(arch, bytes) else str(arch)) == "cv-unet3d":
            record["unet"]["transfer"] = "copied (cv-unet3d)"
    write_deepdi(args.out, args.unet, W, b, record)
    log(f"wrote {args.out}")
    return 0


def _complex(a):
    if a.dtype.names:  # compound {r, i} or {re, im}
        names = a.dtype.names
        return a[names[0]] + 1j * a[names[1]]
    if a.shape[-1] == 2 and not np.iscomplexobj(a):
        return a[..., 0] + 1j * a[..., 1]
    return a


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "rewrap":
        p = argparse.ArgumentParser(prog="fit_lmmse.py rewrap", description=rewrap_command.__doc__)
        p.add_argument("--dense", required=True, help="a deepdi file written by this script")
        p.add_argument("--unet", required=True)
        p.add_argument("--out", required=True)
        return rewrap_command(p.parse_args(argv[1:]))
    if argv and argv[0] == "score":
        p = argparse.ArgumentParser(prog="fit_lmmse.py score", description=score_command.__doc__)
        p.add_argument("--data", required=True)
        p.add_argument("--model", required=True)
        p.add_argument("--frames", type=int, default=0)
        return score_command(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--unet", required=True, help="a trained unet3d (Deep2S: transferred) or cv-unet3d (cv-deep2s: "
                   "copied) weights file of the system and grid")
    p.add_argument("--out", required=True, help="the deepdi weights file to write")
    p.add_argument("--pairs", type=int, default=8192)
    p.add_argument("--seed", type=int, default=TRAIN_SEED)
    p.add_argument("--val-pairs", type=int, default=128)
    p.add_argument("--val-seed", type=int, default=VAL_SEED)
    p.add_argument("--snr", default="30")
    p.add_argument("--eps", type=lambda s: [float(v) for v in s.split(",")], default=EPS_GRID,
                   help="candidates, relative to trace(C_yy) / M")
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--python", default=None, help="folder holding the nfmimo package (default build/python)")
    p.add_argument("--json", default=None, help="also write the fit's record here")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.val_pairs < 2:
        raise SystemExit("fit_lmmse: --pairs must be >= 1 and --val-pairs >= 2")
    return fit_command(args)


if __name__ == "__main__":
    sys.exit(main())

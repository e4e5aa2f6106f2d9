#!/usr/bin/python3
"""Reference image-quality metrics from scikit-image, for tests/test_metrics.cpp.

Usage: skimage_metrics.py ESTIMATE.f64 TRUTH.f64 NX NY NZ
Reads two raw little-endian float64 volumes [nx, ny, nz] (z fastest) that are already normalised, and prints
JSON with PSNR (data_range 1), the 3D SSIM and the mean of the 2D x-y slice SSIMs, both with the Gaussian
window of Wang et al. (gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1).
"""
import json
import sys

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, K1=0.01, K2=0.03)


def main():
    est_path, truth_path, nx, ny, nz = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    est = np.fromfile(est_path, dtype="<f8").reshape(nx, ny, nz)
    truth = np.fromfile(truth_path, dtype="<f8").reshape(nx, ny, nz)
    out = {
        "psnr": float(peak_signal_noise_ratio(truth, est, data_range=1.0)),
        "ssim3d": float(ssim(est, truth)),
        "ssim2d": float(np.mean([ssim(est[:, :, z], truth[:, :, z]) for z in range(nz)])),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

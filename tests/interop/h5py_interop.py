#!/usr/bin/env python3
"""Interop checks with h5py (Debian's python3-h5py), driven by tests/test_data.cpp.

  h5py_interop.py write-measurements OUT   writes a measurement file the way a user would from numpy
                                           (complex128 -> compound {r, i} of float64), values known to the test
  h5py_interop.py describe FILE            prints JSON describing an nfmimo file written by the C++ side
"""
import json
import sys

import h5py
import numpy as np


def write_measurements(path):
    K, T, R, N = 5, 12, 13, 2
    a_tx = np.linspace(-0.15, 0.15, T)
    a_rx = np.linspace(-0.15, 0.15, R)
    n, k, t, r = np.meshgrid(np.arange(N), np.arange(K), np.arange(T), np.arange(R), indexing="ij")
    y = (n + 0.25 * k) + 1j * (t - 0.5 * r)  # exactly representable in float32
    with h5py.File(path, "w") as f:
        f.attrs["nfmimo_format"] = "measurements"
        f.attrs["nfmimo_version"] = 1
        f["system/frequencies"] = np.linspace(4e9, 16e9, K)
        f["system/tx_positions"] = np.stack([a_tx, -a_tx, np.zeros(T)], axis=1)
        f["system/rx_positions"] = np.stack([a_rx, a_rx, np.zeros(R)], axis=1)
        f["grid/x"] = np.linspace(-0.15, 0.15, 25)
        f["grid/y"] = np.linspace(-0.15, 0.15, 25)
        f["grid/z"] = np.linspace(0.35, 0.65, 49)
        f["measurements"] = y.astype(np.complex128)


def describe(path):
    out = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v))
                        for k, v in f.attrs.items()}
        for name in ("measurements", "targets", "volumes", "snr_db", "grid/x", "grid/z", "system/frequencies"):
            if name in f:
                d = f[name][()]
                entry = {"shape": list(d.shape), "dtype": str(d.dtype)}
                if np.iscomplexobj(d):
                    entry["sum_real"] = float(np.sum(d.real, dtype=np.float64))
                    entry["sum_imag"] = float(np.sum(d.imag, dtype=np.float64))
                else:
                    entry["sum"] = float(np.sum(d, dtype=np.float64))
                out[name] = entry
    print(json.dumps(out))


if __name__ == "__main__":
    {"write-measurements": write_measurements, "describe": describe}[sys.argv[1]](sys.argv[2])

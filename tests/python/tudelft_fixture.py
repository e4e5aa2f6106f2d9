#!/usr/bin/python3
"""Writes .mat files in the TU Delft irregular-array layouts, independently of nfmimo.

The measurements are simulated here, in numpy, with the Born model of docs/physics.md,
    y[k, t, r] = sum_v x_v exp(-j kappa_k (R_t + R_r)) / (4 pi R_t R_r),
for point targets in front of a 16 TX x 9 RX irregular planar array. The file uses the TU Delft axes: the array
lies in the x-z plane and range runs along +y, so nfmimo's default --axes x,z,y maps it to the array in x-y and
the scene at +z.

Layouts (MATLAB order RX x TX x frequency for the responses):
  experimental: EMData.Values, OperateFreq, MIMOArray.Transmitter.{X,Y,Z}, MIMOArray.Receiver.{X,Y,Z}
  synthetic:    EMData, OperatingFreq, MIMOArray.Transmitter.{TX,TY,TZ,vCellArea}, .Receiver.{RX,RY,RZ,vCellArea}
v5 through scipy.io.savemat, v7.3 through h5py in MATLAB's HDF5 layout (512-byte user block with the MAT header,
MATLAB_class attributes, reversed dimensions, complex as the compound {real, imag}).

As a script: tudelft_fixture.py OUT.mat [--v73] [--synthetic] writes the example scene of docs/experimental.md.
"""
import argparse
import struct

import numpy as np

C = 299792458.0
FREQS = np.linspace(4e9, 16e9, 251)  # 48 MHz steps, as in the TU Delft files


def irregular_array(count, half, seed, min_spacing):
    """`count` positions in [-half, half]^2 of the file's x-z plane, no two closer than min_spacing (metres)."""
    rng = np.random.default_rng(seed)
    points = []
    while len(points) < count:
        p = rng.uniform(-half, half, 2)
        if all(np.hypot(*(p - q)) >= min_spacing for q in points):
            points.append(p)
    p = np.array(points)
    return np.stack([p[:, 0], np.zeros(count), p[:, 1]], axis=1)  # (x, y = 0, z): the array in x-z


TX = irregular_array(16, 0.2, 1501, 0.04)
RX = irregular_array(9, 0.12, 1502, 0.04)


def file_position(nfmimo_xyz):
    """nfmimo (x, y, z) -> the file's (x, y, z) under the map x,z,y (nfmimo y = file z, nfmimo z = file y)."""
    x, y, z = nfmimo_xyz
    return np.array([x, z, y])


def born(points_file, freqs=FREQS, tx=TX, rx=RX):
    """Responses [R, T, K] (MATLAB's RX x TX x frequency) of point targets [(position_in_file_axes, amplitude)]."""
    kappa = 2 * np.pi * freqs / C
    y = np.zeros((len(rx), len(tx), len(freqs)), dtype=np.complex128)
    for position, amplitude in points_file:
        rt = np.linalg.norm(tx - position, axis=1)  # [T]
        rr = np.linalg.norm(rx - position, axis=1)  # [R]
        d = rr[:, None, None] + rt[None, :, None]
        y += amplitude * np.exp(-1j * kappa[None, None, :] * d) / (4 * np.pi * rr[:, None, None] * rt[None, :, None])
    return y


def layout(values, synthetic, freqs=FREQS, tx=TX, rx=RX):
    """The variables of a TU Delft file as nested dicts (field name -> numpy array or dict)."""
    if synthetic:
        return {
            "EMData": values,
            "OperatingFreq": freqs,
            "MIMOArray": {
                "Transmitter": {"TX": tx[:, 0], "TY": tx[:, 1], "TZ": tx[:, 2], "vCellArea": np.full(len(tx), 1e-4)},
                "Receiver": {"RX": rx[:, 0], "RY": rx[:, 1], "RZ": rx[:, 2], "vCellArea": np.full(len(rx), 1e-4)},
            },
        }
    return {
        "EMData": {"Values": values},
        "OperateFreq": freqs,
        "MIMOArray": {
            "Transmitter": {"X": tx[:, 0], "Y": tx[:, 1], "Z": tx[:, 2]},
            "Receiver": {"X": rx[:, 0], "Y": rx[:, 1], "Z": rx[:, 2]},
        },
    }


def write_v5(path, variables, compress=True):
    import scipy.io
    # Vectors as columns (N x 1), as MATLAB's colon indexing makes them; structs as MATLAB 1x1 structs.
    scipy.io.savemat(path, variables, format="5", do_compression=compress, oned_as="column")


def _matlab_class(array):
    return {np.dtype("float64"): "double", np.dtype("float32"): "single", np.dtype("complex128"): "double",
            np.dtype("complex64"): "single"}[array.dtype]


def _write_h5_value(group, name, value):
    import h5py
    if isinstance(value, dict):
        sub = group.create_group(name)
        sub.attrs.create("MATLAB_class", np.bytes_("struct"))
        fields = np.empty(len(value), dtype=object)  # filled one by one: np.array would merge equal lengths
        for i, k in enumerate(value):
            fields[i] = np.frombuffer(k.encode(), dtype="S1")
        sub.attrs.create("MATLAB_fields", fields, dtype=h5py.vlen_dtype(np.dtype("S1")))
        for k, v in value.items():
            _write_h5_value(sub, k, v)
        return
    a = np.asarray(value)
    if a.ndim == 1:
        a = a[:, None]  # a MATLAB column vector N x 1
    stored = a.T  # MATLAB is column-major: HDF5 holds the reversed dimensions
    if np.iscomplexobj(stored):
        base = "<f8" if stored.dtype == np.complex128 else "<f4"
        pairs = np.empty(stored.shape, dtype=[("real", base), ("imag", base)])
        pairs["real"], pairs["imag"] = stored.real, stored.imag
        stored = pairs
    d = group.create_dataset(name, data=np.ascontiguousarray(stored))
    d.attrs.create("MATLAB_class", np.bytes_(_matlab_class(a)))


def write_v73(path, variables):
    import h5py
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in variables.items():
            _write_h5_value(f, name, value)
    # MATLAB's 128-byte header at the start of the user block: text, subsystem offset, version 0x0200, 'IM'.
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Nov 30 00:00:00 2026 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0200) + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\0"))


# The example scene of docs/experimental.md: a pistol-like shape of point scatterers (barrel, grip, trigger guard)
# in nfmimo's axes, on the grid of EXAMPLE_GRID.
EXAMPLE_GRID = "-0.15:0.15:31,-0.15:0.15:31,0.35:0.65:31"


def example_points():
    pts = []
    for x in np.arange(-0.08, 0.09, 0.01):  # barrel along x at y = 0.04
        pts.append(((x, 0.04, 0.50), 1.0))
    for s in np.arange(0.0, 0.09, 0.01):  # grip going down and back
        pts.append(((0.05 + 0.3 * s, 0.03 - s, 0.50), 1.0))
    for a in np.linspace(0, np.pi, 6):  # trigger guard
        pts.append(((0.0 + 0.025 * np.cos(a), 0.02 - 0.025 * np.sin(a), 0.50), 0.6))
    return [(np.array(p), a) for p, a in pts]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--v73", action="store_true", help="MATLAB v7.3 (HDF5) instead of v5")
    ap.add_argument("--synthetic", action="store_true", help="the synthetic files' field spelling")
    args = ap.parse_args()
    values = born([(file_position(p), a) for p, a in example_points()])
    variables = layout(values, args.synthetic)
    (write_v73 if args.v73 else write_v5)(args.out, variables)


if __name__ == "__main__":
    main()

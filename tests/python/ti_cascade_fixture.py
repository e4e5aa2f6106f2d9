"""Writes TI MMWCAS 4-chip cascade captures in TI's layout, independently of nfmimo.

Layout (docs/experimental.md lists the sources): per device (master, slave1, slave2, slave3) a data file of
little-endian int16 (I, Q) pairs, per frame in the C order [loops][chirp slots][samples][4 RX][I, Q], and an idx
file: a 24-byte header (uint32 tag, version, flags, numIdx; uint64 dataFileSize) and numIdx packed 48-byte records
(uint16 tag, version; uint32 flags; uint16 width, height; uint32 pitchOrMetaSize[4]; uint32 size;
uint64 timestamp_ns; uint64 offset).

The channel data are the stepped-frequency Born model of docs/physics.md at the dechirped samples' frequencies
f_k = f_start + slope (t_adc + k / f_s), times injectable per-channel errors (complex gain and a phase slope per
sample), plus loop and frame offsets that cancel in the average, rounded to int16.
"""
import json

import numpy as np

C = 299792458.0
DEVICES = ["master", "slave1", "slave2", "slave3"]
# MMWCAS layout in half wavelengths at 76.8 GHz (TI's module_param.m), typed here independently of nfmimo's copy.
TX_TABLE = np.array([[11, 6], [10, 4], [9, 1], [32, 0], [28, 0], [24, 0], [20, 0], [16, 0], [12, 0], [8, 0],
                     [4, 0], [0, 0]], dtype=float)
RX_AZIMUTH = np.concatenate([np.arange(11, 15), np.arange(50, 54), np.arange(46, 50), np.arange(0, 4)])
RX_ORDER = [13, 14, 15, 16, 1, 2, 3, 4, 9, 10, 11, 12, 5, 6, 7, 8]
UNIT = C / 76.8e9 / 2

CHIRP = {
    "start_frequency_hz": 77e9, "slope_hz_per_s": 79e12, "adc_sample_rate_hz": 8e6, "samples_per_chirp": 32,
    "adc_start_time_s": 6e-6, "loops": 4, "tx_order": [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
}


def frequencies(chirp=CHIRP):
    k = np.arange(chirp["samples_per_chirp"])
    return chirp["start_frequency_hz"] + chirp["slope_hz_per_s"] * (chirp["adc_start_time_s"] + k / chirp["adc_sample_rate_hz"])


def tx_positions(chirp=CHIRP):
    """[slots, 3]: the TX of each chirp slot (TDM order)."""
    t = TX_TABLE[np.array(chirp["tx_order"]) - 1] * UNIT
    return np.stack([t[:, 0], t[:, 1], np.zeros(len(t))], axis=1)


def rx_positions_by_channel():
    """[16, 3]: device channel c = 4 device + lane."""
    return np.stack([RX_AZIMUTH * UNIT, np.zeros(16), np.zeros(16)], axis=1)


def born(points, chirp=CHIRP):
    """[K, slots, 16 device channels] for [(position, amplitude)]."""
    f = frequencies(chirp)
    kappa = 2 * np.pi * f / C
    tx, rx = tx_positions(chirp), rx_positions_by_channel()
    y = np.zeros((len(f), len(tx), 16), dtype=np.complex128)
    for p, a in points:
        rt = np.linalg.norm(tx - p, axis=1)
        rr = np.linalg.norm(rx - p, axis=1)
        y += a * np.exp(-1j * kappa[:, None, None] * (rt[None, :, None] + rr[None, None, :])) / (
            4 * np.pi * rt[None, :, None] * rr[None, None, :])
    return y


def channel_errors(seed, chirp=CHIRP):
    """Per (slot, device channel): complex gain (amplitude 0.7-1.3, any phase) and a phase slope per sample."""
    rng = np.random.default_rng(seed)
    shape = (len(chirp["tx_order"]), 16)
    gain = rng.uniform(0.7, 1.3, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
    slope = rng.uniform(-0.03, 0.03, shape)
    return gain, slope


def write_capture(folder, y, chirp=CHIRP, frames=3, scale=None, errors=None, capture="0000"):
    """Writes the four devices' files for channel data y [K, slots, 16 device channels]; returns the scale (counts
    per model unit)."""
    k = np.arange(y.shape[0])
    if errors is not None:
        gain, slope = errors
        y = y * gain[None] * np.exp(1j * slope[None] * k[:, None, None])
    if scale is None:
        scale = 8000 / np.abs(y).max()
    loops, slots, samples = chirp["loops"], len(chirp["tx_order"]), chirp["samples_per_chirp"]
    offset = 0.05 * np.abs(y).max() * scale  # loop and frame offsets that cancel in the average
    frame_offsets = [offset, -offset, 0.0][:frames] if frames <= 3 else [0.0] * frames
    for d, device in enumerate(DEVICES):
        blocks = []
        for fr in range(frames):
            frame = np.empty((loops, slots, samples, 4, 2), dtype="<i2")
            for loop in range(loops):
                v = y[:, :, 4 * d:4 * d + 4] * scale + ((-1) ** loop) * offset * (1 + 1j) + frame_offsets[fr] * (1 - 1j)
                v = np.transpose(v, (1, 0, 2))  # [slots, samples, 4]
                frame[loop, ..., 0] = np.round(v.real)
                frame[loop, ..., 1] = np.round(v.imag)
            blocks.append(frame.tobytes())
        data = b"".join(blocks)
        (folder / f"{device}_{capture}_data.bin").write_bytes(data)
        write_index(folder / f"{device}_{capture}_idx.bin", [len(b) for b in blocks], len(data))
    return scale


def write_index(path, frame_sizes, data_size, num_idx=None):
    header = np.zeros(1, dtype=[("tag", "<u4"), ("version", "<u4"), ("flags", "<u4"), ("numIdx", "<u4"),
                                ("size", "<u8")])
    header["tag"], header["version"] = 0x2D2D2D2D, 1
    header["numIdx"] = len(frame_sizes) if num_idx is None else num_idx
    header["size"] = data_size
    rec = np.zeros(len(frame_sizes), dtype=[("tag", "<u2"), ("version", "<u2"), ("flags", "<u4"), ("width", "<u2"),
                                            ("height", "<u2"), ("meta", "<u4", 4), ("size", "<u4"),
                                            ("timestamp", "<u8"), ("offset", "<u8")])
    assert header.itemsize == 24 and rec.itemsize == 48
    rec["size"] = frame_sizes
    rec["offset"] = np.concatenate([[0], np.cumsum(frame_sizes)[:-1]])
    rec["timestamp"] = 1_000_000 * np.arange(len(frame_sizes))
    path.write_bytes(header.tobytes() + rec.tobytes())


def write_chirp(path, chirp=CHIRP):
    path.write_text(json.dumps(chirp, indent=1))


def main():
    """ti_cascade_fixture.py FOLDER: the example of docs/experimental.md in FOLDER: chirp.json, reflector/ (a corner
    reflector at (0.03, 0, 0.5) m) and scene/ (three point targets), both with the same injected channel errors."""
    import argparse
    from pathlib import Path
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("folder")
    root = Path(ap.parse_args().folder)
    errors = channel_errors(7)
    (root / "reflector").mkdir(parents=True, exist_ok=True)
    (root / "scene").mkdir(exist_ok=True)
    write_chirp(root / "chirp.json")
    scale = write_capture(root / "reflector", born([(np.array([0.03, 0.0, 0.5]), 1.0)]), errors=errors)
    scene = [(np.array([-0.05, 0.0, 0.45]), 1.0), (np.array([0.05, 0.03, 0.5]), 0.8), (np.array([0.0, -0.04, 0.6]), 0.9)]
    write_capture(root / "scene", born(scene), errors=errors, scale=scale)


if __name__ == "__main__":
    main()

"""nfmimo: 3D near-field MIMO radar imaging from Python (docs/python.md).

The same engine as the `nfmimo` program: radar systems and imaging grids, the physics operators on numpy arrays
and torch tensors (CPU or CUDA, zero-copy through DLPack), every reconstruction method of the CLI, the scene
synthesizer and the HDF5 file formats. `nfmimo.torch` adds autograd functions and a streaming dataset.

Index order is the engine's: measurements [..., K, T, R] (frequency, transmitter, receiver), volumes
[..., nx, ny, nz] with z (range) fastest; units metres and hertz. Bad input raises ValueError with the engine's
message.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import numpy as np

from . import _core
from ._arrays import empty, host_numpy, is_torch, leading_shape, like_input, prepare

__version__ = _core.__version__

System = _core.System
Grid = _core.Grid

__all__ = [
    "System", "Grid", "Model", "Operator", "Measurements", "Volumes", "Synthesizer", "paper_system", "paper_grid",
    "system_from_arrays", "grid_from_axes", "linspace_grid", "read_system", "reconstruct", "methods",
    "read_measurements", "write_measurements", "read_volumes", "write_volumes", "read_dataset_info",
    "synthesize_dataset",
    "set_num_threads", "get_num_threads", "cuda_available",
]


# ------------------------------------------------------------------------------------------------------------
# Systems and grids
# ------------------------------------------------------------------------------------------------------------
def paper_system(frequencies: int = 15) -> System:
    """The paper's 12 x 13 cross array with `frequencies` frequencies linspace(4 GHz, 16 GHz, K)."""
    return _core.paper_system(int(frequencies))


def paper_grid() -> Grid:
    """The paper's grid: x, y = linspace(-0.15, 0.15, 25), z = linspace(0.35, 0.65, 49) metres."""
    return _core.paper_grid()


def _float64(a):
    """Positions, frequencies and axes as the engine takes them (contiguous float64; it checks the shapes)."""
    if is_torch(a):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


def system_from_arrays(tx_positions, rx_positions, frequencies) -> System:
    """Any array: TX positions [T, 3] m, RX positions [R, 3] m, frequencies [K] Hz (uniform or not)."""
    return _core.system_from_arrays(_float64(tx_positions),
                                    _float64(rx_positions),
                                    _float64(frequencies))


def grid_from_axes(x, y, z) -> Grid:
    """A grid from its sampled axes (metres); each axis must be uniformly spaced."""
    return _core.grid_from_axes(_float64(x), _float64(y), _float64(z))


def linspace_grid(x, y, z) -> Grid:
    """A grid from (first, last, count) per axis, like the CLI's --grid 'x0:x1:nx,y0:y1:ny,z0:z1:nz'."""
    return _core.grid_linspace(float(x[0]), float(x[1]), int(x[2]), float(y[0]), float(y[1]), int(y[2]),
                               float(z[0]), float(z[1]), int(z[2]))


def read_system(path) -> tuple:
    """(System, Grid or None) from any nfmimo file (measurements, volumes, datasets, weights)."""
    return _core.read_system(os.fspath(path))


# ------------------------------------------------------------------------------------------------------------
# Operators
# ------------------------------------------------------------------------------------------------------------
class Operator:
    """The physics operators of one system and grid.

    Every method takes numpy arrays or torch tensors (CPU or CUDA) with any leading batch dimensions and returns
    the same kind on the same device. C-contiguous complex64 inputs are used in place (DLPack, no copy); other
    floating-point inputs are converted to complex64 first. `out=` writes into a given array (C-contiguous
    complex64 of the result's shape, on the input's device). The GIL is released while the engine computes.

    mode: "exact" (every term evaluated) or "fast" (FFT range compression for the adjoint and backprojection;
    uniform sweeps only). The forward operator is always exact.
    """

    def __init__(self, system: System, grid: Optional[Grid] = None, mode: str = "exact"):
        if mode not in ("exact", "fast"):
            raise ValueError(f"mode: '{mode}' is not exact or fast")
        self._op = _core.Operator(system, grid if grid is not None else paper_grid())
        self.mode = mode
        if mode == "fast" and not system.uniform_frequencies:
            raise ValueError("mode 'fast' needs uniformly spaced frequencies")

    @property
    def system(self) -> System:
        return self._op.system

    @property
    def grid(self) -> Grid:
        return self._op.grid

    @property
    def measurement_shape(self) -> tuple:
        """(K, T, R)."""
        return tuple(self._op.system.measurement_shape)

    @property
    def volume_shape(self) -> tuple:
        """(nx, ny, nz)."""
        return tuple(self._op.grid.shape)

    def forward(self, x, out=None):
        """y = A x: volumes [..., nx, ny, nz] to measurements [..., K, T, R] (the Born model)."""
        x = prepare(x, "x")
        batch = leading_shape(x, 3, "x", self.volume_shape)
        if out is None:
            out = empty(x, batch + self.measurement_shape)
        self._op.forward(x, out)
        return out

    def _image(self, method, y, out, mode):
        y = prepare(y, "y")
        batch = leading_shape(y, 3, "y", self.measurement_shape)
        if out is None:
            out = empty(y, batch + self.volume_shape)
        self._op.image(method, mode or self.mode, y, out)
        return out

    def adjoint(self, y, out=None, mode: Optional[str] = None):
        """x = A^H y: measurements [..., K, T, R] to complex volumes [..., nx, ny, nz]."""
        return self._image("adjoint", y, out, mode)

    def backprojection(self, y, out=None, mode: Optional[str] = None):
        """Phase-only backprojection, weights exp(+j k (Rt + Rr))."""
        return self._image("backprojection", y, out, mode)

    def kirchhoff(self, y, out=None, mode: Optional[str] = None):
        """Kirchhoff migration (obliquity and range weights). Exact mode only: a fast operator refuses it, as the
        CLI refuses --method kirchhoff --mode fast; pass mode="exact" to run it from a fast operator."""
        return self._image("kirchhoff", y, out, mode)

    def normal(self, x, out=None):
        """A^H A x (the adjoint in this operator's mode)."""
        return self.adjoint(self.forward(x), out=out)

    # The names a PyTorch imaging library's linear physics uses.
    A = forward
    A_adjoint = adjoint

    def __repr__(self):
        return f"nfmimo.Operator({self.system!r}, {self.grid!r}, mode='{self.mode}')"


# ------------------------------------------------------------------------------------------------------------
# Reconstruction
# ------------------------------------------------------------------------------------------------------------
class Model:
    """A weights file loaded once (nfmimo.reconstruct(..., model=m) reuses it and the pipelines built from it)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._model = _core.Model(self.path)

    architecture = property(lambda self: self._model.architecture)
    role = property(lambda self: self._model.role)
    system = property(lambda self: self._model.system)
    grid = property(lambda self: self._model.grid)

    @classmethod
    def create(cls, path, architecture: str, system: System, grid: Grid, width: int = 32, blocks: int = 8,
               role: str = "reconstruction", seed: int = 1, overwrite: bool = False) -> "Model":
        """Writes a freshly initialised model (architecture: unet3d, unet2d, resnet, cv-unet3d, deepdi,
        deep2s-plus; role: reconstruction or denoiser) to `path` and loads it."""
        _core.write_initial_model(os.fspath(path), architecture, system, grid, int(width), int(blocks), role,
                                  int(seed), bool(overwrite))
        return cls(path)

    def __repr__(self):
        return f"nfmimo.Model('{self.path}', architecture='{self.architecture}')"


def methods() -> list:
    """Every method name of `nfmimo reconstruct --method`."""
    return list(_core.method_names())


def reconstruct(y, system: System, method: str = "adjoint", model=None, grid: Optional[Grid] = None,
                device: str = "auto", mode: str = "exact", batch: int = 64, precision: str = "",
                complex: bool = False, params: Optional[dict] = None, **param_kwargs):
    """Volumes from measurements y [..., K, T, R] with any method of `nfmimo reconstruct`.

    Same parameters as the CLI: model (a weights file path or a loaded nfmimo.Model, which keeps its pipelines
    between calls), device (auto | cpu | cuda), mode (exact | fast), batch, precision, and the method's
    `--param key=value` options as `params={...}` or keyword arguments (for example lam=0.01, iterations=50).
    grid: the imaging grid (default: the model's grid for learned methods, else the paper's grid).
    Returns magnitudes [..., nx, ny, nz] float32, or complex64 with complex=True (methods that make complex
    volumes), as the kind of `y` (a CUDA tensor's result comes back to its device; the work itself runs on
    `device`).
    """
    merged = dict(params or {})
    merged.update(param_kwargs)
    merged = {str(k): str(v) for k, v in merged.items()}
    loaded = None
    path = ""
    if isinstance(model, Model):
        loaded = model._model
    elif model is not None:
        path = os.fspath(model)
    if grid is None:
        if loaded is not None and loaded.role == "reconstruction":
            grid = loaded.grid
        else:
            grid = paper_grid()
    host = host_numpy(y, "y")
    lead = leading_shape(host, 3, "y", tuple(system.measurement_shape))
    flat = host.reshape((-1,) + tuple(system.measurement_shape))
    volumes, label, dev, extra = _core.reconstruct(method, system, grid, flat, loaded, path, device, mode,
                                                   int(batch), precision, merged, bool(complex))
    volumes = volumes.reshape(lead + tuple(grid.shape))
    return like_input(volumes, y)


# ------------------------------------------------------------------------------------------------------------
# Files (docs/formats.md)
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Measurements:
    system: System
    grid: Optional[Grid]
    y: np.ndarray                         # [N, K, T, R] complex64 ([K, T, R] for a single-frame file)
    targets: Optional[np.ndarray] = None  # [N, nx, ny, nz] complex64
    snr_db: Optional[np.ndarray] = None   # [N] float32


@dataclasses.dataclass
class Volumes:
    grid: Grid
    volumes: np.ndarray  # [N, nx, ny, nz] float32 magnitudes or complex64
    method: str = ""
    source: str = ""
    device: str = ""
    extra_json: str = ""


def read_measurements(path, targets: bool = True) -> Measurements:
    """A measurement file or dataset (checked like the CLI checks it)."""
    return Measurements(*_core.read_measurements(os.fspath(path), bool(targets)))


def write_measurements(path, y, system: System, grid: Optional[Grid] = None, targets=None, snr_db=None,
                       overwrite: bool = False) -> None:
    """Writes a measurement file atomically; y [N, K, T, R] or [K, T, R]; targets need the grid."""
    y = host_numpy(y, "y")
    if targets is not None:
        targets = host_numpy(targets, "targets")
    if snr_db is not None:
        snr_db = np.ascontiguousarray(np.asarray(snr_db.cpu() if is_torch(snr_db) else snr_db, dtype=np.float32))
    _core.write_measurements(os.fspath(path), system, y, grid, targets, snr_db, bool(overwrite))


def read_volumes(path) -> Volumes:
    return Volumes(*_core.read_volumes(os.fspath(path)))


def write_volumes(path, volumes, grid: Grid, method: str = "", source: str = "", overwrite: bool = False) -> None:
    """Writes a volume file atomically; volumes [N, nx, ny, nz] float32 magnitudes or complex64."""
    if is_torch(volumes):
        volumes = volumes.detach().cpu().numpy()
    volumes = np.asarray(volumes)
    if volumes.dtype.kind == "c":
        volumes = volumes.astype(np.complex64, copy=False)
    else:
        volumes = volumes.astype(np.float32, copy=False)
    _core.write_volumes(os.fspath(path), grid, np.ascontiguousarray(volumes), method, source, "python",
                        bool(overwrite))


def read_dataset_info(path) -> dict:
    """How a dataset (made by `nfmimo synthesize` or nfmimo.synthesize_dataset) was made: config (a dict), seed,
    count, shard (i, n), first_sample, rows, complete, device, system, grid."""
    info = dict(_core.read_dataset_info(os.fspath(path)))
    info["config"] = json.loads(info["config"])
    return info


# ------------------------------------------------------------------------------------------------------------
# Synthesizer (docs/synthesizer.md)
# ------------------------------------------------------------------------------------------------------------
def _config_json(config) -> str:
    if config is None:
        return "{}"
    if isinstance(config, dict):
        return json.dumps(config)
    with open(os.fspath(config)) as f:  # a JSON file, like --config
        return f.read()


class Synthesizer:
    """Random scenes and their measurements: sample i depends only on (system, grid, config, seed, i), exactly as
    `nfmimo synthesize --seed S` makes it.

    config: a dict or a JSON file path in the schema of docs/synthesizer.md (None: the defaults); snr: the CLI's
    --snr text ("30", "20:40" or "none") on top of the config.
    """

    def __init__(self, system: Optional[System] = None, grid: Optional[Grid] = None, config=None,
                 snr: Optional[str] = None, seed: int = 1, device: str = "auto", batch: int = 64):
        self.system = system if system is not None else paper_system()
        self.grid = grid if grid is not None else paper_grid()
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer below 2^63 (got {seed})")
        self.seed = int(seed)
        self._synth = _core.Synthesizer(self.system, self.grid, _config_json(config),
                                        None if snr is None else str(snr), self.seed, device, int(batch))

    @property
    def config(self) -> dict:
        return json.loads(self._synth.config)

    @property
    def device(self) -> str:
        return self._synth.device

    def batch(self, first: int, count: int) -> tuple:
        """(measurements [count, K, T, R] complex64, targets [count, nx, ny, nz] complex64, snr_db [count] float32)
        of samples first .. first + count - 1, as numpy arrays."""
        return self._synth.batch(int(first), int(count))


def synthesize_dataset(path, count: int, system: Optional[System] = None, grid: Optional[Grid] = None, config=None,
                       snr: Optional[str] = None, seed: int = 1, shard=(0, 1), device: str = "auto", batch: int = 64,
                       gzip: int = 0, overwrite: bool = False, resume: bool = False) -> dict:
    """Writes a dataset file exactly as `nfmimo synthesize` does (the same code: attributes, OUT.partial until
    complete, resume, shards (i, n)). Returns what the run did: complete, path, written, in_file, seconds,
    device."""
    return dict(_core.synthesize_dataset(os.fspath(path), int(count), system if system is not None else paper_system(),
                                         grid if grid is not None else paper_grid(), _config_json(config),
                                         None if snr is None else str(snr), int(seed), int(shard[0]), int(shard[1]),
                                         device, int(batch), int(gzip), bool(overwrite), bool(resume)))


# ------------------------------------------------------------------------------------------------------------
# Threads and devices
# ------------------------------------------------------------------------------------------------------------
def set_num_threads(n: int) -> None:
    """CPU threads of the engine (like the CLI's --threads)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return _core.get_num_threads()


def cuda_available() -> bool:
    return _core.cuda_device_count() > 0

"""nfmimo for PyTorch: the physics operator as autograd functions, and synthetic data as an IterableDataset.

    import nfmimo, nfmimo.torch
    physics = nfmimo.torch.Physics(nfmimo.Operator(nfmimo.paper_system(15), grid))
    y = physics.A(x)              # x [B, nx, ny, nz] complex64 -> y [B, K, T, R], differentiable
    x0 = physics.A_adjoint(y)

The backward of A is A^H applied to the upstream gradient, and the backward of A^H is A (PyTorch's convention
for complex linear maps: the gradient of a real loss L w.r.t. x is A^H dL/dy). Tensors stay on their device
(CPU or CUDA) and are handed to the engine without a copy when they are contiguous complex64.
"""
from __future__ import annotations

from typing import Optional

import torch

import nfmimo
from ._arrays import prepare

__all__ = ["forward", "adjoint", "normal", "Physics", "SyntheticDataset"]


def _complex64(t: torch.Tensor) -> torch.Tensor:
    # Done outside the autograd functions so that PyTorch differentiates the conversion (a real input gets the
    # real part of the complex gradient).
    return t if t.dtype == torch.complex64 else t.to(torch.complex64)


class _Forward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, op):
        ctx.op = op
        return op.forward(prepare(x, "x"))

    @staticmethod
    def backward(ctx, grad):
        return _Adjoint.apply(grad, ctx.op), None


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, op):
        ctx.op = op
        return op._image("adjoint", prepare(y, "y"), None, "exact")

    @staticmethod
    def backward(ctx, grad):
        return _Forward.apply(grad, ctx.op), None


def forward(op: "nfmimo.Operator", x: torch.Tensor) -> torch.Tensor:
    """A x with autograd; x [..., nx, ny, nz]."""
    return _Forward.apply(_complex64(x), op)


def adjoint(op: "nfmimo.Operator", y: torch.Tensor) -> torch.Tensor:
    """A^H y with autograd (always the exact adjoint, so that it is the true adjoint of forward)."""
    return _Adjoint.apply(_complex64(y), op)


def normal(op: "nfmimo.Operator", x: torch.Tensor) -> torch.Tensor:
    """A^H A x with autograd."""
    return adjoint(op, forward(op, x))


class Physics(torch.nn.Module):
    """The linear-physics interface of PyTorch imaging libraries: A, A_adjoint, A_normal (batch-first complex
    tensors; forward(x) = A(x)). Holds no parameters."""

    def __init__(self, op: "nfmimo.Operator"):
        super().__init__()
        self.op = op

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return forward(self.op, x)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return adjoint(self.op, y)

    def A_normal(self, x: torch.Tensor) -> torch.Tensor:
        return normal(self.op, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)


class SyntheticDataset(torch.utils.data.IterableDataset):
    """Streams samples first .. first + count - 1 of the synthesizer as (measurements [K, T, R], targets
    [nx, ny, nz]) complex64 tensors; with DataLoader workers, worker i of n takes the contiguous range
    [count i / n, count (i + 1) / n), like `nfmimo synthesize --shard i/n`, so every sample comes exactly once.
    Each worker builds its own synthesizer (CPU by default: DataLoader workers should not share a GPU plan);
    with `threads`, each worker's engine uses that many CPU threads.
    """

    def __init__(self, count: int, system=None, grid=None, config=None, snr: Optional[str] = None, seed: int = 1,
                 device: str = "cpu", batch: int = 16, first: int = 0, threads: Optional[int] = None):
        super().__init__()
        if count < 0 or first < 0:
            raise ValueError(f"count and first must be non-negative (got {count}, {first})")
        self.count, self.first, self.batch = int(count), int(first), int(batch)
        self.system = system if system is not None else nfmimo.paper_system()
        self.grid = grid if grid is not None else nfmimo.paper_grid()
        self.config, self.snr, self.seed, self.device, self.threads = config, snr, int(seed), device, threads
        # Checks the settings now, in the main process, rather than in a worker.
        nfmimo.Synthesizer(self.system, self.grid, config, snr, self.seed, device, self.batch)

    def __len__(self) -> int:
        return self.count

    def shard(self):
        """[first, end) of the samples this process (or DataLoader worker) yields."""
        info = torch.utils.data.get_worker_info()
        i, n = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.first + self.count * i // n, self.first + self.count * (i + 1) // n

    def __iter__(self):
        if self.threads:
            nfmimo.set_num_threads(self.threads)
        lo, hi = self.shard()
        synth = nfmimo.Synthesizer(self.system, self.grid, self.config, self.snr, self.seed, self.device,
                                   self.batch)
        for start in range(lo, hi, self.batch):
            y, x, _ = synth.batch(start, min(self.batch, hi - start))
            y, x = torch.from_numpy(y), torch.from_numpy(x)
            for j in range(y.shape[0]):
                yield y[j], x[j]

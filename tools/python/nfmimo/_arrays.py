"""Array handling shared by the operators: numpy arrays and torch tensors in, the same kind out.

Inputs reach the engine through DLPack without a copy when they are C-contiguous complex64 (numpy, or torch on
the CPU or a CUDA device). Anything else that is a real or complex floating-point array is converted first (one
copy: the documented price of a non-contiguous or non-complex64 input); integer, boolean and object arrays are
refused with ValueError.
"""
from __future__ import annotations

import sys

import numpy as np

_FLOAT_KINDS = "fc"  # numpy dtype kinds that convert to complex64


def is_torch(a) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def prepare(a, name: str):
    """The array as the engine takes it: C-contiguous complex64, same framework and device."""
    if is_torch(a):
        import torch

        t = a.detach()
        if t.dtype != torch.complex64:
            if not (t.dtype.is_floating_point or t.dtype.is_complex):
                raise ValueError(f"{name}: expected a complex64 (or real/complex floating) tensor, got {t.dtype}")
            t = t.to(torch.complex64)
        if t.is_conj():
            t = t.resolve_conj()
        return t.contiguous()
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype != np.complex64:
        if a.dtype.kind not in _FLOAT_KINDS:
            raise ValueError(f"{name}: expected a complex64 (or real/complex floating) array, got {a.dtype}")
        a = a.astype(np.complex64)
    return np.ascontiguousarray(a)


def empty(like, shape, dtype="complex64"):
    """An uninitialised array of `shape` of the same kind and on the same device as `like`."""
    if is_torch(like):
        import torch

        return torch.empty(tuple(shape), dtype=getattr(torch, dtype), device=like.device)
    return np.empty(tuple(shape), dtype=dtype)


def leading_shape(a, trailing: int, name: str, expected) -> tuple:
    shape = tuple(a.shape)
    if len(shape) < trailing or tuple(shape[len(shape) - trailing:]) != tuple(expected):
        want = ", ".join(str(d) for d in expected)
        raise ValueError(f"{name}: expected shape (..., {want}), got {shape}")
    return shape[: len(shape) - trailing]


def like_input(result: np.ndarray, like):
    """A host result (numpy, owned) as the kind of `like`: numpy as is, torch without a copy on the CPU."""
    if is_torch(like):
        import torch

        t = torch.from_numpy(result)
        return t if like.device.type == "cpu" else t.to(like.device)
    return result


def host_numpy(a, name: str) -> np.ndarray:
    """A complex64 C-contiguous host array for the host-only entry points (a CUDA tensor is copied down)."""
    a = prepare(a, name)
    if is_torch(a):
        a = a.cpu().numpy() if a.device.type != "cpu" else a.numpy()
    return a

"""Shared setup of the nfmimo Python package tests: the package from the build folder, the CLI, tiny systems."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("NFMIMO_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[3]))
BUILD_DIR = pathlib.Path(os.environ.get("NFMIMO_BUILD_DIR", SOURCE_DIR / "build"))
# The package as the build assembles it (BUILD/python/nfmimo), ahead of any installed copy.
sys.path.insert(0, str(BUILD_DIR / "python"))

import nfmimo  # noqa: E402

# Tiny settings keep the suite fast on two shared cores: the paper's cross array at K = 4 and an 8 x 8 x 8 grid
# (the CLI tests' kTinyGrid).
TINY_GRID = ((-0.08, 0.08, 8), (-0.08, 0.08, 8), (0.4, 0.55, 8))
TINY_GRID_ARG = "--grid=-0.08:0.08:8,-0.08:0.08:8,0.4:0.55:8"


def pytest_collection_modifyitems(config, items):
    if nfmimo.cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device: " + nfmimo._core.cuda_unavailable_reason())
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_system():
    return nfmimo.paper_system(4)


@pytest.fixture(scope="session")
def tiny_grid():
    return nfmimo.linspace_grid(*TINY_GRID)


@pytest.fixture(scope="session")
def tiny_op(tiny_system, tiny_grid):
    return nfmimo.Operator(tiny_system, tiny_grid)


@pytest.fixture(scope="session")
def cli():
    binary = os.environ.get("NFMIMO_BINARY", str(BUILD_DIR / "nfmimo"))
    if not os.path.exists(binary):
        pytest.skip(f"the nfmimo CLI is not built ({binary})")

    def run(*args, expect=0):
        r = subprocess.run([binary, "--threads", "2", *map(str, args)], capture_output=True, text=True)
        assert r.returncode == expect, f"nfmimo {' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout}{r.stderr}"
        return r

    return run


def crandn(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

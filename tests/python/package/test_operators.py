"""The operators on numpy arrays and torch tensors: adjointness, batches, zero-copy, conversions, errors, CLI
parity, the GIL."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import nfmimo
from conftest import TINY_GRID_ARG, crandn, rel_err

# Float32 operators summing K*T*R = 624 (adjoint) or V = 512 (forward) terms of unit-magnitude phasors: the two
# inner products of a dot-product test then agree to a few float32 ulps of their magnitude times sqrt(terms);
# 1e-4 relative leaves margin while still catching any wrong sign, conjugate or index (those give O(1) errors).
DOT_TOL = 1e-4


def vdot(a, b):
    return np.vdot(np.asarray(a, np.complex128).ravel(), np.asarray(b, np.complex128).ravel())


def test_dot_product_numpy_with_batch_dims(tiny_op):
    rng = np.random.default_rng(1)
    x = crandn(rng, 2, 3, *tiny_op.volume_shape)
    y = crandn(rng, 2, 3, *tiny_op.measurement_shape)
    ax = tiny_op.forward(x)
    ahy = tiny_op.adjoint(y)
    assert ax.shape == (2, 3) + tiny_op.measurement_shape and ax.dtype == np.complex64
    assert ahy.shape == (2, 3) + tiny_op.volume_shape and ahy.dtype == np.complex64
    lhs, rhs = vdot(ax, y), vdot(x, ahy)
    assert abs(lhs - rhs) <= DOT_TOL * abs(lhs)


def test_dot_product_fast_mode_is_close_to_exact(tiny_system, tiny_grid):
    # The fast adjoint interpolates range profiles: within 1e-2 of the exact one (docs/physics.md).
    rng = np.random.default_rng(2)
    y = crandn(rng, 2, *tiny_system.measurement_shape)
    exact = nfmimo.Operator(tiny_system, tiny_grid).adjoint(y)
    fast = nfmimo.Operator(tiny_system, tiny_grid, mode="fast").adjoint(y)
    assert rel_err(fast, exact) < 1e-2


def test_batch_dims_match_single_frames(tiny_op):
    rng = np.random.default_rng(3)
    x = crandn(rng, 3, 2, *tiny_op.volume_shape)
    y = tiny_op.forward(x)
    for i in range(3):
        for j in range(2):
            np.testing.assert_array_equal(y[i, j], tiny_op.forward(x[i, j]))
    # No batch dimension at all, and an empty batch.
    assert tiny_op.forward(x[0, 0]).shape == tiny_op.measurement_shape
    for make in (np.zeros, np.empty):
        assert tiny_op.adjoint(make((0,) + tiny_op.measurement_shape, np.complex64)).shape == (0,) + tiny_op.volume_shape
    out = np.empty((0,) + tiny_op.volume_shape, np.complex64)
    assert tiny_op.adjoint(np.empty((0,) + tiny_op.measurement_shape, np.complex64), out=out) is out


def test_other_imaging_methods_and_normal(tiny_op):
    rng = np.random.default_rng(4)
    x = crandn(rng, 2, *tiny_op.volume_shape)
    y = tiny_op.forward(x)
    np.testing.assert_array_equal(tiny_op.normal(x), tiny_op.adjoint(y))
    bp, k = tiny_op.backprojection(y), tiny_op.kirchhoff(y)
    assert bp.shape == k.shape == x.shape
    # Backprojection's weights are the adjoint's phases without its 1/(Rt Rr) amplitude: different images.
    assert rel_err(bp / np.abs(bp).max(), tiny_op.adjoint(y) / np.abs(tiny_op.adjoint(y)).max()) > 1e-3


def test_zero_copy_numpy(tiny_op):
    rng = np.random.default_rng(5)
    y = crandn(rng, 2, *tiny_op.measurement_shape)
    out = np.empty((2,) + tiny_op.volume_shape, np.complex64)
    # The engine sees the caller's memory, and writes into the given output.
    assert nfmimo._core.data_pointer(nfmimo._arrays.prepare(y, "y")) == y.ctypes.data
    r = tiny_op.adjoint(y, out=out)
    assert r is out and r.ctypes.data == out.ctypes.data
    np.testing.assert_array_equal(out, tiny_op.adjoint(y))


def test_non_contiguous_and_other_dtypes_are_converted(tiny_op):
    rng = np.random.default_rng(6)
    y = crandn(rng, 4, *tiny_op.measurement_shape)
    strided = y[::2]
    assert nfmimo._core.data_pointer(nfmimo._arrays.prepare(strided, "y")) != strided.ctypes.data
    np.testing.assert_array_equal(tiny_op.adjoint(strided), tiny_op.adjoint(np.ascontiguousarray(strided)))
    np.testing.assert_array_equal(tiny_op.adjoint(y.astype(np.complex128)), tiny_op.adjoint(y))
    real = rng.standard_normal((1,) + tiny_op.volume_shape)  # float64 reflectivities
    np.testing.assert_array_equal(tiny_op.forward(real), tiny_op.forward(real.astype(np.complex64)))
    with pytest.raises(ValueError, match="expected a complex64"):
        tiny_op.forward(np.ones(tiny_op.volume_shape, np.int32))


def test_bad_shapes_and_outputs_are_refused_before_work(tiny_op):
    with pytest.raises(ValueError, match=r"y: expected shape \(\.\.\., 4, 12, 13\), got \(4, 12, 12\)"):
        tiny_op.adjoint(np.zeros((4, 12, 12), np.complex64))
    y = np.zeros((2,) + tiny_op.measurement_shape, np.complex64)
    with pytest.raises(ValueError, match="out: expected dtype complex64"):
        tiny_op.adjoint(y, out=np.empty((2,) + tiny_op.volume_shape, np.complex128))
    with pytest.raises(ValueError, match="out: 3 frames, but y has 2"):
        tiny_op.adjoint(y, out=np.empty((3,) + tiny_op.volume_shape, np.complex64))
    with pytest.raises(ValueError, match="out: the array is not C-contiguous"):
        tiny_op.adjoint(y, out=np.empty((2,) + tiny_op.volume_shape, np.complex64, order="F"))
    with pytest.raises(ValueError, match="mode 'fast' supports adjoint and backprojection"):
        nfmimo.Operator(tiny_op.system, tiny_op.grid, mode="fast").kirchhoff(y)
    with pytest.raises(ValueError, match="mode: 'quick' is not exact or fast"):
        nfmimo.Operator(tiny_op.system, tiny_op.grid, mode="quick")


def test_grid_point_on_an_antenna_is_refused(tiny_system):
    with pytest.raises(ValueError, match="a grid point lies on transmitter"):
        nfmimo.Operator(tiny_system, nfmimo.linspace_grid((-0.15, 0.15, 3), (-0.15, 0.15, 3), (0.0, 0.5, 3)))


@pytest.mark.parametrize("method,mode", [("adjoint", "exact"), ("backprojection", "exact"),
                                         ("kirchhoff", "exact"), ("adjoint", "fast")])
def test_parity_with_the_cli(tmp_path, cli, tiny_system, tiny_grid, method, mode):
    rng = np.random.default_rng(7)
    y = crandn(rng, 3, *tiny_system.measurement_shape)
    nfmimo.write_measurements(tmp_path / "m.h5", y, tiny_system, grid=tiny_grid)
    cli("reconstruct", tmp_path / "m.h5", "--method", method, "--mode", mode, "--device", "cpu", "--complex",
        "--out", tmp_path / "v.h5")
    expected = nfmimo.read_volumes(tmp_path / "v.h5").volumes
    op = nfmimo.Operator(tiny_system, tiny_grid, mode=mode)
    got = getattr(op, method)(y)
    assert rel_err(got, expected) <= 1e-6


def test_forward_matches_the_double_precision_point_simulation(tmp_path, cli):
    # `nfmimo simulate` without noise evaluates the Born model in double precision for points on grid nodes; the
    # float32 operator (phasors rounded from double, 2 targets) agrees to ~1e-7 per term: 1e-5 leaves margin.
    # (Bit-for-bit forward parity with the CLI is in test_synthesizer.py: synthesize --snr none is A x.)
    cli("simulate", "--points", "0,0,0.5,1;0.05,-0.05,0.45,0.7", "--system", "paper", "--freqs", "4",
        "--out", tmp_path / "s.h5")
    m = nfmimo.read_measurements(tmp_path / "s.h5")
    assert m.targets is not None
    got = nfmimo.Operator(m.system, m.grid).forward(m.targets)
    assert rel_err(got, m.y) <= 1e-5


def test_system_from_arrays_and_file(tmp_path, tiny_system, tiny_grid):
    s = nfmimo.system_from_arrays(tiny_system.tx_positions, tiny_system.rx_positions, tiny_system.frequencies)
    assert s == tiny_system
    irregular = nfmimo.system_from_arrays([[0, 0, 0], [0.1, 0.02, 0]], [[0.05, 0.05, 0]], [5e9, 6e9, 8e9])
    assert irregular.measurement_shape == (3, 2, 1) and not irregular.uniform_frequencies
    op = nfmimo.Operator(irregular, tiny_grid)
    assert op.forward(np.ones(tiny_grid.shape, np.complex64)).shape == (3, 2, 1)
    with pytest.raises(ValueError, match="mode 'fast' needs uniformly spaced frequencies"):
        nfmimo.Operator(irregular, tiny_grid, mode="fast")
    nfmimo.write_measurements(tmp_path / "m.h5", np.zeros((3, 2, 1), np.complex64), irregular, grid=tiny_grid)
    s2, g2 = nfmimo.read_system(tmp_path / "m.h5")
    assert s2 == irregular and g2 == tiny_grid
    assert nfmimo.paper_system(7).measurement_shape == (7, 12, 13)
    assert nfmimo.grid_from_axes(tiny_grid.x, tiny_grid.y, tiny_grid.z) == tiny_grid
    with pytest.raises(ValueError, match="frequencies"):
        nfmimo.system_from_arrays([[0, 0, 0]], [[0.1, 0, 0]], [-1.0])


def test_the_gil_is_released_while_the_operator_computes():
    op = nfmimo.Operator(nfmimo.paper_system(15), nfmimo.paper_grid())
    y = np.ones((8,) + op.measurement_shape, np.complex64)
    op.adjoint(y[:1])  # plan built outside the measured call
    ticks = []
    done = threading.Event()

    def work():
        op.adjoint(y)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    # Holding the GIL would freeze this loop for the whole call (one tick at most).
    assert len(ticks) >= 5


@pytest.mark.gpu
def test_cuda_arrays_in_and_out_without_host_round_trip(tiny_op):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    rng = np.random.default_rng(8)
    y = torch.from_numpy(crandn(rng, 2, *tiny_op.measurement_shape)).cuda()
    x = tiny_op.adjoint(y)
    assert x.device == y.device and x.dtype == torch.complex64
    assert rel_err(x.cpu().numpy(), tiny_op.adjoint(y.cpu().numpy())) < 1e-4
    out = torch.empty_like(x)
    assert tiny_op.adjoint(y, out=out).data_ptr() == out.data_ptr()
    assert nfmimo._core.data_pointer(y) == y.data_ptr()
    ax = tiny_op.forward(x)
    assert ax.device == y.device
    assert rel_err(ax.cpu().numpy(), tiny_op.forward(x.cpu().numpy())) < 1e-4


def test_concurrent_first_calls_share_one_plan():
    # Threads racing to build the plan of a fresh operator: each must release the GIL before taking the plan's
    # lock (holding the lock while waiting for the GIL deadlocks against a thread that holds the GIL and waits for
    # the lock, freezing the interpreter). Run in a child process so that a deadlock fails the test.
    code = """
import sys, threading
import numpy as np
import nfmimo
op = nfmimo.Operator(nfmimo.paper_system(4), nfmimo.linspace_grid((-0.08, 0.08, 8), (-0.08, 0.08, 8), (0.4, 0.55, 8)))
y = np.ones((2, 4, 12, 13), np.complex64)
results = [None] * 4
def work(i):
    results[i] = op.adjoint(y)
threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert all((r == results[0]).all() for r in results)
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("concurrent first calls deadlocked")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr

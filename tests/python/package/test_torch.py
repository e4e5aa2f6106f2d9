"""nfmimo with PyTorch: tensors through the operators without copies, autograd, a tiny unrolled network, and the
streaming dataset."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nfmimo  # noqa: E402
import nfmimo.torch  # noqa: E402
from conftest import crandn, rel_err  # noqa: E402

DOT_TOL = 1e-4  # as in test_operators.py


def tdot(a, b):
    return complex(torch.vdot(a.detach().reshape(-1).to(torch.complex128), b.detach().reshape(-1).to(torch.complex128)))


def test_dot_product_torch(tiny_op):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((3,) + tiny_op.volume_shape, dtype=torch.complex64, generator=g)
    y = torch.randn((3,) + tiny_op.measurement_shape, dtype=torch.complex64, generator=g)
    ax, ahy = tiny_op.forward(x), tiny_op.adjoint(y)
    assert isinstance(ax, torch.Tensor) and ax.dtype == torch.complex64 and ax.device == x.device
    lhs, rhs = tdot(ax, y), tdot(x, ahy)
    assert abs(lhs - rhs) <= DOT_TOL * abs(lhs)
    np.testing.assert_array_equal(ax.numpy(), tiny_op.forward(x.numpy()))


def test_empty_batches(tiny_op):
    # torch gives empty tensors all-zero strides; an empty batch is still a valid call.
    y = torch.from_numpy(np.empty((0,) + tiny_op.measurement_shape, np.complex64))
    assert tiny_op.adjoint(y).shape == (0,) + tiny_op.volume_shape
    assert tiny_op.forward(torch.zeros((0, 3) + tiny_op.volume_shape, dtype=torch.complex64)).shape == \
        (0, 3) + tiny_op.measurement_shape


def test_zero_copy_torch(tiny_op):
    y = torch.randn((2,) + tiny_op.measurement_shape, dtype=torch.complex64)
    assert nfmimo._core.data_pointer(nfmimo._arrays.prepare(y, "y")) == y.data_ptr()
    out = torch.empty((2,) + tiny_op.volume_shape, dtype=torch.complex64)
    r = tiny_op.adjoint(y, out=out)
    assert r is out and r.data_ptr() == out.data_ptr()
    # A view that is not contiguous is copied once; a conjugate view is resolved; a tensor requiring grad is
    # used through a detached alias (same memory).
    strided = torch.randn((4,) + tiny_op.measurement_shape, dtype=torch.complex64)[::2]
    assert nfmimo._core.data_pointer(nfmimo._arrays.prepare(strided, "y")) != strided.data_ptr()
    torch.testing.assert_close(tiny_op.adjoint(strided), tiny_op.adjoint(strided.contiguous()), rtol=0, atol=0)
    torch.testing.assert_close(tiny_op.adjoint(y.conj()), tiny_op.adjoint(y.conj().resolve_conj()), rtol=0, atol=0)
    leaf = y.clone().requires_grad_()
    assert nfmimo._core.data_pointer(nfmimo._arrays.prepare(leaf, "y")) == leaf.data_ptr()
    with pytest.raises(ValueError, match="expected a complex64"):
        tiny_op.adjoint(torch.zeros((2,) + tiny_op.measurement_shape, dtype=torch.int64))


def test_backward_of_forward_is_the_adjoint(tiny_op):
    g = torch.Generator().manual_seed(2)
    x = torch.randn((2,) + tiny_op.volume_shape, dtype=torch.complex64, generator=g).requires_grad_()
    upstream = torch.randn((2,) + tiny_op.measurement_shape, dtype=torch.complex64, generator=g)
    nfmimo.torch.forward(tiny_op, x).backward(upstream)
    # Dot-product test: x.grad = A^H upstream  <=>  <x.grad, z> = <upstream, A z> for a random z.
    z = torch.randn((2,) + tiny_op.volume_shape, dtype=torch.complex64, generator=g)
    lhs, rhs = tdot(x.grad, z), tdot(upstream, tiny_op.forward(z))
    assert abs(lhs - rhs) <= DOT_TOL * abs(lhs)
    torch.testing.assert_close(x.grad, tiny_op.adjoint(upstream), rtol=0, atol=0)


def test_backward_of_adjoint_is_the_forward(tiny_op):
    g = torch.Generator().manual_seed(3)
    y = torch.randn((2,) + tiny_op.measurement_shape, dtype=torch.complex64, generator=g).requires_grad_()
    upstream = torch.randn((2,) + tiny_op.volume_shape, dtype=torch.complex64, generator=g)
    nfmimo.torch.adjoint(tiny_op, y).backward(upstream)
    w = torch.randn((2,) + tiny_op.measurement_shape, dtype=torch.complex64, generator=g)
    lhs, rhs = tdot(y.grad, w), tdot(upstream, tiny_op.adjoint(w))
    assert abs(lhs - rhs) <= DOT_TOL * abs(lhs)


def test_gradient_of_a_real_loss_matches_a_dense_matrix(tiny_system):
    # PyTorch's complex convention end to end: the gradient of |A x - y|^2 through nfmimo equals the one
    # through the dense matrix of the same operator (built column by column from the forward operator).
    grid = nfmimo.linspace_grid((-0.05, 0.05, 3), (-0.05, 0.05, 2), (0.4, 0.5, 2))
    op = nfmimo.Operator(tiny_system, grid)
    V = 12
    dense = torch.from_numpy(op.forward(np.eye(V, dtype=np.complex64).reshape((V,) + grid.shape)).reshape(V, -1).T.copy())
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn((1,) + grid.shape, dtype=torch.complex64, generator=g)
    y = torch.randn((1,) + op.measurement_shape, dtype=torch.complex64, generator=g)
    xa = x0.clone().requires_grad_()
    (nfmimo.torch.forward(op, xa) - y).abs().pow(2).sum().backward()
    xb = x0.clone().requires_grad_()
    ((dense @ xb.reshape(-1)).reshape(y.shape) - y).abs().pow(2).sum().backward()
    assert rel_err(xa.grad.numpy(), xb.grad.numpy()) < 1e-4


def test_physics_interface(tiny_op):
    physics = nfmimo.torch.Physics(tiny_op)
    x = torch.randn((2,) + tiny_op.volume_shape, dtype=torch.complex64)
    torch.testing.assert_close(physics(x), tiny_op.forward(x), rtol=0, atol=0)
    torch.testing.assert_close(physics.A_adjoint(physics.A(x)), physics.A_normal(x), rtol=0, atol=0)
    real = torch.rand((2,) + tiny_op.volume_shape, requires_grad=True)  # real reflectivities: real gradients
    physics.A(real).abs().sum().backward()
    assert real.grad.dtype == torch.float32 and torch.isfinite(real.grad).all()


def largest_eigenvalue(physics, shape):
    v = torch.randn((1,) + tuple(shape), dtype=torch.complex64, generator=torch.Generator().manual_seed(9))
    for _ in range(20):
        v = physics.A_normal(v)
        norm = v.abs().pow(2).sum().sqrt().item()
        v = v / norm
    return norm


class TinyUnrolled(torch.nn.Module):
    """Two gradient steps x <- x - alpha A^H (A x - y) (alpha learned, starting at 1 / ||A^H A||), each followed by
    a small residual CNN on [re, im]; works on the scale max |A^H y| = 1 per sample."""

    def __init__(self, op, steps=2):
        super().__init__()
        self.physics = nfmimo.torch.Physics(op)
        self.log_alpha = torch.nn.Parameter(torch.tensor(1.0 / largest_eigenvalue(self.physics, op.volume_shape)).log())
        self.cnn = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 3, padding=1))
            for _ in range(steps))

    def forward(self, y):
        x = self.physics.A_adjoint(y)
        scale = x.abs().amax(dim=(1, 2, 3), keepdim=True)
        x, y = x / scale, y / scale.reshape(-1, 1, 1, 1)
        for cnn in self.cnn:
            x = x - self.log_alpha.exp() * self.physics.A_adjoint(self.physics.A(x) - y)
            ri = torch.stack([x.real, x.imag], dim=1)
            ri = ri + cnn(ri)
            x = torch.complex(ri[:, 0], ri[:, 1])
        return x.abs()


def test_power_iteration_finds_the_normal_operators_norm(tiny_system):
    # Against the dense matrix's largest singular value squared (a 12-voxel grid).
    grid = nfmimo.linspace_grid((-0.05, 0.05, 3), (-0.05, 0.05, 2), (0.4, 0.5, 2))
    op = nfmimo.Operator(tiny_system, grid)
    dense = op.forward(np.eye(12, dtype=np.complex64).reshape((12,) + grid.shape)).reshape(12, -1).T
    sigma = np.linalg.svd(dense.astype(np.complex128), compute_uv=False)[0]
    assert abs(largest_eigenvalue(nfmimo.torch.Physics(op), grid.shape) - sigma**2) < 1e-3 * sigma**2


def test_unrolled_reconstruction_learns(tiny_system, tiny_grid):
    torch.manual_seed(0)
    op = nfmimo.Operator(tiny_system, tiny_grid)
    y, x, _ = nfmimo.Synthesizer(tiny_system, tiny_grid, seed=3, device="cpu").batch(0, 4)
    y, target = torch.from_numpy(y), torch.from_numpy(np.abs(x))
    target = target / target.amax(dim=(1, 2, 3), keepdim=True)
    net = TinyUnrolled(op)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(y), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert net.log_alpha.grad is not None and net.log_alpha.grad != 0
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_synthetic_dataset_shards_across_workers(tiny_system, tiny_grid):
    count = 10
    ds = nfmimo.torch.SyntheticDataset(count, tiny_system, tiny_grid, seed=11, batch=3, threads=1)
    y_ref, x_ref, _ = nfmimo.Synthesizer(tiny_system, tiny_grid, seed=11, device="cpu").batch(0, count)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    ys, xs = [], []
    for y, x in loader:
        assert y.shape[1:] == tiny_op_shape(tiny_system) and x.dtype == torch.complex64
        ys.append(y)
        xs.append(x)
    ys, xs = torch.cat(ys).numpy(), torch.cat(xs).numpy()
    assert len(ys) == count
    # Each reference sample appears exactly once (workers interleave their batches).
    order = [int(np.argmin([np.abs(y - r).max() for r in y_ref])) for y in ys]
    assert sorted(order) == list(range(count))
    for y, x, i in zip(ys, xs, order):
        np.testing.assert_array_equal(y, y_ref[i])
        np.testing.assert_array_equal(x, x_ref[i])
    assert len(ds) == count


def tiny_op_shape(system):
    return tuple(system.measurement_shape)


@pytest.mark.gpu
def test_autograd_on_cuda(tiny_op):
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    x = torch.randn((2,) + tiny_op.volume_shape, dtype=torch.complex64, device="cuda", requires_grad=True)
    up = torch.randn((2,) + tiny_op.measurement_shape, dtype=torch.complex64, device="cuda")
    nfmimo.torch.forward(tiny_op, x).backward(up)
    assert x.grad.device == x.device
    assert rel_err(x.grad.cpu().numpy(), tiny_op.adjoint(up.cpu()).numpy()) < 1e-4

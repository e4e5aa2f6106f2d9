// GPU vs CPU parity of plug-and-play ADMM (label gpu; skips without a GPU): the same solver on the GPU plan's
// operators, with the soft-threshold denoiser (ADMM for l1) and with a network denoiser on the GPU.
#include <cmath>

#include <gtest/gtest.h>

#include "kernels/device.hpp"
#include "kernels/imager.hpp"
#include "kernels/iterative_solver.hpp"
#include "models/learned/denoiser.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/pnp.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

RadarSystem mid_system() {
  return RadarSystem{ArrayGeometry::paper_cross(6, 7, 0.15), FrequencySweep::linspace(4e9, 16e9, 8)};
}
ImagingGrid mid_grid() {  // 8 points on z so that the U-Net accepts the grid
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 9), Axis::linspace(-0.08, 0.08, 9),
                     Axis::linspace(0.4, 0.5, 8));
}

std::vector<cfloat> measurements(const CpuOperator& op, int frames) {
  const std::size_t V = op.grid().voxels(), S = op.system().samples_per_frame();
  std::vector<cfloat> y(frames * S);
  for (int n = 0; n < frames; ++n) {
    auto x = test::random_complex<float>(V, 10 + n);
    for (auto& v : x) v *= 0.05f;
    x[(37 * (n + 1)) % V] = {1.0f, 0.3f};
    x[(101 * (n + 2)) % V] = {-0.5f, 0.6f};
    op.forward(x.data(), y.data() + n * S, 1);
  }
  return y;
}

// The solver is shared; only the operators (and the network backend) differ, so iterates agree to float
// rounding amplified over the iterations: 1e-3 relative after a fixed number of iterations.
TEST(PnpGpu, SoftThresholdMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const RadarSystem sys = mid_system();
  const ImagingGrid grid = mid_grid();
  const std::size_t V = grid.voxels();
  const Imager cpu(sys, grid, DeviceKind::Cpu, 1), gpu(sys, grid, DeviceKind::Cuda, 1);
  const auto y = measurements(*cpu.cpu(), 2);
  const double L = make_iterative_solver(cpu)->lipschitz();
  PnpOptions o;
  o.rho = 0.2;
  o.max_iterations = 30;
  o.tolerance = 0;
  FunctionDenoiser soft = soft_threshold_denoiser(V, float(0.05 * L / (o.rho * L)));
  std::vector<cfloat> xc(2 * V), xg(2 * V);
  PnpSolver(pnp_operator(cpu), L).solve(y.data(), xc.data(), 2, o, soft);
  PnpSolver(pnp_operator(gpu), L).solve(y.data(), xg.data(), 2, o, soft);
  EXPECT_TRUE(test::relative_error_below(xg, xc, 1e-3));
}

TEST(PnpGpu, NetworkDenoiserMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const RadarSystem sys = mid_system();
  const ImagingGrid grid = mid_grid();
  const std::size_t V = grid.voxels();
  nn::Model model = nn::make_model("unet3d", sys, grid, nn::ArchitectureOptions{4, 8}, 5);
  model.role = nn::kDenoiserRole;
  nn::NetworkDenoiser dc(model, DeviceKind::Cpu), dg(model, DeviceKind::Cuda, nn::Precision::Fp32);
  std::vector<float> m(V), oc(V), og(V);
  const auto r = test::random_complex<float>(V, 3);
  for (std::size_t i = 0; i < V; ++i) m[i] = 3.0f * std::abs(r[i]);
  dc.denoise(m.data(), oc.data());
  dg.denoise(m.data(), og.data());
  EXPECT_TRUE(test::relative_error_below(og, oc, 1e-4));

  const Imager cpu(sys, grid, DeviceKind::Cpu, 1), gpu(sys, grid, DeviceKind::Cuda, 1);
  const auto y = measurements(*cpu.cpu(), 1);
  const double L = make_iterative_solver(cpu)->lipschitz();
  PnpOptions o = default_pnp_options();
  o.max_iterations = 5;
  o.tolerance = 0;
  std::vector<cfloat> xc(V), xg(V);
  PnpSolver(pnp_operator(cpu), L).solve(y.data(), xc.data(), 1, o, dc);
  PnpSolver(pnp_operator(gpu), L).solve(y.data(), xg.data(), 1, o, dg);
  EXPECT_TRUE(test::relative_error_below(xg, xc, 1e-3));
}

}  // namespace
}  // namespace nfmimo

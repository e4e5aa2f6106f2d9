// The cuDNN training backend (see gpu_backend.hpp).
#include "models/training/gpu_backend.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "kernels/cuda_check.hpp"
#include "kernels/device.hpp"
#include "kernels/cuda_event.hpp"
#include "kernels/device_buffer.hpp"
#include "models/nn/cuda/kernels.hpp"
#include "models/nn/cuda/network.hpp"
#include "models/nn/cuda/network_internals.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

namespace {

constexpr float kInitialLossScale = 65536.f;  // 2^16, PyTorch's GradScaler default
constexpr int kGrowthInterval = 2000;

// Pinned host memory for the step's scalars (an asynchronous copy needs it).
class PinnedScalars {
 public:
  PinnedScalars() {
    NFMIMO_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p_), sizeof(gpu::StepScalars)));
  }
  ~PinnedScalars() {
    if (p_) NFMIMO_CUDA_LOG(cudaFreeHost(p_));
  }
  PinnedScalars(const PinnedScalars&) = delete;
  PinnedScalars& operator=(const PinnedScalars&) = delete;
  gpu::StepScalars* get() const { return p_; }

 private:
  gpu::StepScalars* p_ = nullptr;
};

}  // namespace

struct GpuTrainingBackend::Impl {
  Precision precision;
  GpuNetwork net;
  GpuNetworkInternals& in;
  DeviceBuffer<float> m, v;
  DeviceBuffer<gpu::StepScalars> scalars;
  DeviceBuffer<float> loss_scratch, grad_scratch;
  DeviceBuffer<float> output, grad_output;  // [n, output]
  DeviceBuffer<float> host_input, host_target;
  // One pinned slot and event per step in flight; step k uses slot k % kStepsInFlight.
  PinnedScalars pinned[kStepsInFlight];
  CudaEvent done[kStepsInFlight];
  long long queued = 0, collected = 0;
  DeviceStream stream;  // host-memory calls

  Impl(const Network& network, const Parameters& initial, Precision p)
      : precision(p), net(network, initial, Mode::Training, p), in(net.internals()) {
    m.allocate(in.count);
    v.allocate(in.count);
    m.zero(stream.get());
    v.zero(stream.get());
    scalars.allocate(1);
    loss_scratch.allocate(gpu::loss_scratch());
    grad_scratch.allocate(gpu::grad_scratch());
    reset_scalars(0);
  }

  void reset_scalars(long long step) {
    gpu::StepScalars s{};
    s.loss_scale = precision == Precision::Fp16 ? kInitialLossScale : 1.f;
    s.finite = 1, s.reported_finite = 1, s.clip_factor = 1.f, s.step = step;
    NFMIMO_CUDA_CHECK(cudaMemcpyAsync(scalars.data(), &s, sizeof s, cudaMemcpyHostToDevice, stream.get()));
    stream.synchronize();
  }

  gpu::StepScalars read_scalars() {
    NFMIMO_CUDA_CHECK(cudaDeviceSynchronize());
    gpu::StepScalars s{};
    NFMIMO_CUDA_CHECK(cudaMemcpy(&s, scalars.data(), sizeof s, cudaMemcpyDeviceToHost));
    return s;
  }

  void queue(const float* input, const float* target, int n, const OptimizerSettings& o, cudaStream_t s) {
    require(n > 0, "GPU training: the batch must be positive");
    if (queued - collected >= kStepsInFlight)
      throw Error("GPU training: more than " + std::to_string(kStepsInFlight) +
                  " steps queued without collecting them");
    require(o.loss != LossKind::MseSsim,
            "the GPU training backend has the mse and l1 losses; mse+ssim runs on the CPU backend (--device "
            "cpu)");
    const std::size_t count = net.network().output_shape(n).elements();
    output.reserve(count);
    grad_output.reserve(count);
    net.plan(n);  // a no-op once planned
    net.forward_device(input, output.data(), n, s);
    gpu::loss_and_gradient(o.loss == LossKind::L1 ? gpu::LossType::L1 : gpu::LossType::Mse, output.data(),
                           target, grad_output.data(), count, scalars.data(), loss_scratch.data(), s);
    net.backward_device(grad_output.data(), nullptr, s);
    const gpu::StepSettings st{o.beta1, o.beta2, o.clip_norm, precision == Precision::Fp16, kGrowthInterval};
    gpu::finish_gradients(in.dtype,
                          in.dtype == gpu::DType::F32 ? static_cast<const void*>(in.grads) : in.compute_grads,
                          in.grads, in.weight_count, in.count, st, scalars.data(), grad_scratch.data(), s);
    const gpu::AdamArgs args{o.learning_rate, o.beta1, o.beta2, o.epsilon, o.weight_decay};
    gpu::adam_update(in.master, m.data(), v.data(), in.grads, in.count, in.weight_count, in.dtype, in.compute,
                     in.count, args, scalars.data(), s);
    const int slot = int(queued % kStepsInFlight);
    NFMIMO_CUDA_CHECK(cudaMemcpyAsync(pinned[slot].get(), scalars.data(), sizeof(gpu::StepScalars),
                                      cudaMemcpyDeviceToHost, s));
    done[slot].record(s);
    ++queued;
  }

  // The oldest uncollected step's result.
  StepResult collect() {
    if (collected == queued) throw Error("GPU training: a step was collected that was never queued");
    const int slot = int(collected % kStepsInFlight);
    NFMIMO_CUDA_CHECK(cudaEventSynchronize(done[slot].get()));
    ++collected;
    const gpu::StepScalars& s = *pinned[slot].get();
    StepResult r;
    r.loss = s.loss;
    r.gradient_norm =
        std::isfinite(s.grad_sq) ? std::sqrt(s.grad_sq) : std::numeric_limits<double>::infinity();
    r.finite = s.reported_finite != 0;
    return r;
  }
};

GpuTrainingBackend::GpuTrainingBackend(const Network& network, const Parameters& initial,
                                       Precision precision) {
  if (cuda_device_count() == 0)
    throw InputError("GPU training needs a CUDA GPU: " + cuda_unavailable_reason());
  impl_ = std::make_unique<Impl>(network, initial, precision);
}
GpuTrainingBackend::~GpuTrainingBackend() = default;

const Network& GpuTrainingBackend::network() const { return impl_->net.network(); }

std::string GpuTrainingBackend::description() const { return impl_->net.description(); }

StepResult GpuTrainingBackend::step(const float* input, const float* target, int n,
                                    const OptimizerSettings& settings) {
  require(steps_in_flight() == 0, "GPU training: step() while pipelined steps are in flight");
  queue_step(input, target, n, settings);
  return collect_step();
}

void GpuTrainingBackend::predict(const float* input, float* output, int n) {
  impl_->net.predict(input, output, n);
}

StepResult GpuTrainingBackend::step_device(const float* input, const float* target, int n,
                                           const OptimizerSettings& settings, cudaStream_t stream) {
  require(steps_in_flight() == 0, "GPU training: step_device() while pipelined steps are in flight");
  impl_->queue(input, target, n, settings, stream);
  return impl_->collect();
}

void GpuTrainingBackend::plan_sizes(const std::vector<int>& step_sizes,
                                    const std::vector<int>& predict_sizes) {
  Impl& m = *impl_;
  for (int n : step_sizes) {
    const std::size_t count = m.net.network().output_shape(n).elements();
    m.output.reserve(count);
    m.grad_output.reserve(count);
    m.net.plan(n);
  }
  for (int n : predict_sizes) m.net.plan_predict(n);
}

void GpuTrainingBackend::predict_device(const float* input, float* output, int n, cudaStream_t stream) {
  impl_->net.predict_device(input, output, n, stream);
}

void GpuTrainingBackend::queue_step(const float* input, const float* target, int n,
                                    const OptimizerSettings& settings, cudaStream_t stream) {
  Impl& m = *impl_;
  if (stream) {
    m.queue(input, target, n, settings, stream);
    return;
  }
  // Host memory: staged through the backend's buffers on its stream, after the steps already queued there.
  const std::size_t in_count = m.net.network().input_shape(n).elements();
  const std::size_t out_count = m.net.network().output_shape(n).elements();
  m.host_input.reserve(in_count);
  m.host_target.reserve(out_count);
  m.host_input.upload(input, in_count, m.stream.get());
  m.host_target.upload(target, out_count, m.stream.get());
  m.queue(m.host_input.data(), m.host_target.data(), n, settings, m.stream.get());
}

StepResult GpuTrainingBackend::collect_step() { return impl_->collect(); }

int GpuTrainingBackend::steps_in_flight() const { return int(impl_->queued - impl_->collected); }

long long GpuTrainingBackend::skipped_steps() { return impl_->read_scalars().skipped; }
double GpuTrainingBackend::loss_scale() { return impl_->read_scalars().loss_scale; }

Parameters GpuTrainingBackend::parameters() const { return impl_->net.parameters(); }

OptimizerState GpuTrainingBackend::optimizer_state() const {
  Impl& m = *impl_;
  OptimizerState st;
  st.step = m.read_scalars().step;
  st.m = m.in.download(m.m.data());
  st.v = m.in.download(m.v.data());
  return st;
}

void GpuTrainingBackend::load_state(const Parameters& parameters, const OptimizerState& state) {
  Impl& m = *impl_;
  m.net.set_parameters(parameters);
  m.m.zero(m.stream.get());
  m.v.zero(m.stream.get());
  m.stream.synchronize();
  if (!state.m.empty()) m.in.upload(state.m, m.m.data());
  if (!state.v.empty()) m.in.upload(state.v, m.v.data());
  m.reset_scalars(state.step);
}

std::unique_ptr<TrainingBackend> make_gpu_training_backend(const Network& network, const Parameters& initial,
                                                           Precision precision) {
  return std::make_unique<GpuTrainingBackend>(network, initial, precision);
}

}  // namespace nfmimo::nn

// The learned pipelines on the GPU (see gpu_pipeline.hpp).
#include "models/learned/gpu_pipeline.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "kernels/cuda_check.hpp"
#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_imaging.hpp"
#include "kernels/gpu_normalise.hpp"
#include "models/learned/composite.hpp"
#include "models/nn/cuda/kernels.hpp"
#include "models/nn/cuda/network.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

namespace {

template <class T>
class PinnedBuffer {
 public:
  explicit PinnedBuffer(std::size_t count) : count_(count) {
    NFMIMO_CUDA_CHECK(
        cudaMallocHost(reinterpret_cast<void**>(&p_), std::max<std::size_t>(count, 1) * sizeof(T)));
  }
  ~PinnedBuffer() {
    if (p_) NFMIMO_CUDA_LOG(cudaFreeHost(p_));
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  T* data() const { return p_; }
  std::size_t size() const { return count_; }

 private:
  T* p_ = nullptr;
  std::size_t count_ = 0;
};

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(fmt::format("cuBLAS: {} failed with status {}", what, int(status)), what, int(status));
}

// The composites' dense layer on the device (models/learned/composite.hpp): W [V][M] and b [V] complex,
// uploaded once and shared by the batched and the live stages (573 MB for K=15).
struct DenseWeights {
  int M, V;
  DeviceBuffer<cfloat> w, b;
  DenseWeights(const Parameters& p, int samples, int voxels)
      : M(samples), V(voxels), w(std::size_t(voxels) * samples), b(std::size_t(voxels)) {
    NFMIMO_CUDA_CHECK(
        cudaMemcpy(w.data(), dense_weights(p), w.size() * sizeof(cfloat), cudaMemcpyHostToDevice));
    NFMIMO_CUDA_CHECK(cudaMemcpy(b.data(), dense_bias(p), b.size() * sizeof(cfloat), cudaMemcpyHostToDevice));
  }
};

// cuBLAS handle (RAII) with its own workspace, so that a GEMM allocates nothing, not even under graph
// capture. cublasSetStream resets the workspace to cuBLAS's pool, so the stream is bound (and the workspace
// set again) only when it changes: never inside the live path's capture, whose warm-up ran on the same
// stream.
class CublasHandle {
 public:
  CublasHandle() : workspace_(kWorkspaceBytes) { check_cublas(cublasCreate(&h_), "cublasCreate"); }
  ~CublasHandle() {
    if (h_) cublasDestroy(h_);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t on(cudaStream_t s) {
    if (!bound_ || s != stream_) {
      check_cublas(cublasSetStream(h_, s), "cublasSetStream");
      check_cublas(cublasSetWorkspace(h_, workspace_.data(), kWorkspaceBytes), "cublasSetWorkspace");
      stream_ = s;
      bound_ = true;
    }
    return h_;
  }

 private:
  static constexpr std::size_t kWorkspaceBytes = 32u << 20;  // cuBLAS's recommendation for Hopper
  DeviceBuffer<unsigned char> workspace_;
  cublasHandle_t h_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool bound_ = false;
};

// Per-stage buffers of the dense first stage.
struct DenseStage {
  std::shared_ptr<const DenseWeights> weights;
  CublasHandle handle;
  DeviceBuffer<float> scales;
  DeviceBuffer<cfloat> scaled, x;
  DenseStage(std::shared_ptr<const DenseWeights> w, int max_batch)
      : weights(std::move(w)),
        scales(std::size_t(max_batch)),
        scaled(std::size_t(max_batch) * weights->M),
        x(std::size_t(max_batch) * weights->V) {}

  // input [frames, 2, V] = [Re, Im] of W (s y) + b, with s from the adjoint (the CPU pipeline's definition).
  void run(const cfloat* d_measurements, const cfloat* d_adjoint, float* d_input, int frames,
           cudaStream_t s) {
    const int M = weights->M, V = weights->V;
    frame_max_scales_device(d_adjoint, frames, std::size_t(V), scales.data(), s);
    gpu::scale_frames(reinterpret_cast<const float*>(d_measurements), scales.data(), frames, std::size_t(M),
                      reinterpret_cast<float*>(scaled.data()), s);
    // Row-major X [frames][V] = Y [frames][M] W^T is, column-major, X (V x frames) = W^T (V x M) Y (M x
    // frames) with W column-major M x V (leading dimension M). fp32 complex GEMM (no TF32:
    // CUBLAS_DEFAULT_MATH).
    const cuComplex one = make_cuComplex(1.0f, 0.0f), zero = make_cuComplex(0.0f, 0.0f);
    check_cublas(cublasCgemm(handle.on(s), CUBLAS_OP_T, CUBLAS_OP_N, V, frames, M, &one,
                             reinterpret_cast<const cuComplex*>(weights->w.data()), M,
                             reinterpret_cast<const cuComplex*>(scaled.data()), M, &zero,
                             reinterpret_cast<cuComplex*>(x.data()), V),
                 "cublasCgemm");
    gpu::add_bias_split(reinterpret_cast<const float*>(x.data()),
                        reinterpret_cast<const float*>(weights->b.data()), frames, std::size_t(V), d_input,
                        s);
  }
};

// The stages shared by the batched and the live paths, on buffers planned for `max_batch` frames.
struct Stages {
  GpuImagingPlan imaging;
  GpuNetwork net;
  DeviceBuffer<cfloat> adjoint;
  DeviceBuffer<float> input;
  std::size_t V;
  int channels;
  ImagingMode mode;
  std::unique_ptr<DenseStage> dense;  // deepdi, deep2s-plus

  Stages(const RadarSystem& system, const ImagingGrid& grid, const Network& network,
         const Parameters& parameters, bool complex_input, Precision precision, ImagingMode physics_mode,
         int max_batch, std::shared_ptr<const DenseWeights> dense_weights = nullptr)
      : imaging(system, grid, max_batch),
        net(network, parameters, Mode::Inference, precision),
        adjoint(grid.voxels() * std::size_t(max_batch)),
        input(grid.voxels() * std::size_t(max_batch) * (complex_input ? 2 : 1)),
        V(grid.voxels()),
        channels(complex_input ? 2 : 1),
        mode(physics_mode) {
    if (dense_weights) dense = std::make_unique<DenseStage>(std::move(dense_weights), max_batch);
  }

  void normalised(const cfloat* d_measurements, float* d_input, int frames, cudaStream_t s) {
    imaging.image(Method::Adjoint, mode, d_measurements, adjoint.data(), frames, s);
    if (dense)
      dense->run(d_measurements, adjoint.data(), d_input, frames, s);
    else
      normalise_by_sample_max(adjoint.data(), d_input, frames, V,
                              channels == 2 ? NormaliseMode::Complex : NormaliseMode::Magnitude, s);
  }

  void run(const cfloat* d_measurements, float* d_volumes, int frames, cudaStream_t s) {
    normalised(d_measurements, input.data(), frames, s);
    net.forward_device(input.data(), d_volumes, frames, s);
  }
};

}  // namespace

struct GpuLearnedPipeline::Impl {
  RadarSystem system;
  ImagingGrid grid;
  Network network;
  Parameters parameters;  // the network's only (a composite's dense layer lives on the device, in `dense`)
  std::shared_ptr<const DenseWeights> dense;
  bool complex_input;
  Precision precision;
  ImagingMode mode;
  int max_batch;
  std::size_t V, S;
  Stages batched;
  DeviceStream stream;
  DeviceBuffer<cfloat> measurements;
  DeviceBuffer<float> volumes;

  // The live path: its own batch-1 stages (so that no batched plan can evict the buffers the graph points
  // to).
  struct Live {
    Stages stages;
    DeviceStream stream;
    DeviceBuffer<cfloat> measurement;
    DeviceBuffer<float> volume;
    PinnedBuffer<cfloat> host_in;
    PinnedBuffer<float> host_out;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    std::string graph_problem;

    Live(Impl& p)
        : stages(p.system, p.grid, p.network, p.parameters, p.complex_input, p.precision, p.mode, 1, p.dense),
          measurement(p.S),
          volume(p.V),
          host_in(p.S),
          host_out(p.V) {}
    ~Live() {
      if (exec) NFMIMO_CUDA_LOG(cudaGraphExecDestroy(exec));
      if (graph) NFMIMO_CUDA_LOG(cudaGraphDestroy(graph));
    }
    void enqueue(cudaStream_t s) { stages.run(measurement.data(), volume.data(), 1, s); }
  };
  std::unique_ptr<Live> live;

  Impl(const RadarSystem& sys, const ImagingGrid& g, const Network& net, const Parameters& params,
       bool complex, Precision p, ImagingMode m, int batch)
      : system(sys),
        grid(g),
        network(net),
        parameters(without_dense_parameters(params)),
        dense(params.count(kDenseWeight) ? std::make_shared<const DenseWeights>(
                                               params, int(sys.samples_per_frame()), int(g.voxels()))
                                         : nullptr),
        complex_input(complex),
        precision(p),
        mode(m),
        max_batch(batch),
        V(g.voxels()),
        S(sys.samples_per_frame()),
        batched(sys, g, net, parameters, complex, p, m, batch, dense),
        measurements(S * std::size_t(batch)),
        volumes(V * std::size_t(batch)) {}

  Live& live_path() {
    if (live) return *live;
    live = std::make_unique<Live>(*this);
    Live& l = *live;
    cudaStream_t s = l.stream.get();
    // Warm-up outside the capture: plans, cuFFT and cuDNN lazy initialisation, function attributes.
    l.stages.net.plan(1);
    l.measurement.zero(s);
    l.enqueue(s);
    l.stream.synchronize();
    try {
      NFMIMO_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      try {
        l.enqueue(s);
      } catch (...) {
        cudaGraph_t partial = nullptr;
        cudaStreamEndCapture(s, &partial);
        if (partial) cudaGraphDestroy(partial);
        throw;
      }
      NFMIMO_CUDA_CHECK(cudaStreamEndCapture(s, &l.graph));
      NFMIMO_CUDA_CHECK(cudaGraphInstantiate(&l.exec, l.graph, 0));
    } catch (const Error& e) {
      // The steps still run, launched one by one; description() says why there is no graph.
      cudaGetLastError();
      if (l.exec) cudaGraphExecDestroy(l.exec), l.exec = nullptr;
      if (l.graph) cudaGraphDestroy(l.graph), l.graph = nullptr;
      l.graph_problem = e.what();
      std::fprintf(stderr, "nfmimo: warning: the live path runs without a CUDA graph: %s\n", e.what());
    }
    return l;
  }

  void replay(Live& l, cudaStream_t s) {
    if (l.exec)
      NFMIMO_CUDA_CHECK(cudaGraphLaunch(l.exec, s));
    else
      l.enqueue(s);
  }
};

GpuLearnedPipeline::GpuLearnedPipeline(const RadarSystem& system, const ImagingGrid& grid,
                                       const Network& network, const Parameters& parameters,
                                       bool complex_input, Precision precision, ImagingMode physics_mode,
                                       int max_batch) {
  require(max_batch > 0, "the batch size must be positive");
  if (cuda_device_count() == 0)
    throw InputError("the GPU learned pipeline needs a CUDA GPU: " + cuda_unavailable_reason());
  impl_ = std::make_unique<Impl>(system, grid, network, parameters, complex_input, precision, physics_mode,
                                 max_batch);
}

GpuLearnedPipeline::~GpuLearnedPipeline() = default;

int GpuLearnedPipeline::max_batch() const { return impl_->max_batch; }

void GpuLearnedPipeline::run_device(const cfloat* d_measurements, float* d_volumes, int frames,
                                    cudaStream_t stream) {
  require(
      frames >= 1 && frames <= impl_->max_batch,
      fmt::format("GPU pipeline: {} frames is outside the planned range [1, {}]", frames, impl_->max_batch));
  impl_->batched.run(d_measurements, d_volumes, frames, stream);
}

void GpuLearnedPipeline::network_input_device(const cfloat* d_measurements, float* d_input, int frames,
                                              cudaStream_t stream) {
  require(
      frames >= 1 && frames <= impl_->max_batch,
      fmt::format("GPU pipeline: {} frames is outside the planned range [1, {}]", frames, impl_->max_batch));
  impl_->batched.normalised(d_measurements, d_input, frames, stream);
}

void GpuLearnedPipeline::run(const cfloat* measurements, int frames, float* volumes) {
  Impl& p = *impl_;
  cudaStream_t s = p.stream.get();
  for (int first = 0; first < frames; first += p.max_batch) {
    const int count = std::min(p.max_batch, frames - first);
    p.measurements.upload(measurements + std::size_t(first) * p.S, std::size_t(count) * p.S, s);
    p.batched.run(p.measurements.data(), p.volumes.data(), count, s);
    p.volumes.download(volumes + std::size_t(first) * p.V, std::size_t(count) * p.V, s);
    p.stream.synchronize();
  }
}

void GpuLearnedPipeline::network_input(const cfloat* measurements, int frames, float* input) {
  Impl& p = *impl_;
  cudaStream_t s = p.stream.get();
  const std::size_t per_frame = p.V * std::size_t(p.batched.channels);
  for (int first = 0; first < frames; first += p.max_batch) {
    const int count = std::min(p.max_batch, frames - first);
    p.measurements.upload(measurements + std::size_t(first) * p.S, std::size_t(count) * p.S, s);
    p.batched.normalised(p.measurements.data(), p.batched.input.data(), count, s);
    NFMIMO_CUDA_CHECK(cudaMemcpyAsync(input + std::size_t(first) * per_frame, p.batched.input.data(),
                                      std::size_t(count) * per_frame * sizeof(float), cudaMemcpyDeviceToHost,
                                      s));
    p.stream.synchronize();
  }
}

void GpuLearnedPipeline::run_live(const cfloat* measurement, float* volume) {
  Impl& p = *impl_;
  Impl::Live& l = p.live_path();
  cudaStream_t s = l.stream.get();
  std::memcpy(l.host_in.data(), measurement, p.S * sizeof(cfloat));
  l.measurement.upload(l.host_in.data(), p.S, s);
  p.replay(l, s);
  l.volume.download(l.host_out.data(), p.V, s);
  l.stream.synchronize();
  std::memcpy(volume, l.host_out.data(), p.V * sizeof(float));
}

void GpuLearnedPipeline::replay_live(cudaStream_t stream) {
  Impl& p = *impl_;
  p.replay(p.live_path(), stream);
}

bool GpuLearnedPipeline::live_graph() const { return impl_->live && impl_->live->exec; }

std::string GpuLearnedPipeline::description() const {
  const Impl& p = *impl_;
  std::string live = !p.live        ? ""
                     : p.live->exec ? "; live: CUDA graph"
                                    : "; live: no CUDA graph (" + p.live->graph_problem + ")";
  const std::string dense =
      p.dense ? fmt::format(" (for the scale) + dense layer {} x {} (cuBLAS cgemm)", p.dense->V, p.dense->M)
              : "";
  return fmt::format("adjoint ({}){} + network {}{}", p.mode == ImagingMode::Exact ? "exact" : "fast", dense,
                     p.batched.net.description(), live);
}

GpuNetwork& GpuLearnedPipeline::network() { return impl_->batched.net; }

}  // namespace nfmimo::nn

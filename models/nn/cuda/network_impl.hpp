// Private to models/nn/cuda/: the cuDNN backend's helpers, per-batch plans and state, shared by network.cpp
// (graph analysis, parameters, the public calls), plans.cpp (buffers, descriptors, algorithm choice),
// forward.cpp and backward.cpp (the compiled step lists). Compiled by the host compiler with the CUDA
// headers.
#pragma once

#include "models/nn/cuda/network.hpp"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "kernels/cuda_check.hpp"
#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "models/nn/cuda/algorithm_choice.hpp"
#include "models/nn/cuda/kernels.hpp"
#include "models/nn/cuda/network_internals.hpp"
#include "models/nn/cuda/thin_conv.hpp"
#include "models/nn/lowering.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {
namespace cuda_detail {

using gpu::Act;
using gpu::DType;

[[noreturn]] inline void throw_cudnn(cudnnStatus_t s, const char* call, const char* file, int line) {
  const std::string what =
      fmt::format("cuDNN error {} ({}) in {} at {}:{}", cudnnGetErrorString(s), int(s), call, file, line);
  if (s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    throw OutOfMemoryError("the GPU ran out of memory (" + what + "); use a smaller --batch", call, int(s));
  throw DeviceError(what, call, int(s));
}

#define NFMIMO_CUDNN_CHECK(expr)                                                                      \
  do {                                                                                                \
    const cudnnStatus_t nfmimo_cudnn_ = (expr);                                                       \
    if (nfmimo_cudnn_ != CUDNN_STATUS_SUCCESS) throw_cudnn(nfmimo_cudnn_, #expr, __FILE__, __LINE__); \
  } while (0)

inline DType dtype_of(Precision p) {
  return p == Precision::Fp16 ? DType::F16 : p == Precision::Bf16 ? DType::BF16 : DType::F32;
}

inline cudnnDataType_t cudnn_type(DType t) {
  return t == DType::F16 ? CUDNN_DATA_HALF : t == DType::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

constexpr std::size_t kAlign = 64;  // elements: every parameter tensor starts at a 256-byte boundary (float)
inline std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

// RAII for the cuDNN objects.
template <class T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class CudnnObject {
 public:
  CudnnObject() { NFMIMO_CUDNN_CHECK(Create(&d_)); }
  ~CudnnObject() {
    if (d_) Destroy(d_);
  }
  CudnnObject(const CudnnObject&) = delete;
  CudnnObject& operator=(const CudnnObject&) = delete;
  T get() const { return d_; }

 private:
  T d_{};
};
using TensorDesc =
    CudnnObject<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc =
    CudnnObject<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = CudnnObject<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                             cudnnDestroyConvolutionDescriptor>;
using ActDesc = CudnnObject<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor,
                            cudnnDestroyActivationDescriptor>;

class CudnnHandle {
 public:
  CudnnHandle() { NFMIMO_CUDNN_CHECK(cudnnCreate(&h_)); }
  ~CudnnHandle() {
    if (h_) cudnnDestroy(h_);
  }
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;
  cudnnHandle_t get() const { return h_; }

 private:
  cudnnHandle_t h_ = nullptr;
};

// Channels-last strides for the logical dims [n, c, x, y, z]. cuDNN takes int dims: a tensor of 2^31 elements
// or more is refused with advice.
inline void set_tensor(const TensorDesc& d, DType t, const Shape& s) {
  require(
      s.elements() < (std::size_t(1) << 31),
      fmt::format("a network activation of shape {} is too large for one cuDNN call; use a smaller --batch",
                  to_string(s)));
  const int dims[5] = {s.n, s.c, s.x, s.y, s.z};
  const int strides[5] = {int(s.per_sample()), 1, s.y * s.z * s.c, s.z * s.c, s.c};
  NFMIMO_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d.get(), cudnn_type(t), 5, dims, strides));
}

// A per-channel vector [1, c, 1, 1, 1] (biases of the fused call).
inline void set_bias(const TensorDesc& d, cudnnDataType_t type, int c) {
  const int dims[5] = {1, c, 1, 1, 1};
  const int strides[5] = {c, 1, c, c, c};
  NFMIMO_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d.get(), type, 5, dims, strides));
}

inline void set_filter(const FilterDesc& d, DType t, int k, int c, Triple kernel) {
  const int dims[5] = {k, c, kernel[0], kernel[1], kernel[2]};
  NFMIMO_CUDNN_CHECK(cudnnSetFilterNdDescriptor(d.get(), cudnn_type(t), CUDNN_TENSOR_NHWC, 5, dims));
}

inline void set_conv(const ConvDesc& d, Triple pad, Triple stride, cudnnMathType_t math) {
  const int pads[3] = {pad[0], pad[1], pad[2]}, strides[3] = {stride[0], stride[1], stride[2]},
            dilations[3] = {1, 1, 1};
  NFMIMO_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(d.get(), 3, pads, strides, dilations,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  NFMIMO_CUDNN_CHECK(cudnnSetConvolutionMathType(d.get(), math));
}

// ---- algorithm choice, cached per shape for the process -----------------------------------------
struct AlgoChoice {
  int algo = -1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  std::size_t workspace = 0;
  float ms = 0;
};

inline std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
inline std::map<std::string, AlgoChoice>& algo_cache() {
  static std::map<std::string, AlgoChoice> cache;
  return cache;
}
// The fused conv+bias+ReLU decision per shape: whether, with which algorithm and workspace, and whether the
// bias had to be float32.
struct FusedChoice {
  bool fused = false, bias_float = false;
  int algo = -1;
  std::size_t workspace = 0;
};
inline std::map<std::string, FusedChoice>& fused_cache() {
  static std::map<std::string, FusedChoice> cache;
  return cache;
}
inline std::atomic<ConvFusion>& fusion_policy() {
  static std::atomic<ConvFusion> policy{ConvFusion::Measure};
  return policy;
}
inline std::atomic<ThinConvolution>& thin_policy() {
  static std::atomic<ThinConvolution> policy{ThinConvolution::Direct};
  return policy;
}

// The fastest measured algorithm allowed in the requested precision (models/nn/cuda/algorithm_choice.hpp:
// fp32 takes FMA math only, or fails with the reason).
template <class Perf>
AlgoChoice pick(const Perf* perf, int count, Precision precision, const std::string& what) {
  std::vector<AlgorithmCandidate> candidates;
  for (int i = 0; i < count; ++i)
    candidates.push_back({int(perf[i].algo), perf[i].status == CUDNN_STATUS_SUCCESS,
                          perf[i].mathType == CUDNN_FMA_MATH, perf[i].memory, perf[i].time});
  const std::size_t i = choose_algorithm(candidates, precision, what);
  return {int(perf[i].algo), perf[i].mathType, perf[i].memory, perf[i].time};
}

// ---- parameters in the internal layouts ---------------------------------------------------------
enum class Layout { Vector, Filter, Dense };

struct Slot {
  std::string name;
  std::vector<int> shape;  // logical (PyTorch) shape
  std::size_t offset = 0, count = 0;
  Layout layout = Layout::Vector;
  int dense_channels = 0;  // Dense: input channels (features are c * spatial in the logical order)
};

// Filters [k, c, kx, ky, kz] <-> [k, kx, ky, kz, c] (transposed convolutions: k = c_in, c = c_out, the same
// permutation). Dense [o, c * S] (c-major) <-> [o, S * c] (channels-last).
inline void to_internal_layout(const Slot& s, const float* logical, float* internal) {
  if (s.layout == Layout::Vector) {
    std::copy(logical, logical + s.count, internal);
  } else if (s.layout == Layout::Filter) {
    const std::size_t K = std::size_t(s.shape[0]), C = std::size_t(s.shape[1]), taps = s.count / (K * C);
    for (std::size_t k = 0; k < K; ++k)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t t = 0; t < taps; ++t)
          internal[(k * taps + t) * C + c] = logical[(k * C + c) * taps + t];
  } else {
    const std::size_t O = std::size_t(s.shape[0]), F = std::size_t(s.shape[1]),
                      C = std::size_t(s.dense_channels), S = F / C;
    for (std::size_t o = 0; o < O; ++o)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t v = 0; v < S; ++v) internal[o * F + v * C + c] = logical[o * F + c * S + v];
  }
}

inline void to_logical_layout(const Slot& s, const float* internal, float* logical) {
  if (s.layout == Layout::Vector) {
    std::copy(internal, internal + s.count, logical);
  } else if (s.layout == Layout::Filter) {
    const std::size_t K = std::size_t(s.shape[0]), C = std::size_t(s.shape[1]), taps = s.count / (K * C);
    for (std::size_t k = 0; k < K; ++k)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t t = 0; t < taps; ++t)
          logical[(k * C + c) * taps + t] = internal[(k * taps + t) * C + c];
  } else {
    const std::size_t O = std::size_t(s.shape[0]), F = std::size_t(s.shape[1]),
                      C = std::size_t(s.dense_channels), S = F / C;
    for (std::size_t o = 0; o < O; ++o)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t v = 0; v < S; ++v) logical[o * F + c * S + v] = internal[o * F + v * C + c];
  }
}

inline std::size_t product(const std::vector<int>& shape) {
  std::size_t e = 1;
  for (int d : shape) e *= std::size_t(d);
  return e;
}

// ---- executed steps -----------------------------------------------------------------------------
enum class ExecKind {
  Conv,
  ConvTranspose,
  BatchNorm,
  Activation,
  MaxPool,
  Concat,
  Crop,
  ZeroPad,
  Add,
  Dense
};

struct Exec {
  ExecKind kind = ExecKind::Conv;
  int op = 0;          // the op whose attributes and parameters it uses (the convolution of a fused chain)
  int result = 0;      // the value it produces (the last op of a fused chain)
  int pre = -1;        // training, convolution with a fused activation: the convolution's own value
  int folded_bn = -1;  // inference: the batch norm folded into this convolution
  Act act = Act::None;
  bool relu = false;  // batch norm with a fused ReLU
  bool pending_bias =
      false;         // training: convolution bias left to the following batch norm (see bn_statistics)
  int bn_conv = -1;  // batch norm whose input convolution left its bias pending: that convolution
  std::vector<int> inputs;
};

// ---- plans --------------------------------------------------------------------------------------
struct ConvSite {
  int exec = 0;
  bool transposed = false;
  // One input or one output channel (models/nn/cuda/thin_conv.hpp): the direct kernels of thin_conv.cu run
  // it, with this geometry (padding included, symmetric or not); no cuDNN descriptor, algorithm or padded
  // copy is made, and `fused` stays false (the kernel applies bias and activation before its one rounding).
  bool thin = false;
  gpu::ThinConv thin_geometry{};
  // cuDNN's forward geometry: x [n, C, ...] -> y [n, K, ...] with filter [K, C, k]. A convolution's x is its
  // (padded) input and y its output; a transposed convolution's x is its (large) output, y its input.
  Shape x_shape, y_shape;
  TensorDesc xd, yd, bias_float, bias_compute;
  FilterDesc wd;
  ConvDesc fwd_desc, data_desc, filter_desc;
  ActDesc relu_desc;
  AlgoChoice fwd, data, filter;
  bool fused = false;
  cudnnTensorDescriptor_t fused_bias = nullptr;
  int fused_algo = -1;  // the fused call's own algorithm and workspace (it may refuse the plain one's)
  std::size_t fused_workspace = 0;
  // Asymmetric 'same' padding (even kernels): cuDNN pads symmetrically, so the input is copied into a padded
  // buffer first (and the input gradient comes back through it).
  bool padded = false;
  Triple pad_lo{0, 0, 0};
  DeviceBuffer<std::byte> pad_value, pad_grad;
};

struct BatchNormState {
  DeviceBuffer<float> mean, inv_std, scale,
      shift;  // training: batch statistics and coefficients; or inference
};

struct Plan {
  int n = 0;
  // Training mode: a plan of its own for predict (inference-mode outputs), so that validation between a
  // forward and its backward touches none of the activations, batch-norm coefficients or padding buffers that
  // backward reads.
  bool predict_only = false;
  std::vector<Shape> shapes;
  std::vector<int> store;  // per value: buffer index of its activation, -1 when not materialised
  std::vector<int> grad;   // per value: buffer index of its gradient (training), -1 when none
  std::vector<DeviceBuffer<std::byte>> buffers;
  std::vector<std::unique_ptr<ConvSite>> convs;                // by exec
  std::map<int, std::unique_ptr<BatchNormState>> batch_norms;  // by exec
  DeviceBuffer<std::byte> workspace;
  DeviceBuffer<float> scratch;
  std::size_t bytes = 0;
  // Execution.
  std::vector<std::function<void(cudaStream_t)>> forward, backward;
  const float* input = nullptr;
  float* output = nullptr;
  const float* grad_output = nullptr;
  float* grad_input = nullptr;

  void* value(int v) {
    return store[std::size_t(v)] < 0 ? nullptr : buffers[std::size_t(store[std::size_t(v)])].data();
  }
  void* gradient(int v) {
    return grad[std::size_t(v)] < 0 ? nullptr : buffers[std::size_t(grad[std::size_t(v)])].data();
  }
};
}  // namespace cuda_detail

// Private header: the helpers are the Impl's vocabulary.
using namespace cuda_detail;

struct GpuNetwork::Impl {
  Network net;
  Mode mode;
  Precision precision;
  DType dtype;
  Parameters params;  // the logical parameters as last set (inference mode: the source of the folding)
  CudnnHandle handle;
  std::vector<Step> steps;
  std::vector<Exec> execs;
  std::vector<Slot> slots, running_slots;
  std::map<std::string, std::size_t> slot_index, running_index;
  std::size_t weight_count = 0, count = 0, running_count = 0;
  DeviceBuffer<float> master, grads, running;
  DeviceBuffer<std::byte> compute, compute_grads;
  GpuNetworkInternals internals;
  // Plans by batch size: `plans` for forward (and backward), `predict_plans` for predict in training mode.
  // Sizes planned through plan() / plan_predict() are pinned; at most two others are kept.
  PlanCache<Plan> plans{2}, predict_plans{2};
  Plan* last = nullptr;     // the plan last used (never evicted)
  Plan* trained = nullptr;  // training mode: the plan of the last forward, which backward reads
  std::unique_ptr<DeviceStream> host_stream;  // host-memory calls
  DeviceBuffer<float> host_in, host_out;
  std::string gpu_name;
  // What parameters() and gradients() last downloaded (the Executor interface returns references).
  Parameters parameters_read;
  Gradients gradients_read;

  Impl(Network network, const Parameters& parameters, Mode m, Precision p)
      : net(std::move(network)), mode(m), precision(p), dtype(dtype_of(p)) {
    check_parameters(net, parameters, "GPU network");
    params = parameters;
    if (auto info = gpu_info(0)) gpu_name = info->name;
    host_stream = std::make_unique<DeviceStream>();
    analyse();
    layout_parameters();
    upload_parameters();
  }

  // ---- graph analysis ---------------------------------------------------------------------------
  // The shared lowering with the fusions this backend's training kernels implement (conv + activation
  // epilogue, batch norm + ReLU in one pass, a convolution's bias left to its batch norm).
  static constexpr FusionRules kFusionRules{true, true, true};

  void analyse();

  // ---- parameters -------------------------------------------------------------------------------
  void add_slot(std::vector<Slot>& list, const std::string& name, std::vector<int> shape, Layout layout,
                int dense_channels = 0);

  // Training: the network's parameters. Inference: the effective ones (folded convolution weights and biases,
  // standalone batch norms as scale and shift).
  void layout_parameters();

  const std::vector<float>& logical(const std::string& name) const { return params.at(name).values; }

  // Host values of every slot in the internal layouts, then one upload and one cast.
  void upload_parameters();

  const Slot& slot(const std::string& name) const { return slots.at(slot_index.at(name)); }
  const Slot& running_slot(const std::string& name) const { return running_slots.at(running_index.at(name)); }
  float* master_at(const std::string& name) { return master.data() + slot(name).offset; }
  float* grad_at(const std::string& name) { return grads.data() + slot(name).offset; }
  float* running_at(const std::string& name) { return running.data() + running_slot(name).offset; }
  // The compute-type view of a parameter (the master itself in float32).
  void* compute_at(const std::string& name);
  // Where cuDNN / the dense kernel write a weight gradient (compute type).
  void* weight_grad_at(const std::string& name);

  Parameters read_parameters();

  std::map<std::string, std::vector<float>> read_gradients();

  // ---- plans ------------------------------------------------------------------------------------
  // Training mode with `predict`: the separate predict plan of batch n. Planning a size that is not pinned
  // may evict another unpinned plan (never the last used one nor the one backward needs).
  Plan& plan_for(int n, bool predict = false);

  void pin(int n, bool predict);

  std::size_t value_bytes(const Plan& plan, int v) const {
    return align_up(plan.shapes[std::size_t(v)].elements() * gpu::dtype_size(dtype), 256);
  }

  // Activations from the shared lowering (inference reuses dead buffers; training keeps every one for
  // backward), then in training one buffer per gradient.
  void assign_buffers(Plan& plan);

  std::unique_ptr<Plan> build_plan(int n, bool predict_only);

  std::unique_ptr<ConvSite> plan_conv(Plan& plan, int k, void* ws, std::size_t ws_bytes);

  // Conv + bias + ReLU: cuDNN's fused call against the plain convolution followed by our epilogue kernel,
  // timed on the plan's buffers. The fused call gets its own algorithm and workspace: first the plain one's
  // algorithm, then IMPLICIT_PRECOMP_GEMM (the one cuDNN documents for a fused ReLU), each with the workspace
  // cuDNN asks for. It may also be unsupported for a shape or data type: then the plain path, unless
  // set_conv_fusion(Always) demands it, which then fails with the reason.
  void decide_fusion(Plan& plan, ConvSite& c, void* x, void* y, const std::string& shape_key);

  // ---- compiling the plan into closures ---------------------------------------------------------
  void compile(Plan& plan);

  void emit_forward(Plan& plan, std::vector<std::function<void(cudaStream_t)>>& steps, bool batch_statistics);

  void emit_forward_exec(Plan& plan, std::vector<std::function<void(cudaStream_t)>>& steps, int k,
                         bool batch_statistics);

  static Triple negate(Triple t) { return {-t[0], -t[1], -t[2]}; }

  // Backward in reverse order of the execs. Each value's gradient is written by its first contributor and
  // accumulated by the later ones (U-Net skips and the ResNet input are read twice): decided here, once.
  void emit_backward(Plan& plan);

  // ---- execution --------------------------------------------------------------------------------
  void run(Plan& plan, const std::vector<std::function<void(cudaStream_t)>>& steps, const float* in,
           float* out, cudaStream_t s);

  void run_backward(Plan& plan, const float* grad_output, float* grad_input, cudaStream_t s);

  void forward_device(const float* in, float* out, int n, cudaStream_t s, bool predict);

  void backward_device(const float* grad_output, float* grad_input, cudaStream_t s);

  void host_call(const float* input, float* output, int n, bool predict);
};

}  // namespace nfmimo::nn

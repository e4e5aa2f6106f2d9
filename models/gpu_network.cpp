// The cuDNN backend of the network engine (see gpu_network.hpp for what it does and docs/networks.md, "GPU
// backend", for the choices).
//
// Structure: the graph is first turned into a list of executed steps ("execs": a convolution with its folded
// batch norm and fused activation, a batch norm with its fused ReLU, a pooling, ...). A plan for one batch
// size then owns every buffer, every cuDNN descriptor and the chosen algorithms, and compiles the execs into
// lists of closures over raw pointers (forward, predict, backward). Executing a plan is a loop over its
// closures: no allocation, no host synchronisation, capturable in a CUDA graph.
//
// cuDNN calls are the legacy convolution API (cudnnConvolutionForward / BackwardData / BackwardFilter,
// cudnnConvolutionBiasActivationForward, cudnnFind*AlgorithmEx): deprecated in cuDNN 9 but present,
// unchanged, in every 9.x (the GPU machine has 9.14, this build machine's headers are 9.19). Tensors are
// described with explicit channels-last strides; filters with CUDNN_TENSOR_NHWC (memory [k, kx, ky, kz, c]).
#include "models/gpu_network.hpp"

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
#include "models/algorithm_choice.hpp"
#include "models/gpu_kernels.hpp"
#include "models/gpu_network_internals.hpp"
#include "models/nn/lowering.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {
namespace {

using gpu::Act;
using gpu::DType;

[[noreturn]] void throw_cudnn(cudnnStatus_t s, const char* call, const char* file, int line) {
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

DType dtype_of(Precision p) {
  return p == Precision::Fp16 ? DType::F16 : p == Precision::Bf16 ? DType::BF16 : DType::F32;
}

cudnnDataType_t cudnn_type(DType t) {
  return t == DType::F16 ? CUDNN_DATA_HALF : t == DType::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

constexpr std::size_t kAlign = 64;  // elements: every parameter tensor starts at a 256-byte boundary (float)
std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

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
void set_tensor(const TensorDesc& d, DType t, const Shape& s) {
  require(
      s.elements() < (std::size_t(1) << 31),
      fmt::format("a network activation of shape {} is too large for one cuDNN call; use a smaller --batch",
                  to_string(s)));
  const int dims[5] = {s.n, s.c, s.x, s.y, s.z};
  const int strides[5] = {int(s.per_sample()), 1, s.y * s.z * s.c, s.z * s.c, s.c};
  NFMIMO_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d.get(), cudnn_type(t), 5, dims, strides));
}

// A per-channel vector [1, c, 1, 1, 1] (biases of the fused call).
void set_bias(const TensorDesc& d, cudnnDataType_t type, int c) {
  const int dims[5] = {1, c, 1, 1, 1};
  const int strides[5] = {c, 1, c, c, c};
  NFMIMO_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d.get(), type, 5, dims, strides));
}

void set_filter(const FilterDesc& d, DType t, int k, int c, Triple kernel) {
  const int dims[5] = {k, c, kernel[0], kernel[1], kernel[2]};
  NFMIMO_CUDNN_CHECK(cudnnSetFilterNdDescriptor(d.get(), cudnn_type(t), CUDNN_TENSOR_NHWC, 5, dims));
}

void set_conv(const ConvDesc& d, Triple pad, Triple stride, cudnnMathType_t math) {
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

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, AlgoChoice>& algo_cache() {
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
std::map<std::string, FusedChoice>& fused_cache() {
  static std::map<std::string, FusedChoice> cache;
  return cache;
}
std::atomic<ConvFusion>& fusion_policy() {
  static std::atomic<ConvFusion> policy{ConvFusion::Measure};
  return policy;
}

// The fastest measured algorithm allowed in the requested precision (models/algorithm_choice.hpp: fp32 takes
// FMA math only, or fails with the reason).
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
void to_internal_layout(const Slot& s, const float* logical, float* internal) {
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

void to_logical_layout(const Slot& s, const float* internal, float* logical) {
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

std::size_t product(const std::vector<int>& shape) {
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

}  // namespace

// ---- plans --------------------------------------------------------------------------------------
struct ConvSite {
  int exec = 0;
  bool transposed = false;
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
  std::unique_ptr<CudaStream> host_stream;  // host-memory calls
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
    host_stream = std::make_unique<CudaStream>();
    analyse();
    layout_parameters();
    upload_parameters();
  }

  // ---- graph analysis ---------------------------------------------------------------------------
  // The shared lowering with the fusions this backend's training kernels implement (conv + activation
  // epilogue, batch norm + ReLU in one pass, a convolution's bias left to its batch norm).
  static constexpr FusionRules kFusionRules{true, true, true};

  void analyse() {
    steps = lower(net, mode, kFusionRules);
    const auto act_of = [](OpKind k) {
      return k == OpKind::ReLU ? Act::ReLU : k == OpKind::Sigmoid ? Act::Sigmoid : Act::None;
    };
    for (const Step& step : steps) {
      Exec e;
      e.op = step.op, e.result = step.result, e.inputs = step.inputs;
      e.pre = step.pre_activation, e.folded_bn = step.folded_batch_norm, e.act = act_of(step.activation);
      e.relu = step.batch_norm_relu, e.pending_bias = step.pending_bias, e.bn_conv = step.bias_from_conv;
      switch (step.kind) {
        case OpKind::Conv:
          e.kind = ExecKind::Conv;
          break;
        case OpKind::ConvTranspose:
          e.kind = ExecKind::ConvTranspose;
          break;
        case OpKind::BatchNorm:
          e.kind = ExecKind::BatchNorm;
          break;
        case OpKind::ReLU:
        case OpKind::Sigmoid:
          e.kind = ExecKind::Activation, e.act = act_of(step.kind);
          break;
        case OpKind::MaxPool:
          e.kind = ExecKind::MaxPool;
          break;
        case OpKind::Concat:
          e.kind = ExecKind::Concat;
          break;
        case OpKind::Crop:
          e.kind = ExecKind::Crop;
          break;
        case OpKind::ZeroPad:
          e.kind = ExecKind::ZeroPad;
          break;
        case OpKind::Add:
          e.kind = ExecKind::Add;
          break;
        case OpKind::Dense:
          e.kind = ExecKind::Dense;
          break;
        case OpKind::Input:
          continue;
      }
      execs.push_back(std::move(e));
    }
  }

  // ---- parameters -------------------------------------------------------------------------------
  void add_slot(std::vector<Slot>& list, const std::string& name, std::vector<int> shape, Layout layout,
                int dense_channels = 0) {
    Slot s;
    s.name = name, s.shape = std::move(shape), s.layout = layout, s.dense_channels = dense_channels;
    s.count = product(s.shape);
    list.push_back(std::move(s));
  }

  // Training: the network's parameters. Inference: the effective ones (folded convolution weights and biases,
  // standalone batch norms as scale and shift).
  void layout_parameters() {
    const auto& ops = net.ops();
    std::vector<Slot> weights, vectors;
    const auto in_shape = [&](const Op& op) { return net.shape(op.inputs[0], 1); };
    if (mode == Mode::Training) {
      for (const auto& spec : net.parameter_specs()) {
        const std::string op_name = spec.name.substr(0, spec.name.rfind('.'));
        const Op* op = nullptr;
        for (const Op& o : ops)
          if (o.name == op_name) op = &o;
        const bool is_weight = spec.name.ends_with(".weight") && op && op->kind != OpKind::BatchNorm;
        if (!spec.trainable)
          add_slot(running_slots, spec.name, spec.shape, Layout::Vector);
        else if (is_weight)
          add_slot(weights, spec.name, spec.shape, op->kind == OpKind::Dense ? Layout::Dense : Layout::Filter,
                   op->kind == OpKind::Dense ? in_shape(*op).c : 0);
        else
          add_slot(vectors, spec.name, spec.shape, Layout::Vector);
      }
    } else {
      for (const Exec& e : execs) {
        const Op& op = ops[std::size_t(e.op)];
        const Shape in = in_shape(op);
        switch (e.kind) {
          case ExecKind::Conv:
            add_slot(weights, op.name + ".weight",
                     {op.channels, in.c, op.kernel[0], op.kernel[1], op.kernel[2]}, Layout::Filter);
            add_slot(vectors, op.name + ".bias", {op.channels}, Layout::Vector);  // effective (folded)
            break;
          case ExecKind::ConvTranspose:
            add_slot(weights, op.name + ".weight",
                     {in.c, op.channels, op.kernel[0], op.kernel[1], op.kernel[2]}, Layout::Filter);
            if (op.bias) add_slot(vectors, op.name + ".bias", {op.channels}, Layout::Vector);
            break;
          case ExecKind::Dense:
            add_slot(weights, op.name + ".weight", {op.channels, int(in.per_sample())}, Layout::Dense, in.c);
            if (op.bias) add_slot(vectors, op.name + ".bias", {op.channels}, Layout::Vector);
            break;
          case ExecKind::BatchNorm:
            add_slot(vectors, op.name + ".scale", {in.c}, Layout::Vector);
            add_slot(vectors, op.name + ".shift", {in.c}, Layout::Vector);
            break;
          default:
            break;
        }
      }
    }
    std::size_t at = 0;
    for (auto& s : weights) s.offset = at, at = align_up(at + s.count, kAlign);
    weight_count = at;
    for (auto& s : vectors) s.offset = at, at = align_up(at + s.count, kAlign);
    count = std::max<std::size_t>(at, kAlign);
    slots = std::move(weights);
    slots.insert(slots.end(), vectors.begin(), vectors.end());
    for (std::size_t i = 0; i < slots.size(); ++i) slot_index[slots[i].name] = i;
    std::size_t r = 0;
    for (auto& s : running_slots) s.offset = r, r = align_up(r + s.count, kAlign);
    running_count = std::max<std::size_t>(r, kAlign);
    for (std::size_t i = 0; i < running_slots.size(); ++i) running_index[running_slots[i].name] = i;

    master.allocate(count);
    running.allocate(running_count);
    if (dtype != DType::F32) compute.allocate(count * gpu::dtype_size(dtype));
    if (mode == Mode::Training) {
      grads.allocate(count);
      if (dtype != DType::F32)
        compute_grads.allocate(std::max<std::size_t>(weight_count, 1) * gpu::dtype_size(dtype));
    }
    cudaStream_t s = host_stream->get();
    master.zero(s), running.zero(s), grads.zero(s), compute_grads.zero(s);
    internals.dtype = dtype;
    internals.master = master.data(), internals.grads = grads.data();
    internals.count = count, internals.weight_count = weight_count;
    internals.compute = dtype == DType::F32 ? nullptr : compute.data();
    internals.compute_grads = dtype == DType::F32 ? nullptr : compute_grads.data();
    internals.running = running.data(), internals.running_count = running_count;
    internals.download = [this](const float* device) {
      NFMIMO_CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<float> host(count);
      NFMIMO_CUDA_CHECK(cudaMemcpy(host.data(), device, count * sizeof(float), cudaMemcpyDeviceToHost));
      std::map<std::string, std::vector<float>> out;
      for (const auto& sl : slots) {
        std::vector<float> v(sl.count);
        to_logical_layout(sl, host.data() + sl.offset, v.data());
        out[sl.name] = std::move(v);
      }
      return out;
    };
    internals.upload = [this](const std::map<std::string, std::vector<float>>& values, float* device) {
      std::vector<float> host(count, 0.0f);
      for (const auto& sl : slots) {
        const auto it = values.find(sl.name);
        if (it == values.end()) continue;  // absent: zeros
        require(it->second.size() == sl.count,
                fmt::format("GPU network: '{}' holds {} values, the parameter has {}", sl.name,
                            it->second.size(), sl.count));
        to_internal_layout(sl, it->second.data(), host.data() + sl.offset);
      }
      NFMIMO_CUDA_CHECK(cudaDeviceSynchronize());
      NFMIMO_CUDA_CHECK(cudaMemcpy(device, host.data(), count * sizeof(float), cudaMemcpyHostToDevice));
    };
  }

  const std::vector<float>& logical(const std::string& name) const { return params.at(name).values; }

  // Host values of every slot in the internal layouts, then one upload and one cast.
  void upload_parameters() {
    std::vector<float> host(count, 0.0f), host_running(running_count, 0.0f);
    const auto& ops = net.ops();
    if (mode == Mode::Training) {
      for (const auto& s : slots) to_internal_layout(s, logical(s.name).data(), host.data() + s.offset);
      for (const auto& s : running_slots)
        to_internal_layout(s, logical(s.name).data(), host_running.data() + s.offset);
    } else {
      const double eps = net.batch_norm_settings.epsilon;
      for (const Exec& e : execs) {
        const Op& op = ops[std::size_t(e.op)];
        if (e.kind == ExecKind::Conv) {
          // A folded batch norm: w' = w gamma / sqrt(var + eps), b' = (b - mean) gamma / sqrt(var + eps) +
          // beta.
          std::vector<float> w = logical(op.name + ".weight");
          std::vector<float> b =
              op.bias ? logical(op.name + ".bias") : std::vector<float>(std::size_t(op.channels), 0.f);
          if (e.folded_bn >= 0) {
            const Op& bn = ops[std::size_t(e.folded_bn)];
            const auto &gamma = logical(bn.name + ".weight"), &beta = logical(bn.name + ".bias");
            const auto &mean = logical(bn.name + ".running_mean"), &var = logical(bn.name + ".running_var");
            const std::size_t per_out = w.size() / std::size_t(op.channels);
            for (std::size_t o = 0; o < std::size_t(op.channels); ++o) {
              const double scale = gamma[o] / std::sqrt(double(var[o]) + eps);
              for (std::size_t k = 0; k < per_out; ++k)
                w[o * per_out + k] = float(w[o * per_out + k] * scale);
              b[o] = float((double(b[o]) - mean[o]) * scale + beta[o]);
            }
          }
          const Slot& ws = slot(op.name + ".weight");
          to_internal_layout(ws, w.data(), host.data() + ws.offset);
          std::copy(b.begin(), b.end(), host.begin() + std::ptrdiff_t(slot(op.name + ".bias").offset));
        } else if (e.kind == ExecKind::BatchNorm) {
          const auto &gamma = logical(op.name + ".weight"), &beta = logical(op.name + ".bias");
          const auto &mean = logical(op.name + ".running_mean"), &var = logical(op.name + ".running_var");
          float* scale = host.data() + slot(op.name + ".scale").offset;
          float* shift = host.data() + slot(op.name + ".shift").offset;
          for (std::size_t c = 0; c < gamma.size(); ++c) {
            const double s = gamma[c] / std::sqrt(double(var[c]) + eps);
            scale[c] = float(s), shift[c] = float(beta[c] - mean[c] * s);
          }
        } else if (e.kind == ExecKind::ConvTranspose || e.kind == ExecKind::Dense) {
          const Slot& ws = slot(op.name + ".weight");
          to_internal_layout(ws, logical(ws.name).data(), host.data() + ws.offset);
          if (op.bias) {
            const auto& b = logical(op.name + ".bias");
            std::copy(b.begin(), b.end(), host.begin() + std::ptrdiff_t(slot(op.name + ".bias").offset));
          }
        }
      }
    }
    cudaStream_t s = host_stream->get();
    master.upload(host.data(), count, s);
    running.upload(host_running.data(), running_count, s);
    if (dtype != DType::F32) gpu::cast_from_float(dtype, master.data(), compute.data(), count, s);
    host_stream->synchronize();
  }

  const Slot& slot(const std::string& name) const { return slots.at(slot_index.at(name)); }
  const Slot& running_slot(const std::string& name) const { return running_slots.at(running_index.at(name)); }
  float* master_at(const std::string& name) { return master.data() + slot(name).offset; }
  float* grad_at(const std::string& name) { return grads.data() + slot(name).offset; }
  float* running_at(const std::string& name) { return running.data() + running_slot(name).offset; }
  // The compute-type view of a parameter (the master itself in float32).
  void* compute_at(const std::string& name) {
    const std::size_t off = slot(name).offset;
    return dtype == DType::F32 ? static_cast<void*>(master.data() + off)
                               : static_cast<void*>(compute.data() + off * gpu::dtype_size(dtype));
  }
  // Where cuDNN / the dense kernel write a weight gradient (compute type).
  void* weight_grad_at(const std::string& name) {
    const std::size_t off = slot(name).offset;
    return dtype == DType::F32 ? static_cast<void*>(grads.data() + off)
                               : static_cast<void*>(compute_grads.data() + off * gpu::dtype_size(dtype));
  }

  Parameters read_parameters() {
    if (mode == Mode::Inference) return params;
    std::vector<float> host(count), host_running(running_count);
    cudaStream_t s = host_stream->get();
    NFMIMO_CUDA_CHECK(cudaStreamSynchronize(s));
    NFMIMO_CUDA_CHECK(cudaDeviceSynchronize());  // work queued by callers on their own streams
    master.download(host.data(), count, s);
    running.download(host_running.data(), running_count, s);
    host_stream->synchronize();
    Parameters out = params;
    for (const auto& sl : slots)
      to_logical_layout(sl, host.data() + sl.offset, out.at(sl.name).values.data());
    for (const auto& sl : running_slots)
      to_logical_layout(sl, host_running.data() + sl.offset, out.at(sl.name).values.data());
    return out;
  }

  std::map<std::string, std::vector<float>> read_gradients() {
    require(mode == Mode::Training, "GPU network: gradients exist in training mode only");
    NFMIMO_CUDA_CHECK(cudaDeviceSynchronize());
    cudaStream_t s = host_stream->get();
    std::vector<float> host(count);
    grads.download(host.data(), count, s);
    std::vector<float> weights(weight_count);
    if (dtype != DType::F32 && weight_count > 0) {
      DeviceBuffer<float> tmp(weight_count);
      gpu::cast_to_float(dtype, compute_grads.data(), tmp.data(), weight_count, s);
      tmp.download(weights.data(), weight_count, s);
      host_stream->synchronize();
      std::copy(weights.begin(), weights.end(), host.begin());
    }
    host_stream->synchronize();
    std::map<std::string, std::vector<float>> out;
    for (const auto& sl : slots) {
      std::vector<float> g(sl.count);
      to_logical_layout(sl, host.data() + sl.offset, g.data());
      out[sl.name] = std::move(g);
    }
    return out;
  }

  // ---- plans ------------------------------------------------------------------------------------
  // Training mode with `predict`: the separate predict plan of batch n. Planning a size that is not pinned
  // may evict another unpinned plan (never the last used one nor the one backward needs).
  Plan& plan_for(int n, bool predict = false) {
    require(n > 0, "GPU network: the batch must be positive");
    const bool separate = predict && mode == Mode::Training;
    last = &(separate ? predict_plans : plans)
                .get(n, [&](int size) { return build_plan(size, separate); }, {last, trained});
    return *last;
  }

  void pin(int n, bool predict) {
    require(n > 0, "GPU network: the batch must be positive");
    (predict && mode == Mode::Training ? predict_plans : plans).pin(n);
    plan_for(n, predict);
  }

  std::size_t value_bytes(const Plan& plan, int v) const {
    return align_up(plan.shapes[std::size_t(v)].elements() * gpu::dtype_size(dtype), 256);
  }

  // Activations from the shared lowering (inference reuses dead buffers; training keeps every one for
  // backward), then in training one buffer per gradient.
  void assign_buffers(Plan& plan) {
    const BufferAssignment a = nn::assign_buffers(
        net, steps, [&](int v) { return value_bytes(plan, v); }, mode == Mode::Inference, false);
    plan.store = a.buffer_of;
    std::vector<std::size_t> sizes = a.sizes;
    plan.grad.assign(net.ops().size(), -1);
    const auto new_buffer = [&](int v) {
      sizes.push_back(value_bytes(plan, v));
      return int(sizes.size()) - 1;
    };
    if (mode == Mode::Training && !plan.predict_only) {
      plan.grad[0] = new_buffer(0);
      for (const Exec& e : execs) {
        plan.grad[std::size_t(e.result)] = new_buffer(e.result);
        if (e.pre >= 0) plan.grad[std::size_t(e.pre)] = new_buffer(e.pre);
      }
    }
    plan.buffers.resize(sizes.size());
    for (std::size_t b = 0; b < sizes.size(); ++b) {
      plan.buffers[b].allocate(sizes[b]);
      plan.bytes += sizes[b];
    }
  }

  std::unique_ptr<Plan> build_plan(int n, bool predict_only) {
    const auto& ops = net.ops();
    auto plan = std::make_unique<Plan>();
    plan->n = n;
    plan->predict_only = predict_only;
    for (std::size_t i = 0; i < ops.size(); ++i) plan->shapes.push_back(net.shape(int(i), n));
    assign_buffers(*plan);
    cudaStream_t s = host_stream->get();
    for (auto& b : plan->buffers) NFMIMO_CUDA_CHECK(cudaMemsetAsync(b.data(), 0, b.bytes(), s));

    // Reduction scratch and batch-norm state.
    std::size_t scratch = std::max(gpu::loss_scratch(), gpu::grad_scratch());
    plan->convs.resize(execs.size());
    for (std::size_t k = 0; k < execs.size(); ++k) {
      const Exec& e = execs[k];
      const Shape out = plan->shapes[std::size_t(e.result)];
      if (e.kind == ExecKind::BatchNorm) {
        const int c = plan->shapes[std::size_t(e.inputs[0])].c;
        auto st = std::make_unique<BatchNormState>();
        st->mean.allocate(std::size_t(c)), st->inv_std.allocate(std::size_t(c));
        st->scale.allocate(std::size_t(c)), st->shift.allocate(std::size_t(c));
        plan->batch_norms[int(k)] = std::move(st);
        scratch = std::max(scratch, gpu::bn_scratch(c));
      }
      if (e.kind == ExecKind::Conv || e.kind == ExecKind::ConvTranspose)
        scratch = std::max(scratch, gpu::channel_sum_scratch(out.c));
    }
    plan->scratch.allocate(scratch);
    plan->bytes += scratch * sizeof(float);

    // Convolutions: descriptors, then algorithms measured on the plan's own buffers.
    DeviceBuffer<std::byte> search_workspace;
    std::size_t search_bytes = 0;
    {
      std::size_t free = 0, total = 0;
      NFMIMO_CUDA_CHECK(cudaMemGetInfo(&free, &total));
      search_bytes = std::min<std::size_t>(std::size_t(1) << 30, free / 4);
      search_workspace.allocate(search_bytes);
    }
    std::size_t workspace = 0;
    for (std::size_t k = 0; k < execs.size(); ++k) {
      const Exec& e = execs[k];
      if (e.kind != ExecKind::Conv && e.kind != ExecKind::ConvTranspose) continue;
      plan->convs[k] = plan_conv(*plan, int(k), search_workspace.data(), search_bytes);
      const ConvSite& c = *plan->convs[k];
      workspace =
          std::max({workspace, c.fwd.workspace, c.data.workspace, c.filter.workspace, c.fused_workspace});
      if (c.padded) plan->bytes += c.pad_value.bytes() + c.pad_grad.bytes();
    }
    search_workspace.release();
    plan->workspace.allocate(std::max<std::size_t>(workspace, 256));
    plan->bytes += plan->workspace.bytes();

    compile(*plan);
    // A warm-up run outside any capture: cuDNN's lazily initialised kernels load now. Training mode restores
    // the running statistics it moved.
    DeviceBuffer<float> saved(running_count);
    NFMIMO_CUDA_CHECK(cudaMemcpyAsync(saved.data(), running.data(), running_count * sizeof(float),
                                      cudaMemcpyDeviceToDevice, s));
    DeviceBuffer<float> in(plan->shapes[0].elements()),
        out(plan->shapes[std::size_t(net.output())].elements());
    in.zero(s);
    out.zero(s);
    run(*plan, plan->forward, in.data(), out.data(), s);
    if (mode == Mode::Training && !predict_only) run_backward(*plan, out.data(), nullptr, s);
    NFMIMO_CUDA_CHECK(cudaMemcpyAsync(running.data(), saved.data(), running_count * sizeof(float),
                                      cudaMemcpyDeviceToDevice, s));
    host_stream->synchronize();
    return plan;
  }

  std::unique_ptr<ConvSite> plan_conv(Plan& plan, int k, void* ws, std::size_t ws_bytes) {
    const Exec& e = execs[std::size_t(k)];
    const Op& op = net.ops()[std::size_t(e.op)];
    auto c = std::make_unique<ConvSite>();
    c->exec = k;
    c->transposed = e.kind == ExecKind::ConvTranspose;
    const int in_value = e.inputs[0], out_value = e.pre >= 0 ? e.pre : e.result;
    const Shape in = plan.shapes[std::size_t(in_value)], out = plan.shapes[std::size_t(out_value)];
    Triple pad{0, 0, 0};
    int K = 0, C = 0;
    if (c->transposed) {
      c->x_shape = out, c->y_shape = in, K = in.c, C = out.c;
    } else {
      c->y_shape = out, K = out.c, C = in.c;
      c->x_shape = in;
      c->padded = op.pad_lo != op.pad_hi;
      if (c->padded) {
        c->pad_lo = op.pad_lo;
        c->x_shape.x += op.pad_lo[0] + op.pad_hi[0], c->x_shape.y += op.pad_lo[1] + op.pad_hi[1];
        c->x_shape.z += op.pad_lo[2] + op.pad_hi[2];
        const std::size_t bytes = align_up(c->x_shape.elements() * gpu::dtype_size(dtype), 256);
        c->pad_value.allocate(bytes);
        if (mode == Mode::Training && !plan.predict_only) c->pad_grad.allocate(bytes);
      } else {
        pad = op.pad_lo;
      }
    }
    set_tensor(c->xd, dtype, c->x_shape);
    set_tensor(c->yd, dtype, c->y_shape);
    set_filter(c->wd, dtype, K, C, op.kernel);
    const cudnnMathType_t math = precision == Precision::Fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    set_conv(c->fwd_desc, pad, op.stride, math);
    set_conv(c->data_desc, pad, op.stride, math);
    set_conv(c->filter_desc, pad, op.stride, math);

    void* x = c->padded ? c->pad_value.data() : plan.value(c->transposed ? e.result : in_value);
    void* y = c->transposed ? plan.value(in_value) : plan.value(e.result);
    void* w = compute_at(op.name + ".weight");
    cudnnHandle_t h = handle.get();
    NFMIMO_CUDNN_CHECK(cudnnSetStream(h, host_stream->get()));
    const std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}", to_string(c->x_shape), to_string(c->y_shape),
                                        op.kernel[0] * 10000 + op.kernel[1] * 100 + op.kernel[2],
                                        op.stride[0] * 10000 + op.stride[1] * 100 + op.stride[2],
                                        pad[0] * 10000 + pad[1] * 100 + pad[2], int(precision), ws_bytes);
    const auto cached = [&](const std::string& dir, const std::function<AlgoChoice()>& search) {
      {
        std::lock_guard<std::mutex> lock(cache_mutex());
        if (auto it = algo_cache().find(dir + key); it != algo_cache().end()) return it->second;
      }
      const AlgoChoice a = search();
      std::lock_guard<std::mutex> lock(cache_mutex());
      return algo_cache()[dir + key] = a;
    };
    const std::string what =
        fmt::format("'{}' ({} -> {})", op.name, to_string(c->x_shape), to_string(c->y_shape));
    const auto find_fwd = [&] {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int got = 0;
      NFMIMO_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
          h, c->xd.get(), x, c->wd.get(), w, c->fwd_desc.get(), c->yd.get(), y,
          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf, ws, ws_bytes));
      return pick(perf, got, precision, "the forward convolution " + what);
    };
    const auto find_data = [&] {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      int got = 0;
      NFMIMO_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
          h, c->wd.get(), w, c->yd.get(), y, c->data_desc.get(), c->xd.get(), x,
          CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf, ws, ws_bytes));
      return pick(perf, got, precision, "the backward-data convolution " + what);
    };
    const auto find_filter = [&] {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      int got = 0;
      void* dw = weight_grad_at(op.name + ".weight");
      NFMIMO_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
          h, c->xd.get(), x, c->yd.get(), y, c->filter_desc.get(), c->wd.get(), dw,
          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf, ws, ws_bytes));
      return pick(perf, got, precision, "the backward-filter convolution " + what);
    };
    // A convolution runs forward; a transposed convolution runs backward-data forward and forward backward.
    // A predict plan searches forward algorithms only: the backward-filter search writes the shared weight
    // gradients, which a backward still to come reads.
    const bool training = mode == Mode::Training && !plan.predict_only;
    if (!c->transposed || training) c->fwd = cached("fwd|", find_fwd);
    if (c->transposed || training) c->data = cached("data|", find_data);
    if (training) c->filter = cached("filter|", find_filter);
    if (c->fwd.algo >= 0) NFMIMO_CUDNN_CHECK(cudnnSetConvolutionMathType(c->fwd_desc.get(), c->fwd.math));
    if (c->data.algo >= 0) NFMIMO_CUDNN_CHECK(cudnnSetConvolutionMathType(c->data_desc.get(), c->data.math));
    if (c->filter.algo >= 0)
      NFMIMO_CUDNN_CHECK(cudnnSetConvolutionMathType(c->filter_desc.get(), c->filter.math));

    set_bias(c->bias_float, CUDNN_DATA_FLOAT, K);
    set_bias(c->bias_compute, cudnn_type(dtype), K);
    if (mode == Mode::Inference && !c->transposed && e.act == Act::ReLU && !c->padded)
      decide_fusion(plan, *c, x, y, key);
    return c;
  }

  // Conv + bias + ReLU: cuDNN's fused call against the plain convolution followed by our epilogue kernel,
  // timed on the plan's buffers. The fused call gets its own algorithm and workspace: first the plain one's
  // algorithm, then IMPLICIT_PRECOMP_GEMM (the one cuDNN documents for a fused ReLU), each with the workspace
  // cuDNN asks for. It may also be unsupported for a shape or data type: then the plain path, unless
  // set_conv_fusion(Always) demands it, which then fails with the reason.
  void decide_fusion(Plan& plan, ConvSite& c, void* x, void* y, const std::string& shape_key) {
    (void)plan;
    const Exec& e = execs[std::size_t(c.exec)];
    const Op& op = net.ops()[std::size_t(e.op)];
    const ConvFusion policy = fusion_policy().load();
    const std::string key = fmt::format("{}|{}", int(policy), shape_key);
    NFMIMO_CUDNN_CHECK(
        cudnnSetActivationDescriptor(c.relu_desc.get(), CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    const auto apply = [&](const FusedChoice& f) {
      c.fused = f.fused, c.fused_algo = f.algo, c.fused_workspace = f.fused ? f.workspace : 0;
      c.fused_bias = f.bias_float ? c.bias_float.get() : c.bias_compute.get();
    };
    if (policy == ConvFusion::Never) return apply({});
    {
      std::lock_guard<std::mutex> lock(cache_mutex());
      if (auto it = fused_cache().find(key); it != fused_cache().end()) return apply(it->second);
    }
    cudaStream_t s = host_stream->get();
    cudnnHandle_t h = handle.get();
    const void* w = compute_at(op.name + ".weight");
    const float one = 1.f, zero = 0.f;
    const std::size_t rows = c.y_shape.n * c.y_shape.spatial();
    const float* bias_f = master_at(op.name + ".bias");
    const void* bias_t = compute_at(op.name + ".bias");
    const auto fused = [&](cudnnConvolutionFwdAlgo_t algo, DeviceBuffer<std::byte>& ws, bool float_bias) {
      return cudnnConvolutionBiasActivationForward(
          h, &one, c.xd.get(), x, c.wd.get(), w, c.fwd_desc.get(), algo, ws.data(), ws.bytes(), &zero,
          c.yd.get(), y, float_bias ? c.bias_float.get() : c.bias_compute.get(),
          float_bias ? static_cast<const void*>(bias_f) : bias_t, c.relu_desc.get(), c.yd.get(), y);
    };
    FusedChoice choice;
    DeviceBuffer<std::byte> fused_ws;
    cudnnStatus_t status = CUDNN_STATUS_NOT_SUPPORTED;
    const cudnnConvolutionFwdAlgo_t algos[2] = {cudnnConvolutionFwdAlgo_t(c.fwd.algo),
                                                CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM};
    for (int a = 0; a < 2 && !choice.fused; ++a) {
      const cudnnConvolutionFwdAlgo_t algo = algos[a];
      if (a == 1 && algo == algos[0]) break;
      std::size_t bytes = 0;
      if (cudnnGetConvolutionForwardWorkspaceSize(h, c.xd.get(), c.wd.get(), c.fwd_desc.get(), c.yd.get(),
                                                  algo, &bytes) != CUDNN_STATUS_SUCCESS)
        continue;
      fused_ws = DeviceBuffer<std::byte>(std::max<std::size_t>(bytes, 256));
      for (const bool float_bias : {false, true}) {
        if (float_bias && dtype == DType::F32) break;
        status = fused(algo, fused_ws, float_bias);
        if (status == CUDNN_STATUS_SUCCESS) {
          choice = {true, float_bias, int(algo), bytes};
          break;
        }
      }
    }
    cudaGetLastError();  // a refused fused call leaves no launch error behind
    if (!choice.fused && policy == ConvFusion::Always)
      throw Error(fmt::format("cuDNN refuses the fused convolution + bias + ReLU for '{}' ({} -> {}, {}): {}",
                              op.name, to_string(c.x_shape), to_string(c.y_shape), to_string(precision),
                              cudnnGetErrorString(status)));
    if (choice.fused && policy == ConvFusion::Measure) {
      DeviceBuffer<std::byte> plain_ws(std::max<std::size_t>(c.fwd.workspace, 256));
      const auto time = [&](const std::function<void()>& f) {
        CudaEvent t0, t1;
        f();
        t0.record(s);
        for (int r = 0; r < 3; ++r) f();
        t1.record(s);
        return t1.since(t0);
      };
      const float t_plain = time([&] {
        NFMIMO_CUDNN_CHECK(cudnnConvolutionForward(h, &one, c.xd.get(), x, c.wd.get(), w, c.fwd_desc.get(),
                                                   cudnnConvolutionFwdAlgo_t(c.fwd.algo), plain_ws.data(),
                                                   plain_ws.bytes(), &zero, c.yd.get(), y));
        gpu::bias_activation(dtype, y, bias_f, rows, c.y_shape.c, Act::ReLU, s);
      });
      const float t_fused = time([&] {
        NFMIMO_CUDNN_CHECK(fused(cudnnConvolutionFwdAlgo_t(choice.algo), fused_ws, choice.bias_float));
      });
      choice.fused = t_fused < t_plain;
    }
    apply(choice);
    std::lock_guard<std::mutex> lock(cache_mutex());
    fused_cache()[key] = choice;
  }

  // ---- compiling the plan into closures ---------------------------------------------------------
  void compile(Plan& plan) {
    plan.forward.clear(), plan.backward.clear();
    emit_forward(plan, plan.forward, mode == Mode::Training && !plan.predict_only);
    if (mode == Mode::Training && !plan.predict_only) emit_backward(plan);
  }

  void emit_forward(Plan& plan, std::vector<std::function<void(cudaStream_t)>>& steps,
                    bool batch_statistics) {
    Plan* p = &plan;
    const DType t = dtype;
    const Shape in_shape = plan.shapes[0];
    void* in_buffer = plan.value(0);
    steps.push_back([=](cudaStream_t s) { gpu::to_internal(t, p->input, in_buffer, in_shape, 1.f, s); });
    for (std::size_t k = 0; k < execs.size(); ++k) emit_forward_exec(plan, steps, int(k), batch_statistics);
    const int out = net.output();
    const Shape out_shape = plan.shapes[std::size_t(out)];
    void* out_buffer = plan.value(out);
    steps.push_back([=](cudaStream_t s) { gpu::from_internal(t, out_buffer, p->output, out_shape, s); });
  }

  void emit_forward_exec(Plan& plan, std::vector<std::function<void(cudaStream_t)>>& steps, int k,
                         bool batch_statistics) {
    const Exec& e = execs[std::size_t(k)];
    const Op& op = net.ops()[std::size_t(e.op)];
    const DType t = dtype;
    const Shape is = plan.shapes[std::size_t(e.inputs[0])], os = plan.shapes[std::size_t(e.result)];
    void* x = plan.value(e.inputs[0]);
    void* y = plan.value(e.result);
    const std::size_t rows = os.n * os.spatial();
    cudnnHandle_t h = handle.get();
    static const float one = 1.f, zero = 0.f;
    switch (e.kind) {
      case ExecKind::Conv: {
        ConvSite* c = plan.convs[std::size_t(k)].get();
        const void* w = compute_at(op.name + ".weight");
        // Inference: the effective bias always exists; training: the op's own, unless the batch norm carries
        // it.
        const float* bias = (mode == Mode::Inference || (op.bias && !e.pending_bias))
                                ? master_at(op.name + ".bias")
                                : nullptr;
        const void* fused_bias = c->fused
                                     ? (c->fused_bias == c->bias_float.get() ? static_cast<const void*>(bias)
                                                                             : compute_at(op.name + ".bias"))
                                     : nullptr;
        void* ws = plan.workspace.data();
        const std::size_t ws_bytes = plan.workspace.bytes();
        const Act act = e.act;
        void* xin = c->padded ? c->pad_value.data() : x;
        steps.push_back([=](cudaStream_t s) {
          if (c->padded) gpu::shift_copy(t, x, is, xin, c->x_shape, negate(c->pad_lo), false, s);
          if (c->fused) {
            NFMIMO_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
                h, &one, c->xd.get(), xin, c->wd.get(), w, c->fwd_desc.get(),
                cudnnConvolutionFwdAlgo_t(c->fused_algo), ws, ws_bytes, &zero, c->yd.get(), y, c->fused_bias,
                fused_bias, c->relu_desc.get(), c->yd.get(), y));
          } else {
            NFMIMO_CUDNN_CHECK(cudnnConvolutionForward(
                h, &one, c->xd.get(), xin, c->wd.get(), w, c->fwd_desc.get(),
                cudnnConvolutionFwdAlgo_t(c->fwd.algo), ws, ws_bytes, &zero, c->yd.get(), y));
            gpu::bias_activation(t, y, bias, rows, os.c, act, s);
          }
        });
        break;
      }
      case ExecKind::ConvTranspose: {
        ConvSite* c = plan.convs[std::size_t(k)].get();
        const void* w = compute_at(op.name + ".weight");
        const float* bias = op.bias ? master_at(op.name + ".bias") : nullptr;
        void* ws = plan.workspace.data();
        const std::size_t ws_bytes = plan.workspace.bytes();
        steps.push_back([=](cudaStream_t s) {
          NFMIMO_CUDNN_CHECK(cudnnConvolutionBackwardData(
              h, &one, c->wd.get(), w, c->yd.get(), x, c->data_desc.get(),
              cudnnConvolutionBwdDataAlgo_t(c->data.algo), ws, ws_bytes, &zero, c->xd.get(), y));
          gpu::bias_activation(t, y, bias, rows, os.c, Act::None, s);
        });
        break;
      }
      case ExecKind::BatchNorm: {
        BatchNormState* st = plan.batch_norms.at(k).get();
        const bool relu = e.relu;
        const int c = is.c;
        const std::size_t in_rows = is.n * is.spatial();
        if (mode == Mode::Inference) {
          const float* scale = master_at(op.name + ".scale");
          const float* shift = master_at(op.name + ".shift");
          steps.push_back([=](cudaStream_t s) { gpu::bn_apply(t, x, y, in_rows, c, scale, shift, relu, s); });
          break;
        }
        const float* pending =
            e.bn_conv >= 0 ? master_at(net.ops()[std::size_t(e.bn_conv)].name + ".bias") : nullptr;
        const float* gamma = master_at(op.name + ".weight");
        const float* beta = master_at(op.name + ".bias");
        float* rm = running_at(op.name + ".running_mean");
        float* rv = running_at(op.name + ".running_var");
        const double eps = net.batch_norm_settings.epsilon, momentum = net.batch_norm_settings.momentum;
        float* scratch = plan.scratch.data();
        if (batch_statistics) {
          gpu::BatchNormTrainingArgs a{gamma,
                                       beta,
                                       pending,
                                       rm,
                                       rv,
                                       momentum,
                                       eps,
                                       st->mean.data(),
                                       st->inv_std.data(),
                                       st->scale.data(),
                                       st->shift.data()};
          steps.push_back([=](cudaStream_t s) {
            gpu::bn_statistics(t, x, in_rows, c, a, scratch, s);
            gpu::bn_apply(t, x, y, in_rows, c, a.scale, a.shift, relu, s);
          });
        } else {
          float* scale = st->scale.data();
          float* shift = st->shift.data();
          steps.push_back([=](cudaStream_t s) {
            gpu::bn_inference_coefficients(gamma, beta, rm, rv, pending, eps, c, scale, shift, s);
            gpu::bn_apply(t, x, y, in_rows, c, scale, shift, relu, s);
          });
        }
        break;
      }
      case ExecKind::Activation: {
        const Act act = e.act;
        const std::size_t count = os.elements();
        steps.push_back([=](cudaStream_t s) { gpu::activation(t, x, y, count, act, s); });
        break;
      }
      case ExecKind::MaxPool: {
        const Triple kk = op.kernel, st = op.stride;
        steps.push_back([=](cudaStream_t s) { gpu::max_pool(t, x, y, is, os, kk, st, s); });
        break;
      }
      case ExecKind::Concat: {
        void* b = plan.value(e.inputs[1]);
        const int ca = is.c, cb = plan.shapes[std::size_t(e.inputs[1])].c;
        steps.push_back([=](cudaStream_t s) { gpu::concat(t, x, ca, b, cb, y, rows, s); });
        break;
      }
      case ExecKind::Crop:
      case ExecKind::ZeroPad: {
        const Triple offset = e.kind == ExecKind::Crop ? op.pad_lo : negate(op.pad_lo);
        steps.push_back([=](cudaStream_t s) { gpu::shift_copy(t, x, is, y, os, offset, false, s); });
        break;
      }
      case ExecKind::Add: {
        void* b = plan.value(e.inputs[1]);
        const std::size_t count = os.elements();
        steps.push_back([=](cudaStream_t s) { gpu::add(t, x, b, y, count, s); });
        break;
      }
      case ExecKind::Dense: {
        const void* w = compute_at(op.name + ".weight");
        const float* bias = op.bias ? master_at(op.name + ".bias") : nullptr;
        const int n = is.n, features = int(is.per_sample()), outputs = op.channels;
        steps.push_back(
            [=](cudaStream_t s) { gpu::dense_forward(t, x, w, bias, y, n, features, outputs, s); });
        break;
      }
    }
  }

  static Triple negate(Triple t) { return {-t[0], -t[1], -t[2]}; }

  // Backward in reverse order of the execs. Each value's gradient is written by its first contributor and
  // accumulated by the later ones (U-Net skips and the ResNet input are read twice): decided here, once.
  void emit_backward(Plan& plan) {
    Plan* p = &plan;
    const DType t = dtype;
    const int out = net.output();
    const Shape out_shape = plan.shapes[std::size_t(out)];
    void* g_out = plan.gradient(out);
    plan.backward.push_back(
        [=](cudaStream_t s) { gpu::to_internal(t, p->grad_output, g_out, out_shape, 1.f, s); });
    std::vector<char> touched(net.ops().size(), 0);
    touched[std::size_t(out)] = 1;
    // acc(v): whether a contribution to v's gradient must be added to an earlier one.
    const auto acc = [&](int v) {
      const bool a = touched[std::size_t(v)];
      touched[std::size_t(v)] = 1;
      return a;
    };
    cudnnHandle_t h = handle.get();
    static const float one = 1.f, zero = 0.f;
    for (std::size_t kk = execs.size(); kk-- > 0;) {
      const Exec& e = execs[kk];
      const int k = int(kk);
      const Op& op = net.ops()[std::size_t(e.op)];
      const int a = e.inputs[0];
      const Shape is = plan.shapes[std::size_t(a)], os = plan.shapes[std::size_t(e.result)];
      void* x = plan.value(a);
      void* y = plan.value(e.result);
      void* dy = plan.gradient(e.result);
      void* dx = plan.gradient(a);
      const bool input_is_network_input = a == 0;
      if (!touched[std::size_t(e.result)]) {
        // Nothing downstream depends on this value: its parameters get zero gradients.
        for (const char* suffix : {".weight", ".bias"})
          if (slot_index.count(op.name + suffix)) {
            const Slot& sl = slot(op.name + suffix);
            const bool weight = sl.offset < weight_count;
            void* g = weight ? weight_grad_at(sl.name) : static_cast<void*>(grad_at(sl.name));
            const std::size_t bytes = sl.count * (weight ? gpu::dtype_size(t) : sizeof(float));
            plan.backward.push_back([=](cudaStream_t s) { gpu::fill_zero(g, bytes, s); });
          }
        continue;
      }
      switch (e.kind) {
        case ExecKind::Conv: {
          ConvSite* c = plan.convs[kk].get();
          void* gy = dy;
          if (e.pre >= 0) {
            // The fused activation first: d(conv output) = dy * act'(y).
            gy = plan.gradient(e.pre);
            const Act act = e.act;
            const std::size_t count = os.elements();
            plan.backward.push_back(
                [=](cudaStream_t s) { gpu::activation_backward(t, y, dy, gy, count, act, false, s); });
          }
          const void* w = compute_at(op.name + ".weight");
          void* dw = weight_grad_at(op.name + ".weight");
          float* db = op.bias && !e.pending_bias ? grad_at(op.name + ".bias") : nullptr;
          const std::size_t rows = os.n * os.spatial();
          const int co = os.c;
          void* ws = plan.workspace.data();
          const std::size_t ws_bytes = plan.workspace.bytes();
          float* scratch = plan.scratch.data();
          void* xin = c->padded ? c->pad_value.data() : x;
          const bool accumulate = acc(a);
          plan.backward.push_back([=](cudaStream_t s) {
            if (db) gpu::channel_sum(t, gy, rows, co, db, false, scratch, s);
            NFMIMO_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
                h, &one, c->xd.get(), xin, c->yd.get(), gy, c->filter_desc.get(),
                cudnnConvolutionBwdFilterAlgo_t(c->filter.algo), ws, ws_bytes, &zero, c->wd.get(), dw));
            if (input_is_network_input && !p->grad_input) return;
            void* target = c->padded ? c->pad_grad.data() : dx;
            const float* beta = accumulate && !c->padded ? &one : &zero;
            NFMIMO_CUDNN_CHECK(cudnnConvolutionBackwardData(
                h, &one, c->wd.get(), w, c->yd.get(), gy, c->data_desc.get(),
                cudnnConvolutionBwdDataAlgo_t(c->data.algo), ws, ws_bytes, beta, c->xd.get(), target));
            if (c->padded) gpu::shift_copy(t, target, c->x_shape, dx, is, c->pad_lo, accumulate, s);
          });
          break;
        }
        case ExecKind::ConvTranspose: {
          // y = C^T x for the convolution C (large -> small): dx = C dy, dW from (input dy, output-gradient
          // x).
          ConvSite* c = plan.convs[kk].get();
          const void* w = compute_at(op.name + ".weight");
          void* dw = weight_grad_at(op.name + ".weight");
          float* db = op.bias ? grad_at(op.name + ".bias") : nullptr;
          const std::size_t rows = os.n * os.spatial();
          const int co = os.c;
          void* ws = plan.workspace.data();
          const std::size_t ws_bytes = plan.workspace.bytes();
          float* scratch = plan.scratch.data();
          const bool accumulate = acc(a);
          plan.backward.push_back([=](cudaStream_t s) {
            if (db) gpu::channel_sum(t, dy, rows, co, db, false, scratch, s);
            NFMIMO_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
                h, &one, c->xd.get(), dy, c->yd.get(), x, c->filter_desc.get(),
                cudnnConvolutionBwdFilterAlgo_t(c->filter.algo), ws, ws_bytes, &zero, c->wd.get(), dw));
            if (input_is_network_input && !p->grad_input) return;
            NFMIMO_CUDNN_CHECK(cudnnConvolutionForward(h, &one, c->xd.get(), dy, c->wd.get(), w,
                                                       c->fwd_desc.get(),
                                                       cudnnConvolutionFwdAlgo_t(c->fwd.algo), ws, ws_bytes,
                                                       accumulate ? &one : &zero, c->yd.get(), dx));
          });
          break;
        }
        case ExecKind::BatchNorm: {
          BatchNormState* st = plan.batch_norms.at(k).get();
          const bool relu = e.relu;
          const int c = is.c;
          const std::size_t rows = is.n * is.spatial();
          float* dgamma = grad_at(op.name + ".weight");
          float* dbeta = grad_at(op.name + ".bias");
          float* scratch = plan.scratch.data();
          const bool accumulate = acc(a);
          void* yy = relu ? y : nullptr;
          plan.backward.push_back([=](cudaStream_t s) {
            void* target = input_is_network_input && !p->grad_input ? nullptr : dx;
            gpu::bn_backward(t, x, yy, dy, target, rows, c, relu, st->mean.data(), st->inv_std.data(),
                             st->scale.data(), dgamma, dbeta, accumulate, scratch, s);
          });
          break;
        }
        case ExecKind::Activation: {
          const Act act = e.act;
          const std::size_t count = os.elements();
          const bool accumulate = acc(a);
          plan.backward.push_back([=](cudaStream_t s) {
            if (input_is_network_input && !p->grad_input) return;
            gpu::activation_backward(t, y, dy, dx, count, act, accumulate, s);
          });
          break;
        }
        case ExecKind::MaxPool: {
          const Triple kernel = op.kernel, stride = op.stride;
          const bool accumulate = acc(a);
          plan.backward.push_back([=](cudaStream_t s) {
            if (input_is_network_input && !p->grad_input) return;
            gpu::max_pool_backward(t, x, y, dy, dx, is, os, kernel, stride, accumulate, s);
          });
          break;
        }
        case ExecKind::Concat: {
          const int b = e.inputs[1];
          const int ca = is.c, cb = plan.shapes[std::size_t(b)].c;
          void* db = plan.gradient(b);
          const bool acc_a = acc(a), acc_b = acc(b);
          const bool b_is_input = b == 0;
          const std::size_t rows = os.n * os.spatial();
          plan.backward.push_back([=](cudaStream_t s) {
            void* ta = input_is_network_input && !p->grad_input ? nullptr : dx;
            void* tb = b_is_input && !p->grad_input ? nullptr : db;
            gpu::concat_backward(t, dy, ta, ca, acc_a, tb, cb, acc_b, rows, s);
          });
          break;
        }
        case ExecKind::Crop:
        case ExecKind::ZeroPad: {
          // The adjoint map: a crop's gradient is zero-padded back, a pad's gradient is cropped.
          const Triple offset = e.kind == ExecKind::Crop ? negate(op.pad_lo) : op.pad_lo;
          const bool accumulate = acc(a);
          plan.backward.push_back([=](cudaStream_t s) {
            if (input_is_network_input && !p->grad_input) return;
            gpu::shift_copy(t, dy, os, dx, is, offset, accumulate, s);
          });
          break;
        }
        case ExecKind::Add: {
          const int b = e.inputs[1];
          void* db = plan.gradient(b);
          const bool acc_a = acc(a), acc_b = acc(b);
          const bool b_is_input = b == 0;
          const std::size_t count = os.elements();
          plan.backward.push_back([=](cudaStream_t s) {
            if (!(input_is_network_input && !p->grad_input)) gpu::pass_gradient(t, dy, dx, count, acc_a, s);
            if (!(b_is_input && !p->grad_input)) gpu::pass_gradient(t, dy, db, count, acc_b, s);
          });
          break;
        }
        case ExecKind::Dense: {
          const void* w = compute_at(op.name + ".weight");
          void* dw = weight_grad_at(op.name + ".weight");
          float* db = op.bias ? grad_at(op.name + ".bias") : nullptr;
          const int n = is.n, features = int(is.per_sample()), outputs = op.channels;
          const bool accumulate = acc(a);
          plan.backward.push_back([=](cudaStream_t s) {
            void* target = input_is_network_input && !p->grad_input ? nullptr : dx;
            gpu::dense_backward(t, x, w, dy, target, accumulate, dw, db, n, features, outputs, s);
          });
          break;
        }
      }
    }
    // The input's gradient back to the logical layout.
    void* g_in = plan.gradient(0);
    const Shape in_shape = plan.shapes[0];
    const bool reached = touched[0];
    plan.backward.push_back([=](cudaStream_t s) {
      if (!p->grad_input) return;
      if (reached)
        gpu::from_internal(t, g_in, p->grad_input, in_shape, s);
      else
        gpu::fill_zero(p->grad_input, in_shape.elements() * sizeof(float), s);
    });
  }

  // ---- execution --------------------------------------------------------------------------------
  void run(Plan& plan, const std::vector<std::function<void(cudaStream_t)>>& steps, const float* in,
           float* out, cudaStream_t s) {
    NFMIMO_CUDNN_CHECK(cudnnSetStream(handle.get(), s));
    plan.input = in, plan.output = out;
    for (const auto& step : steps) step(s);
  }

  void run_backward(Plan& plan, const float* grad_output, float* grad_input, cudaStream_t s) {
    NFMIMO_CUDNN_CHECK(cudnnSetStream(handle.get(), s));
    plan.grad_output = grad_output, plan.grad_input = grad_input;
    for (const auto& step : plan.backward) step(s);
  }

  void forward_device(const float* in, float* out, int n, cudaStream_t s, bool predict) {
    Plan& plan = plan_for(n, predict);
    if (mode == Mode::Training && !plan.predict_only) trained = &plan;
    run(plan, plan.forward, in, out, s);
  }

  void backward_device(const float* grad_output, float* grad_input, cudaStream_t s) {
    require(mode == Mode::Training, "GPU network: backward needs a network built in training mode");
    require(trained != nullptr, "GPU network: backward called before forward");
    run_backward(*trained, grad_output, grad_input, s);
  }

  void host_call(const float* input, float* output, int n, bool predict) {
    const std::size_t in_count = net.input_shape(n).elements(), out_count = net.output_shape(n).elements();
    host_in.reserve(in_count);
    host_out.reserve(out_count);
    cudaStream_t s = host_stream->get();
    plan_for(n, predict);
    host_in.upload(input, in_count, s);
    forward_device(host_in.data(), host_out.data(), n, s, predict);
    host_out.download(output, out_count, s);
    host_stream->synchronize();
  }
};

GpuNetwork::GpuNetwork(Network network, const Parameters& parameters, Mode mode, Precision precision) {
  if (cuda_device_count() == 0)
    throw InputError("the GPU network backend needs a CUDA GPU: " + cuda_unavailable_reason());
  impl_ = std::make_unique<Impl>(std::move(network), parameters, mode, precision);
}
GpuNetwork::~GpuNetwork() = default;

const Network& GpuNetwork::network() const { return impl_->net; }
Mode GpuNetwork::mode() const { return impl_->mode; }
Precision GpuNetwork::precision() const { return impl_->precision; }
void GpuNetwork::plan(int n) { impl_->pin(n, false); }
void GpuNetwork::plan_predict(int n) { impl_->pin(n, true); }

void GpuNetwork::forward_device(const float* d_input, float* d_output, int n, CUstream_st* stream) {
  impl_->forward_device(d_input, d_output, n, stream, false);
}
void GpuNetwork::predict_device(const float* d_input, float* d_output, int n, CUstream_st* stream) {
  impl_->forward_device(d_input, d_output, n, stream, true);
}
void GpuNetwork::backward_device(const float* d_grad_output, float* d_grad_input, CUstream_st* stream) {
  impl_->backward_device(d_grad_output, d_grad_input, stream);
}

void GpuNetwork::forward(const float* input, float* output, int n) {
  impl_->host_call(input, output, n, false);
}
void GpuNetwork::predict(const float* input, float* output, int n) {
  impl_->host_call(input, output, n, true);
}

void GpuNetwork::backward(const float* grad_output, float* grad_input) {
  Impl& m = *impl_;
  require(m.trained != nullptr, "GPU network: backward called before forward");
  const int n = m.trained->n;
  const std::size_t out_count = m.net.output_shape(n).elements(), in_count = m.net.input_shape(n).elements();
  cudaStream_t s = m.host_stream->get();
  DeviceBuffer<float> dy(out_count), dx(grad_input ? in_count : 0);
  dy.upload(grad_output, out_count, s);
  m.backward_device(dy.data(), grad_input ? dx.data() : nullptr, s);
  if (grad_input) dx.download(grad_input, in_count, s);
  m.host_stream->synchronize();
}

const Parameters& GpuNetwork::parameters() const {
  impl_->parameters_read = impl_->read_parameters();
  return impl_->parameters_read;
}

void GpuNetwork::set_parameters(const Parameters& parameters) {
  check_parameters(impl_->net, parameters, "GPU network");
  NFMIMO_CUDA_CHECK(cudaDeviceSynchronize());
  impl_->params = parameters;
  impl_->upload_parameters();
}

const Gradients& GpuNetwork::gradients() const {
  impl_->gradients_read = impl_->read_gradients();
  return impl_->gradients_read;
}

std::string GpuNetwork::description() const {
  const std::size_t v = cudnnGetVersion();
  return fmt::format("cuda ({}, cuDNN {}.{}.{}, {})", impl_->gpu_name, v / 10000, (v / 100) % 100, v % 100,
                     to_string(impl_->precision));
}

std::size_t GpuNetwork::device_bytes() const {
  const Impl& m = *impl_;
  std::size_t b =
      m.master.bytes() + m.grads.bytes() + m.running.bytes() + m.compute.bytes() + m.compute_grads.bytes();
  for (const auto& [n, plan] : m.plans.plans()) b += plan->bytes;
  for (const auto& [n, plan] : m.predict_plans.plans()) b += plan->bytes;
  return b;
}

GpuNetworkInternals& GpuNetwork::internals() { return impl_->internals; }

int GpuNetwork::fused_convolutions(int n) const {
  const auto* plan = impl_->plans.find(n);
  require(plan != nullptr, fmt::format("GPU network: batch {} is not planned", n));
  int fused = 0;
  for (const auto& c : plan->convs) fused += c && c->fused;
  return fused;
}

void set_conv_fusion(ConvFusion policy) { fusion_policy().store(policy); }

}  // namespace nfmimo::nn

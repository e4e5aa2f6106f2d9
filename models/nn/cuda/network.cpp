// The cuDNN backend of the network engine (see network.hpp for what it does and docs/networks.md, "GPU
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
#include "models/nn/cuda/network_impl.hpp"

namespace nfmimo::nn {

void GpuNetwork::Impl::analyse() {
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

void GpuNetwork::Impl::add_slot(std::vector<Slot>& list, const std::string& name, std::vector<int> shape,
                                Layout layout, int dense_channels) {
  Slot s;
  s.name = name, s.shape = std::move(shape), s.layout = layout, s.dense_channels = dense_channels;
  s.count = product(s.shape);
  list.push_back(std::move(s));
}

void GpuNetwork::Impl::layout_parameters() {
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

void GpuNetwork::Impl::upload_parameters() {
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
            for (std::size_t k = 0; k < per_out; ++k) w[o * per_out + k] = float(w[o * per_out + k] * scale);
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

void* GpuNetwork::Impl::compute_at(const std::string& name) {
  const std::size_t off = slot(name).offset;
  return dtype == DType::F32 ? static_cast<void*>(master.data() + off)
                             : static_cast<void*>(compute.data() + off * gpu::dtype_size(dtype));
}

void* GpuNetwork::Impl::weight_grad_at(const std::string& name) {
  const std::size_t off = slot(name).offset;
  return dtype == DType::F32 ? static_cast<void*>(grads.data() + off)
                             : static_cast<void*>(compute_grads.data() + off * gpu::dtype_size(dtype));
}

Parameters GpuNetwork::Impl::read_parameters() {
  if (mode == Mode::Inference) return params;
  std::vector<float> host(count), host_running(running_count);
  cudaStream_t s = host_stream->get();
  NFMIMO_CUDA_CHECK(cudaStreamSynchronize(s));
  NFMIMO_CUDA_CHECK(cudaDeviceSynchronize());  // work queued by callers on their own streams
  master.download(host.data(), count, s);
  running.download(host_running.data(), running_count, s);
  host_stream->synchronize();
  Parameters out = params;
  for (const auto& sl : slots) to_logical_layout(sl, host.data() + sl.offset, out.at(sl.name).values.data());
  for (const auto& sl : running_slots)
    to_logical_layout(sl, host_running.data() + sl.offset, out.at(sl.name).values.data());
  return out;
}

std::map<std::string, std::vector<float>> GpuNetwork::Impl::read_gradients() {
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

void GpuNetwork::forward_device(const float* d_input, float* d_output, int n, cudaStream_t stream) {
  impl_->forward_device(d_input, d_output, n, stream, false);
}
void GpuNetwork::predict_device(const float* d_input, float* d_output, int n, cudaStream_t stream) {
  impl_->forward_device(d_input, d_output, n, stream, true);
}
void GpuNetwork::backward_device(const float* d_grad_output, float* d_grad_input, cudaStream_t stream) {
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

namespace {
// The convolution sites of the plan of batch n for which `pick` holds (InputError when n is not planned).
template <class Plans, class Pick>
int count_conv_sites(const Plans& plans, int n, Pick pick) {
  const auto* plan = plans.find(n);
  require(plan != nullptr, fmt::format("GPU network: batch {} is not planned", n));
  int count = 0;
  for (const auto& c : plan->convs) count += c && pick(*c);
  return count;
}
}  // namespace

int GpuNetwork::fused_convolutions(int n) const {
  return count_conv_sites(impl_->plans, n, [](const auto& c) { return c.fused; });
}

int GpuNetwork::thin_convolutions(int n) const {
  return count_conv_sites(impl_->plans, n, [](const auto& c) { return c.thin; });
}

void set_conv_fusion(ConvFusion policy) { fusion_policy().store(policy); }
void set_thin_convolution(ThinConvolution policy) { thin_policy().store(policy); }

}  // namespace nfmimo::nn

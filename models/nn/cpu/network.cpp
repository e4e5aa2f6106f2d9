// The CPU backend: planning (fusion, buffers, oneDNN primitives), parameters
// and the public calls.
#include "models/nn/cpu/network_impl.hpp"

namespace nfmimo::nn {

CpuNetwork::Impl::Impl(Network network, const Parameters& parameters, Mode m)
    : net(std::move(network)), mode(m) {
  check_parameters(net, parameters, "CPU network");
  params = parameters;
  for (const Op& op : net.ops())
    if (op.kind == OpKind::ConvTranspose)
      for (int a = 0; a < 3; ++a)
        require(op.kernel[a] <= op.stride[a], fmt::format("op '{}': the CPU fast path supports transposed "
                                                          "convolutions with kernel <= stride only",
                                                          op.name));
  plan_fusion();
  fold_parameters();
}

void CpuNetwork::Impl::plan_fusion() {
  const auto& ops = net.ops();
  steps = lower(net, mode);
  absorbed.assign(ops.size(), 0);
  root.resize(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) root[i] = int(i);
  for (const Step& step : steps) {
    for (std::size_t c = 1; c < step.chain.size(); ++c)
      absorbed[std::size_t(step.chain[c])] = 1, root[std::size_t(step.chain[c])] = step.op;
    if (step.activation != OpKind::Input)
      post[step.op] =
          step.activation == OpKind::ReLU ? dnnl::algorithm::eltwise_relu : dnnl::algorithm::eltwise_logistic;
  }
}

void CpuNetwork::Impl::fold_parameters() {
  const auto& ops = net.ops();
  conv_weights.clear(), conv_bias.clear();
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    if (op.kind != OpKind::Conv) continue;
    std::vector<float> w = p(op, ".weight");
    std::vector<float> b = op.bias ? p(op, ".bias") : std::vector<float>(std::size_t(op.channels), 0.0f);
    for (std::size_t j = i + 1; j < ops.size(); ++j)
      if (absorbed[j] && root[j] == int(i) && ops[j].kind == OpKind::BatchNorm) {
        const auto &gamma = p(ops[j], ".weight"), &beta = p(ops[j], ".bias");
        const auto &mean = p(ops[j], ".running_mean"), &var = p(ops[j], ".running_var");
        const std::size_t per_out = w.size() / std::size_t(op.channels);
        for (std::size_t o = 0; o < std::size_t(op.channels); ++o) {
          const double scale = gamma[o] / std::sqrt(double(var[o]) + net.batch_norm_settings.epsilon);
          for (std::size_t k = 0; k < per_out; ++k) w[o * per_out + k] = float(w[o * per_out + k] * scale);
          b[o] = float((double(b[o]) - mean[o]) * scale + beta[o]);
        }
      }
    conv_weights[int(i)] = std::move(w);
    conv_bias[int(i)] = std::move(b);
  }
  ++version;
}

Plan& CpuNetwork::Impl::plan_for(int n) {
  last = &plans.get(n, [this](int size) { return build_plan(size); }, {last});
  return *last;
}

std::unique_ptr<Plan> CpuNetwork::Impl::build_plan(int n) {
  const auto& ops = net.ops();
  auto plan = std::make_unique<Plan>();
  plan->n = n;
  for (std::size_t i = 0; i < ops.size(); ++i) plan->shapes.push_back(net.shape(int(i), n));
  assign_buffers(*plan);
  std::size_t scratch = 0;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    if (op.kind == OpKind::Conv) build_conv(*plan, int(i));
    if (op.kind == OpKind::ConvTranspose) {
      // GEMM result [rows, taps * c_out] (forward) / gathered output gradient
      // (backward).
      const Shape in = plan->shapes[std::size_t(op.inputs[0])];
      scratch =
          std::max(scratch, in.n * in.spatial() * std::size_t(op.kernel[0] * op.kernel[1] * op.kernel[2]) *
                                std::size_t(op.channels));
    }
    if (op.kind == OpKind::MaxPool) plan->argmax[int(i)].resize(plan->shapes[i].elements());
    if (mode == Mode::Training && op.kind == OpKind::Conv)
      scratch =
          std::max(scratch, plan->shapes[std::size_t(op.inputs[0])].elements());  // diff_src to accumulate
  }
  plan->scratch.resize(scratch);
  if (mode == Mode::Training) {
    plan->grads.resize(ops.size());
    plan->touched.assign(ops.size(), 0);
    for (std::size_t i = 0; i < ops.size(); ++i) plan->grads[i].resize(plan->shapes[i].elements());
  }
  return plan;
}

void CpuNetwork::Impl::assign_buffers(Plan& plan) {
  const BufferAssignment a = nn::assign_buffers(
      net, steps, [&](int v) { return plan.shapes[std::size_t(v)].elements(); }, mode == Mode::Inference,
      true);
  plan.buffer_of = a.buffer_of;
  plan.buffers.resize(a.sizes.size());
  for (std::size_t b = 0; b < a.sizes.size(); ++b) plan.buffers[b].resize(a.sizes[b]);
}

void CpuNetwork::Impl::build_conv(Plan& plan, int index) {
  const Op& op = net.ops()[std::size_t(index)];
  const Shape in = plan.shapes[std::size_t(op.inputs[0])], out = plan.shapes[std::size_t(index)];
  ConvPlan c;
  try {
    const memory::desc src_md(dims_of(in), f32, tag::ndhwc), dst_md(dims_of(out), f32, tag::ndhwc);
    const memory::desc any_weights({op.channels, in.c, op.kernel[0], op.kernel[1], op.kernel[2]}, f32,
                                   tag::any);
    const memory::desc bias_md({op.channels}, f32, tag::x);
    const auto strides = dims_of(op.stride), pad_l = dims_of(op.pad_lo), pad_r = dims_of(op.pad_hi);
    const auto prop =
        mode == Mode::Training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    // Inference always has a bias (a folded batch norm creates one).
    const bool bias = op.bias || mode == Mode::Inference;
    const auto desc =
        bias ? dnnl::convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, src_md, any_weights,
                                               bias_md, dst_md, strides, pad_l, pad_r)
             : dnnl::convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, src_md, any_weights,
                                               dst_md, strides, pad_l, pad_r);
    dnnl::primitive_attr attr;
    if (auto it = post.find(index); it != post.end()) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.0f, it->second, 0.0f, 0.0f);
      attr.set_post_ops(ops);
    }
    c.fwd_pd = dnnl::convolution_forward::primitive_desc(desc, attr, engine);
    c.fwd = dnnl::convolution_forward(c.fwd_pd);
    c.src = memory(src_md, engine, plan.value(op.inputs[0]));
    c.dst = memory(dst_md, engine, plan.value(index));
    c.weights = memory(c.fwd_pd.weights_desc(), engine);
    c.bias = memory(bias_md, engine, nullptr);
    if (mode == Mode::Training) {
      const auto bd = dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, src_md,
                                                            any_weights, dst_md, strides, pad_l, pad_r);
      c.bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(bd, engine, c.fwd_pd);
      c.bwd_data = dnnl::convolution_backward_data(c.bwd_data_pd);
      const auto bw =
          op.bias
              ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src_md,
                                                         any_weights, bias_md, dst_md, strides, pad_l, pad_r)
              : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src_md,
                                                         any_weights, dst_md, strides, pad_l, pad_r);
      c.bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc(bw, engine, c.fwd_pd);
      c.bwd_weights = dnnl::convolution_backward_weights(c.bwd_weights_pd);
      c.data_weights = memory(c.bwd_data_pd.weights_desc(), engine);
      c.diff_src = memory(src_md, engine, nullptr);
      c.diff_dst = memory(dst_md, engine, nullptr);
      c.diff_weights = memory(c.bwd_weights_pd.diff_weights_desc(), engine);
      c.diff_bias = memory(bias_md, engine, nullptr);
    }
  } catch (const dnnl::error& e) {
    rethrow(e, fmt::format("planning convolution '{}' for input {}", op.name, to_string(in)));
  }
  plan.convs.emplace(index, std::move(c));
}

void CpuNetwork::Impl::upload_weights(Plan& plan) {
  if (plan.weights_version == version) return;
  for (auto& [index, c] : plan.convs) {
    const Op& op = net.ops()[std::size_t(index)];
    const Shape in = plan.shapes[std::size_t(op.inputs[0])];
    auto& w = mode == Mode::Inference ? conv_weights.at(index) : params.at(op.name + ".weight").values;
    memory user(memory::desc({op.channels, in.c, op.kernel[0], op.kernel[1], op.kernel[2]}, f32, tag::oidhw),
                engine, w.data());
    dnnl::reorder(user, c.weights).execute(stream, user, c.weights);
    if (mode == Mode::Training) dnnl::reorder(user, c.data_weights).execute(stream, user, c.data_weights);
  }
  stream.wait();
  plan.weights_version = version;
}

CpuNetwork::CpuNetwork(Network network, const Parameters& parameters, Mode mode)
    : impl_(std::make_unique<Impl>(std::move(network), parameters, mode)) {}
CpuNetwork::~CpuNetwork() = default;

const Network& CpuNetwork::network() const { return impl_->net; }
Mode CpuNetwork::mode() const { return impl_->mode; }
void CpuNetwork::forward(const float* input, float* output, int n) {
  impl_->forward(input, output, n);
  impl_->predict_copy.mark_stale();  // training mode moved the running statistics
}
void CpuNetwork::predict(const float* input, float* output, int n) {
  if (impl_->mode == Mode::Inference) return impl_->forward(input, output, n);
  impl_->predict_copy.get(impl_->net, *this).forward(input, output, n);
}
void CpuNetwork::backward(const float* grad_output, float* grad_input) {
  impl_->backward(grad_output, grad_input);
}
const Parameters& CpuNetwork::parameters() const { return impl_->params; }
const Gradients& CpuNetwork::gradients() const { return impl_->grads; }

void CpuNetwork::set_parameters(const Parameters& parameters) {
  check_parameters(impl_->net, parameters, "CPU network");
  impl_->params = parameters;
  impl_->fold_parameters();
  impl_->predict_copy.mark_stale();
}

std::string CpuNetwork::description() const {
  const dnnl_version_t* v = dnnl_version();
  return fmt::format("cpu (oneDNN {}.{}.{}, {} threads)", v->major, v->minor, v->patch,
                     omp_get_max_threads());
}

CpuNetwork& InferenceMirror::get(const Network& network, const CpuNetwork& training) {
  if (!net_)
    net_ = std::make_unique<CpuNetwork>(network, training.parameters(), Mode::Inference);
  else if (stale_)
    net_->set_parameters(training.parameters());
  stale_ = false;
  return *net_;
}

}  // namespace nfmimo::nn

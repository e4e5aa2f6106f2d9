// The cuDNN backend's forward pass, compiled into a list of closures per plan, and its execution.
#include "models/nn/cuda/network_impl.hpp"

namespace nfmimo::nn {

void GpuNetwork::Impl::compile(Plan& plan) {
  plan.forward.clear(), plan.backward.clear();
  emit_forward(plan, plan.forward, mode == Mode::Training && !plan.predict_only);
  if (mode == Mode::Training && !plan.predict_only) emit_backward(plan);
}

void GpuNetwork::Impl::emit_forward(Plan& plan, std::vector<std::function<void(cudaStream_t)>>& steps,
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

void GpuNetwork::Impl::emit_forward_exec(Plan& plan, std::vector<std::function<void(cudaStream_t)>>& steps,
                                         int k, bool batch_statistics) {
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
      const float* bias =
          (mode == Mode::Inference || (op.bias && !e.pending_bias)) ? master_at(op.name + ".bias") : nullptr;
      const Act act = e.act;
      if (c->thin) {
        steps.push_back(
            [=](cudaStream_t s) { gpu::thin_conv_forward(t, c->thin_geometry, x, w, bias, y, act, s); });
        break;
      }
      const void* fused_bias = c->fused
                                   ? (c->fused_bias == c->bias_float.get() ? static_cast<const void*>(bias)
                                                                           : compute_at(op.name + ".bias"))
                                   : nullptr;
      void* ws = plan.workspace.data();
      const std::size_t ws_bytes = plan.workspace.bytes();
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
      steps.push_back([=](cudaStream_t s) { gpu::dense_forward(t, x, w, bias, y, n, features, outputs, s); });
      break;
    }
  }
}

void GpuNetwork::Impl::run(Plan& plan, const std::vector<std::function<void(cudaStream_t)>>& steps,
                           const float* in, float* out, cudaStream_t s) {
  NFMIMO_CUDNN_CHECK(cudnnSetStream(handle.get(), s));
  plan.input = in, plan.output = out;
  for (const auto& step : steps) step(s);
}

void GpuNetwork::Impl::forward_device(const float* in, float* out, int n, cudaStream_t s, bool predict) {
  Plan& plan = plan_for(n, predict);
  if (mode == Mode::Training && !plan.predict_only) trained = &plan;
  run(plan, plan.forward, in, out, s);
}

void GpuNetwork::Impl::host_call(const float* input, float* output, int n, bool predict) {
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

}  // namespace nfmimo::nn

// The cuDNN backend's backward pass, compiled into a list of closures per plan (reverse order of the steps).
#include "models/nn/cuda/network_impl.hpp"

namespace nfmimo::nn {

void GpuNetwork::Impl::emit_backward(Plan& plan) {
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
        if (c->thin) {
          plan.backward.push_back([=](cudaStream_t s) {
            if (db) gpu::channel_sum(t, gy, rows, co, db, false, scratch, s);
            gpu::thin_conv_backward_filter(t, c->thin_geometry, x, gy, dw, scratch, s);
            if (input_is_network_input && !p->grad_input) return;
            gpu::thin_conv_backward_data(t, c->thin_geometry, gy, w, dx, accumulate, s);
          });
          break;
        }
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

void GpuNetwork::Impl::run_backward(Plan& plan, const float* grad_output, float* grad_input, cudaStream_t s) {
  NFMIMO_CUDNN_CHECK(cudnnSetStream(handle.get(), s));
  plan.grad_output = grad_output, plan.grad_input = grad_input;
  for (const auto& step : plan.backward) step(s);
}

void GpuNetwork::Impl::backward_device(const float* grad_output, float* grad_input, cudaStream_t s) {
  require(mode == Mode::Training, "GPU network: backward needs a network built in training mode");
  require(trained != nullptr, "GPU network: backward called before forward");
  run_backward(*trained, grad_output, grad_input, s);
}

}  // namespace nfmimo::nn

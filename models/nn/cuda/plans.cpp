// Plans of the cuDNN backend: buffers from the shared lowering, cuDNN descriptors, measured algorithms and
// the conv + bias + ReLU fusion decision; thin convolutions (one input or output channel) skip cuDNN for the
// direct kernels of thin_conv.cu.
#include "models/nn/cuda/network_impl.hpp"

#include "kernels/cuda_event.hpp"

namespace nfmimo::nn {

Plan& GpuNetwork::Impl::plan_for(int n, bool predict) {
  require(n > 0, "GPU network: the batch must be positive");
  const bool separate = predict && mode == Mode::Training;
  last = &(separate ? predict_plans : plans)
              .get(n, [&](int size) { return build_plan(size, separate); }, {last, trained});
  return *last;
}

void GpuNetwork::Impl::pin(int n, bool predict) {
  require(n > 0, "GPU network: the batch must be positive");
  (predict && mode == Mode::Training ? predict_plans : plans).pin(n);
  plan_for(n, predict);
}

void GpuNetwork::Impl::assign_buffers(Plan& plan) {
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

std::unique_ptr<Plan> GpuNetwork::Impl::build_plan(int n, bool predict_only) {
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
    if (c.thin && mode == Mode::Training && !predict_only)
      scratch = std::max(scratch, gpu::thin_conv_filter_scratch(c.thin_geometry));
  }
  search_workspace.release();
  // After the convolutions: a thin one's filter gradient keeps its chunks' partial sums here.
  plan->scratch.allocate(scratch);
  plan->bytes += scratch * sizeof(float);
  plan->workspace.allocate(std::max<std::size_t>(workspace, 256));
  plan->bytes += plan->workspace.bytes();

  compile(*plan);
  // A warm-up run outside any capture: cuDNN's lazily initialised kernels load now. Training mode restores
  // the running statistics it moved.
  DeviceBuffer<float> saved(running_count);
  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(saved.data(), running.data(), running_count * sizeof(float),
                                    cudaMemcpyDeviceToDevice, s));
  DeviceBuffer<float> in(plan->shapes[0].elements()), out(plan->shapes[std::size_t(net.output())].elements());
  in.zero(s);
  out.zero(s);
  run(*plan, plan->forward, in.data(), out.data(), s);
  if (mode == Mode::Training && !predict_only) run_backward(*plan, out.data(), nullptr, s);
  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(running.data(), saved.data(), running_count * sizeof(float),
                                    cudaMemcpyDeviceToDevice, s));
  host_stream->synchronize();
  return plan;
}

std::unique_ptr<ConvSite> GpuNetwork::Impl::plan_conv(Plan& plan, int k, void* ws, std::size_t ws_bytes) {
  const Exec& e = execs[std::size_t(k)];
  const Op& op = net.ops()[std::size_t(e.op)];
  auto c = std::make_unique<ConvSite>();
  c->exec = k;
  c->transposed = e.kind == ExecKind::ConvTranspose;
  const int in_value = e.inputs[0], out_value = e.pre >= 0 ? e.pre : e.result;
  const Shape in = plan.shapes[std::size_t(in_value)], out = plan.shapes[std::size_t(out_value)];
  if (runs_thin_kernel(net, op, thin_policy().load())) {
    c->thin = true;
    c->thin_geometry = {in, out, op.kernel, op.stride, op.pad_lo};
    return c;
  }
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

void GpuNetwork::Impl::decide_fusion(Plan& plan, ConvSite& c, void* x, void* y,
                                     const std::string& shape_key) {
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
    if (cudnnGetConvolutionForwardWorkspaceSize(h, c.xd.get(), c.wd.get(), c.fwd_desc.get(), c.yd.get(), algo,
                                                &bytes) != CUDNN_STATUS_SUCCESS)
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

}  // namespace nfmimo::nn

#include "models/cpu_network.hpp"

#include <omp.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "models/nn/lowering.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

memory::dims dims_of(const Shape& s) { return {s.n, s.c, s.x, s.y, s.z}; }
memory::dims dims_of(const Triple& t) { return {t[0], t[1], t[2]}; }

// oneDNN failures are engine bugs or exhausted memory, never bad user input.
[[noreturn]] void rethrow(const dnnl::error& e, const std::string& what) {
  throw Error(fmt::format("oneDNN failed while {}: {} (status {})", what, e.what(), int(e.status)));
}

void sgemm(char ta, char tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
           const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  const dnnl_status_t status = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success) throw Error(fmt::format("oneDNN sgemm failed (status {})", int(status)));
}

// Offset of voxel (n, x, y, z) in a channels-last buffer of shape s (row of s.c floats).
inline std::size_t row(const Shape& s, int n, int x, int y, int z) {
  return ((((std::size_t(n) * s.x + x) * s.y + y) * s.z + z)) * std::size_t(s.c);
}

std::size_t product(const std::vector<int>& shape) {
  std::size_t e = 1;
  for (int d : shape) e *= std::size_t(d);
  return e;
}

// Per-channel sums over all rows of a channels-last tensor, in double (batch statistics over ~1e6 values).
// Each thread sums a static block of rows; the partial sums are then added in thread order, so the result has
// the same bits on every run with the same thread count (training reproducibility; a critical section would
// add them in arrival order).
template <class F>
std::vector<double> channel_sums(std::size_t rows, int channels, F&& value) {
  const std::size_t C = std::size_t(channels);
  std::vector<double> partial(C * std::size_t(omp_get_max_threads()), 0.0);
  int used = 1;
#pragma omp parallel
  {
#pragma omp single
    used = omp_get_num_threads();
    double* local = partial.data() + C * std::size_t(omp_get_thread_num());
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < std::int64_t(rows); ++r)
      for (int c = 0; c < channels; ++c) local[std::size_t(c)] += value(std::size_t(r), c);
  }
  std::vector<double> total(C, 0.0);
  for (int t = 0; t < used; ++t)
    for (std::size_t c = 0; c < C; ++c) total[c] += partial[C * std::size_t(t) + c];
  return total;
}

// Flush-to-zero and denormals-are-zero on the calling thread and the OpenMP pool for the lifetime of the
// guard. Backward passes through training-mode batch norm produce gradients that shrink towards the float
// denormal range (< 1.2e-38), where x86 arithmetic is ~100x slower: a U-Net training step measured 20x slower
// without this. Values that small are below any meaningful contribution; PyTorch offers the same switch
// (torch.set_flush_denormal). The previous state is restored, so other code (the physics operators) is
// unaffected.
class FlushDenormals {
 public:
  FlushDenormals() {
#if defined(__SSE__)
    saved_.assign(std::size_t(omp_get_max_threads()), 0u);
#pragma omp parallel
    {
      const std::size_t t = std::size_t(omp_get_thread_num());
      if (t < saved_.size()) {
        saved_[t] = _mm_getcsr();
        _mm_setcsr(saved_[t] | 0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
      }
    }
#endif
  }
  ~FlushDenormals() {
#if defined(__SSE__)
#pragma omp parallel
    {
      const std::size_t t = std::size_t(omp_get_thread_num());
      if (t < saved_.size()) _mm_setcsr(saved_[t]);
    }
#endif
  }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  std::vector<unsigned> saved_;
};

}  // namespace

struct ConvPlan {
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  memory src, dst, weights, bias;
  // Training only.
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_backward_weights bwd_weights;
  memory data_weights, diff_src, diff_dst, diff_weights, diff_bias;
};

struct Plan {
  int n = 0;
  std::vector<Shape> shapes;  // per value, batch n
  std::vector<int>
      buffer_of;  // per value: index into buffers (fused values share their convolution's buffer)
  std::vector<aligned_vector<float>> buffers;
  std::vector<aligned_vector<float>> grads;  // training: per value
  std::vector<char> touched;                 // training: the value's gradient already holds a contribution
  std::map<int, ConvPlan> convs;
  std::map<int, std::vector<std::uint8_t>> argmax;  // max pooling: window index per output
  std::map<int, std::pair<std::vector<float>, std::vector<float>>>
      stats;  // batch norm (training): mean, 1/std
  aligned_vector<float> scratch;
  std::uint64_t weights_version = ~0ull;

  float* value(int v) { return buffers[std::size_t(buffer_of[std::size_t(v)])].data(); }
};

struct CpuNetwork::Impl {
  Network net;
  Mode mode;
  Parameters params;
  std::map<std::string, std::vector<float>> grads;
  // Training mode's predict: an inference copy with buffers and batch-norm coefficients of its own, so that a
  // predict between forward and backward cannot touch what backward reads.
  InferenceMirror predict_copy;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};

  // Inference fusion: absorbed[op] when a batch norm / activation is computed inside its convolution;
  // root[value] is the op whose buffer holds the value; post[conv] the fused activation.
  std::vector<Step> steps;
  std::vector<char> absorbed;
  std::vector<int> root;
  std::map<int, dnnl::algorithm> post;
  std::map<int, std::vector<float>> conv_weights, conv_bias;  // per conv op, effective (folded) parameters
  std::uint64_t version = 0;

  PlanCache<Plan> plans{2};
  Plan* last = nullptr;
  // NFMIMO_NN_PROFILE=1 prints each op's time and oneDNN implementation to stderr (for the benchmark).
  const bool profile = std::getenv("NFMIMO_NN_PROFILE") != nullptr;

  void report(int index, const char* phase, std::chrono::steady_clock::time_point t0) {
    stream.wait();
    const Op& op = net.ops()[std::size_t(index)];
    std::string impl;
    if (auto it = last->convs.find(index); it != last->convs.end())
      impl = std::string(phase[0] == 'f'             ? it->second.fwd_pd.impl_info_str()
                         : it->second.bwd_weights_pd ? it->second.bwd_weights_pd.impl_info_str()
                                                     : "");
    if (phase[0] == 'b' && !impl.empty())
      impl = std::string(last->convs.at(index).bwd_data_pd.impl_info_str()) + " / " + impl;
    std::fprintf(stderr, "%-8s %-20s %-14s %9.2f ms %s\n", phase, op.name.c_str(), to_string(op.kind).c_str(),
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
                 impl.c_str());
  }

  Impl(Network network, const Parameters& parameters, Mode m) : net(std::move(network)), mode(m) {
    check_parameters(net, parameters, "CPU network");
    params = parameters;
    for (const Op& op : net.ops())
      if (op.kind == OpKind::ConvTranspose)
        for (int a = 0; a < 3; ++a)
          require(
              op.kernel[a] <= op.stride[a],
              fmt::format(
                  "op '{}': the CPU fast path supports transposed convolutions with kernel <= stride only",
                  op.name));
    plan_fusion();
    fold_parameters();
  }

  const std::vector<float>& p(const Op& op, const char* suffix) const {
    return params.at(op.name + suffix).values;
  }

  // The shared lowering's inference fusions (the CPU's training kernels fuse nothing): absorbed[op] when an
  // op is computed inside its chain's convolution, root[value] the op whose buffer holds the value,
  // post[conv] the fused activation.
  void plan_fusion() {
    const auto& ops = net.ops();
    steps = lower(net, mode);
    absorbed.assign(ops.size(), 0);
    root.resize(ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) root[i] = int(i);
    for (const Step& step : steps) {
      for (std::size_t c = 1; c < step.chain.size(); ++c)
        absorbed[std::size_t(step.chain[c])] = 1, root[std::size_t(step.chain[c])] = step.op;
      if (step.activation != OpKind::Input)
        post[step.op] = step.activation == OpKind::ReLU ? dnnl::algorithm::eltwise_relu
                                                        : dnnl::algorithm::eltwise_logistic;
    }
  }

  // Effective convolution parameters: a batch norm folded into its convolution gives
  // w' = w gamma / sqrt(var + eps), b' = (b - mean) gamma / sqrt(var + eps) + beta (per output channel).
  void fold_parameters() {
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

  // At most two plans: a chunked run uses the full batch and one remainder.
  Plan& plan_for(int n) {
    last = &plans.get(n, [this](int size) { return build_plan(size); }, {last});
    return *last;
  }

  std::unique_ptr<Plan> build_plan(int n) {
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
        // GEMM result [rows, taps * c_out] (forward) / gathered output gradient (backward).
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

  // Inference reuses a buffer once every reader of the values in it has run; training keeps one per value
  // (backward reads them all).
  void assign_buffers(Plan& plan) {
    const BufferAssignment a = nn::assign_buffers(
        net, steps, [&](int v) { return plan.shapes[std::size_t(v)].elements(); }, mode == Mode::Inference,
        true);
    plan.buffer_of = a.buffer_of;
    plan.buffers.resize(a.sizes.size());
    for (std::size_t b = 0; b < a.sizes.size(); ++b) plan.buffers[b].resize(a.sizes[b]);
  }

  void build_conv(Plan& plan, int index) {
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
          bias ? dnnl::convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, src_md,
                                                 any_weights, bias_md, dst_md, strides, pad_l, pad_r)
               : dnnl::convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, src_md,
                                                 any_weights, dst_md, strides, pad_l, pad_r);
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
            op.bias ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src_md,
                                                               any_weights, bias_md, dst_md, strides, pad_l,
                                                               pad_r)
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

  // Reorders the (effective) convolution weights into the primitives' formats when they changed.
  void upload_weights(Plan& plan) {
    if (plan.weights_version == version) return;
    for (auto& [index, c] : plan.convs) {
      const Op& op = net.ops()[std::size_t(index)];
      const Shape in = plan.shapes[std::size_t(op.inputs[0])];
      auto& w = mode == Mode::Inference ? conv_weights.at(index) : params.at(op.name + ".weight").values;
      memory user(
          memory::desc({op.channels, in.c, op.kernel[0], op.kernel[1], op.kernel[2]}, f32, tag::oidhw),
          engine, w.data());
      dnnl::reorder(user, c.weights).execute(stream, user, c.weights);
      if (mode == Mode::Training) dnnl::reorder(user, c.data_weights).execute(stream, user, c.data_weights);
    }
    stream.wait();
    plan.weights_version = version;
  }

  // ---- forward ------------------------------------------------------------------------------------------
  void forward(const float* input, float* output, int n) {
    require(n > 0, "CPU network: batch must be positive");
    Plan& plan = plan_for(n);
    const auto& ops = net.ops();
    if (mode == Mode::Training) ++version;  // parameters may have been changed in place by the caller
    upload_weights(plan);
    const FlushDenormals flush;
    to_channels_last(input, plan.value(0), plan.shapes[0]);
    try {
      for (std::size_t i = 1; i < ops.size(); ++i)
        if (!absorbed[i]) {
          const auto t0 = std::chrono::steady_clock::now();
          forward_op(plan, int(i));
          if (profile) report(int(i), "forward", t0);
        }
      stream.wait();
    } catch (const dnnl::error& e) {
      rethrow(e, "running the network");
    }
    from_channels_last(plan.value(net.output()), output, plan.shapes[std::size_t(net.output())]);
  }

  static void to_channels_last(const float* in, float* out, const Shape& s) {
    const std::size_t S = s.spatial();
    if (s.c == 1) {
      std::memcpy(out, in, s.elements() * sizeof(float));
      return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < s.n; ++n)
      for (std::int64_t v = 0; v < std::int64_t(S); ++v)
        for (int c = 0; c < s.c; ++c)
          out[(n * S + std::size_t(v)) * std::size_t(s.c) + std::size_t(c)] =
              in[(std::size_t(n) * s.c + c) * S + std::size_t(v)];
  }

  static void from_channels_last(const float* in, float* out, const Shape& s) {
    const std::size_t S = s.spatial();
    if (s.c == 1) {
      std::memcpy(out, in, s.elements() * sizeof(float));
      return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < s.n; ++n)
      for (std::int64_t v = 0; v < std::int64_t(S); ++v)
        for (int c = 0; c < s.c; ++c)
          out[(std::size_t(n) * s.c + c) * S + std::size_t(v)] =
              in[(n * S + std::size_t(v)) * std::size_t(s.c) + std::size_t(c)];
  }

  void forward_op(Plan& plan, int index) {
    const Op& op = net.ops()[std::size_t(index)];
    const Shape is = plan.shapes[std::size_t(op.inputs[0])], os = plan.shapes[std::size_t(index)];
    const float* x = plan.value(op.inputs[0]);
    float* y = plan.value(index);
    const std::size_t count = os.elements();
    switch (op.kind) {
      case OpKind::Input:
        break;
      case OpKind::Conv: {
        ConvPlan& c = plan.convs.at(index);
        std::unordered_map<int, memory> args{
            {DNNL_ARG_SRC, c.src}, {DNNL_ARG_WEIGHTS, c.weights}, {DNNL_ARG_DST, c.dst}};
        if (mode == Mode::Inference || op.bias) {
          auto& b = mode == Mode::Inference ? conv_bias.at(index) : params.at(op.name + ".bias").values;
          c.bias.set_data_handle(b.data());
          args.emplace(DNNL_ARG_BIAS, c.bias);
        }
        c.fwd.execute(stream, args);
        break;
      }
      case OpKind::ConvTranspose:
        conv_transpose_forward(plan, op, is, os, x, y);
        break;
      case OpKind::BatchNorm:
        batch_norm_forward(plan, index, op, is, x, y);
        break;
      case OpKind::ReLU:
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < std::int64_t(count); ++i) y[i] = std::max(x[i], 0.0f);
        break;
      case OpKind::Sigmoid:
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < std::int64_t(count); ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
        break;
      case OpKind::Add: {
        const float* b = plan.value(op.inputs[1]);
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < std::int64_t(count); ++i) y[i] = x[i] + b[i];
        break;
      }
      case OpKind::MaxPool:
        max_pool_forward(plan, index, op, is, os, x, y);
        break;
      case OpKind::Concat: {
        const float* b = plan.value(op.inputs[1]);
        const std::size_t ca = std::size_t(is.c), cb = std::size_t(os.c) - ca, rows = os.n * os.spatial();
#pragma omp parallel for schedule(static)
        for (std::int64_t r = 0; r < std::int64_t(rows); ++r) {
          std::memcpy(y + std::size_t(r) * (ca + cb), x + std::size_t(r) * ca, ca * sizeof(float));
          std::memcpy(y + std::size_t(r) * (ca + cb) + ca, b + std::size_t(r) * cb, cb * sizeof(float));
        }
        break;
      }
      case OpKind::Crop:
      case OpKind::ZeroPad: {
        // Copies z-rows between the small and the large tensor; ZeroPad clears its border first.
        const bool crop = op.kind == OpKind::Crop;
        const Shape small = crop ? os : is, large = crop ? is : os;
        if (!crop) std::memset(y, 0, count * sizeof(float));
        const std::size_t len = std::size_t(small.z) * std::size_t(small.c);
#pragma omp parallel for collapse(3) schedule(static)
        for (int n = 0; n < small.n; ++n)
          for (int a = 0; a < small.x; ++a)
            for (int b = 0; b < small.y; ++b) {
              const std::size_t s_off = row(small, n, a, b, 0);
              const std::size_t l_off = row(large, n, a + op.pad_lo[0], b + op.pad_lo[1], op.pad_lo[2]);
              if (crop)
                std::memcpy(y + s_off, x + l_off, len * sizeof(float));
              else
                std::memcpy(y + l_off, x + s_off, len * sizeof(float));
            }
        break;
      }
      case OpKind::Dense:
        dense_forward(plan, op, is, os, x, y);
        break;
    }
  }

  // Transposed convolution with kernel <= stride: each input voxel writes its own kernel-sized output block,
  // so the op is one GEMM [rows, c_in] x [c_in, taps * c_out] and a scatter; voxels no tap reaches get the
  // bias.
  std::vector<float> transposed_weights(const Op& op, int c_in) const {
    const auto& w = p(op, ".weight");  // [c_in, c_out, taps]
    const std::size_t taps = std::size_t(op.kernel[0] * op.kernel[1] * op.kernel[2]),
                      co = std::size_t(op.channels);
    std::vector<float> bt(w.size());
    for (std::size_t ci = 0; ci < std::size_t(c_in); ++ci)
      for (std::size_t o = 0; o < co; ++o)
        for (std::size_t t = 0; t < taps; ++t) bt[ci * taps * co + t * co + o] = w[(ci * co + o) * taps + t];
    return bt;
  }

  template <class F>
  static void for_each_tap(const Op& op, const Shape& is, F&& f) {
    const int kx = op.kernel[0], ky = op.kernel[1], kz = op.kernel[2];
#pragma omp parallel for collapse(3) schedule(static)
    for (int n = 0; n < is.n; ++n)
      for (int X = 0; X < is.x; ++X)
        for (int Y = 0; Y < is.y; ++Y)
          for (int Z = 0; Z < is.z; ++Z)
            for (int i = 0; i < kx; ++i)
              for (int j = 0; j < ky; ++j)
                for (int l = 0; l < kz; ++l)
                  f(row(is, n, X, Y, Z) / std::size_t(is.c), (i * ky + j) * kz + l, n, X * op.stride[0] + i,
                    Y * op.stride[1] + j, Z * op.stride[2] + l);
  }

  void conv_transpose_forward(Plan& plan, const Op& op, const Shape& is, const Shape& os, const float* x,
                              float* y) {
    const std::size_t taps = std::size_t(op.kernel[0] * op.kernel[1] * op.kernel[2]),
                      co = std::size_t(op.channels);
    const std::vector<float> bt = transposed_weights(op, is.c);
    const std::size_t rows = is.n * is.spatial();
    float* c = plan.scratch.data();
    sgemm('N', 'N', std::int64_t(rows), std::int64_t(taps * co), is.c, x, is.c, bt.data(),
          std::int64_t(taps * co), 0.0f, c, std::int64_t(taps * co));
    const std::vector<float> bias = op.bias ? p(op, ".bias") : std::vector<float>(co, 0.0f);
    const bool covers_all = op.pad_hi == Triple{0, 0, 0} && op.kernel == op.stride;
    if (!covers_all) {
#pragma omp parallel for schedule(static)
      for (std::int64_t r = 0; r < std::int64_t(os.n * os.spatial()); ++r)
        std::memcpy(y + std::size_t(r) * co, bias.data(), co * sizeof(float));
    }
    for_each_tap(op, is, [&](std::size_t r, int t, int n, int a, int b, int z) {
      float* dst = y + row(os, n, a, b, z);
      const float* src = c + (r * taps + std::size_t(t)) * co;
      for (std::size_t o = 0; o < co; ++o) dst[o] = src[o] + bias[o];
    });
  }

  void batch_norm_forward(Plan& plan, int index, const Op& op, const Shape& s, const float* x, float* y) {
    const std::size_t rows = s.n * s.spatial(), C = std::size_t(s.c);
    const auto &gamma = p(op, ".weight"), &beta = p(op, ".bias");
    std::vector<float> scale(C), shift(C);
    const double eps = net.batch_norm_settings.epsilon;
    if (mode == Mode::Training) {
      // Two passes (mean, then centred squares) in double: the one-pass formula loses digits when |mean| >>
      // std.
      std::vector<double> mean =
          channel_sums(rows, s.c, [&](std::size_t r, int c) { return double(x[r * C + std::size_t(c)]); });
      for (auto& m : mean) m /= double(rows);
      std::vector<double> var = channel_sums(rows, s.c, [&](std::size_t r, int c) {
        const double d = x[r * C + std::size_t(c)] - mean[std::size_t(c)];
        return d * d;
      });
      auto& stats = plan.stats[index];
      stats.first.resize(C), stats.second.resize(C);
      auto& rm = params.at(op.name + ".running_mean").values;
      auto& rv = params.at(op.name + ".running_var").values;
      const double m = net.batch_norm_settings.momentum;
      for (std::size_t c = 0; c < C; ++c) {
        var[c] /= double(rows);
        const double inv_std = 1.0 / std::sqrt(var[c] + eps);
        stats.first[c] = float(mean[c]), stats.second[c] = float(inv_std);
        scale[c] = float(gamma[c] * inv_std);
        shift[c] = float(beta[c] - mean[c] * gamma[c] * inv_std);
        rm[c] = float((1 - m) * rm[c] + m * mean[c]);
        rv[c] = float((1 - m) * rv[c] + m * var[c]);
      }
    } else {
      const auto &rm = p(op, ".running_mean"), &rv = p(op, ".running_var");
      for (std::size_t c = 0; c < C; ++c) {
        const double inv_std = 1.0 / std::sqrt(double(rv[c]) + eps);
        scale[c] = float(gamma[c] * inv_std);
        shift[c] = float(beta[c] - rm[c] * gamma[c] * inv_std);
      }
    }
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < std::int64_t(rows); ++r)
      for (std::size_t c = 0; c < C; ++c)
        y[std::size_t(r) * C + c] = x[std::size_t(r) * C + c] * scale[c] + shift[c];
  }

  void max_pool_forward(Plan& plan, int index, const Op& op, const Shape& is, const Shape& os, const float* x,
                        float* y) {
    auto& arg = plan.argmax.at(index);
    const std::size_t C = std::size_t(os.c);
    const int kx = op.kernel[0], ky = op.kernel[1], kz = op.kernel[2];
#pragma omp parallel for collapse(3) schedule(static)
    for (int n = 0; n < os.n; ++n)
      for (int X = 0; X < os.x; ++X)
        for (int Y = 0; Y < os.y; ++Y)
          for (int Z = 0; Z < os.z; ++Z) {
            float* out = y + row(os, n, X, Y, Z);
            std::uint8_t* a = arg.data() + row(os, n, X, Y, Z);
            int t = 0;
            for (int i = 0; i < kx; ++i)
              for (int j = 0; j < ky; ++j)
                for (int l = 0; l < kz; ++l, ++t) {
                  const float* in =
                      x + row(is, n, X * op.stride[0] + i, Y * op.stride[1] + j, Z * op.stride[2] + l);
                  for (std::size_t c = 0; c < C; ++c)
                    if (t == 0 || in[c] > out[c]) out[c] = in[c], a[c] = std::uint8_t(t);
                }
          }
  }

  // Dense: the weight's input axis is in the logical order (c, x, y, z); permuted here to channels-last.
  std::vector<float> dense_weights(const Op& op, const Shape& is) const {
    const auto& w = p(op, ".weight");
    const std::size_t F = is.per_sample(), S = is.spatial(), C = std::size_t(is.c);
    std::vector<float> wcl(w.size());
    for (std::size_t o = 0; o < std::size_t(op.channels); ++o)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t v = 0; v < S; ++v) wcl[o * F + v * C + c] = w[o * F + c * S + v];
    return wcl;
  }

  void dense_forward(Plan&, const Op& op, const Shape& is, const Shape& os, const float* x, float* y) {
    const std::vector<float> wcl = dense_weights(op, is);
    const std::int64_t F = std::int64_t(is.per_sample()), O = op.channels;
    sgemm('N', 'T', is.n, O, F, x, F, wcl.data(), F, 0.0f, y, O);
    if (op.bias)
      for (int n = 0; n < is.n; ++n)
        for (std::int64_t o = 0; o < O; ++o) y[n * O + o] += p(op, ".bias")[std::size_t(o)];
  }

  // ---- backward -----------------------------------------------------------------------------------------
  void backward(const float* grad_output, float* grad_input) {
    require(mode == Mode::Training, "CPU network: backward needs a network built in training mode");
    require(last != nullptr, "CPU network: backward called before forward");
    Plan& plan = *last;
    const auto& ops = net.ops();
    const FlushDenormals flush;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      auto& g = plan.grads[i];
#pragma omp parallel for schedule(static)
      for (std::int64_t k = 0; k < std::int64_t(g.size()); ++k) g[std::size_t(k)] = 0.0f;
      plan.touched[i] = 0;
    }
    grads.clear();
    for (const auto& spec : net.parameter_specs())
      if (spec.trainable) grads[spec.name].assign(product(spec.shape), 0.0f);
    const int out = net.output();
    to_channels_last(grad_output, plan.grads[std::size_t(out)].data(), plan.shapes[std::size_t(out)]);
    plan.touched[std::size_t(out)] = 1;
    // Gradients of the input are only needed when asked for.
    std::vector<char> needed(ops.size(), 0);
    for (std::size_t i = 1; i < ops.size(); ++i) needed[i] = 1;
    needed[0] = grad_input != nullptr;
    try {
      for (std::size_t i = ops.size(); i-- > 1;) {
        const auto t0 = std::chrono::steady_clock::now();
        backward_op(plan, int(i), needed);
        if (profile) report(int(i), "backward", t0);
      }
      stream.wait();
    } catch (const dnnl::error& e) {
      rethrow(e, "back-propagating through the network");
    }
    if (grad_input) from_channels_last(plan.grads[0].data(), grad_input, plan.shapes[0]);
  }

  void backward_op(Plan& plan, int index, const std::vector<char>& needed) {
    const Op& op = net.ops()[std::size_t(index)];
    const int a = op.inputs[0];
    const Shape is = plan.shapes[std::size_t(a)], os = plan.shapes[std::size_t(index)];
    const float* x = plan.value(a);
    const float* y = plan.value(index);
    const float* dy = plan.grads[std::size_t(index)].data();
    float* dx = plan.grads[std::size_t(a)].data();
    const bool need_dx = needed[std::size_t(a)];
    const std::size_t count = os.elements();
    switch (op.kind) {
      case OpKind::Input:
        break;
      case OpKind::Conv: {
        ConvPlan& c = plan.convs.at(index);
        c.diff_dst.set_data_handle(const_cast<float*>(dy));
        if (need_dx) {
          // oneDNN overwrites diff_src: write straight into a fresh gradient, through scratch otherwise.
          const bool fresh = !plan.touched[std::size_t(a)];
          c.diff_src.set_data_handle(fresh ? dx : plan.scratch.data());
          c.bwd_data.execute(stream, {{DNNL_ARG_DIFF_DST, c.diff_dst},
                                      {DNNL_ARG_WEIGHTS, c.data_weights},
                                      {DNNL_ARG_DIFF_SRC, c.diff_src}});
          if (!fresh) {
            stream.wait();
            const float* s = plan.scratch.data();
#pragma omp parallel for schedule(static)
            for (std::int64_t i = 0; i < std::int64_t(is.elements()); ++i) dx[i] += s[i];
          }
        }
        std::unordered_map<int, memory> args{
            {DNNL_ARG_SRC, c.src}, {DNNL_ARG_DIFF_DST, c.diff_dst}, {DNNL_ARG_DIFF_WEIGHTS, c.diff_weights}};
        if (op.bias) {
          c.diff_bias.set_data_handle(grads.at(op.name + ".bias").data());
          args.emplace(DNNL_ARG_DIFF_BIAS, c.diff_bias);
        }
        c.bwd_weights.execute(stream, args);
        memory user(
            memory::desc({op.channels, is.c, op.kernel[0], op.kernel[1], op.kernel[2]}, f32, tag::oidhw),
            engine, grads.at(op.name + ".weight").data());
        dnnl::reorder(c.diff_weights, user).execute(stream, c.diff_weights, user);
        stream.wait();
        break;
      }
      case OpKind::ConvTranspose: {
        const std::size_t taps = std::size_t(op.kernel[0] * op.kernel[1] * op.kernel[2]),
                          co = std::size_t(op.channels);
        const std::size_t rows = is.n * is.spatial(), ci = std::size_t(is.c);
        float* dc = plan.scratch.data();
        for_each_tap(op, is, [&](std::size_t r, int t, int n, int aa, int b, int z) {
          std::memcpy(dc + (r * taps + std::size_t(t)) * co, dy + row(os, n, aa, b, z), co * sizeof(float));
        });
        const std::vector<float> bt = transposed_weights(op, is.c);
        if (need_dx)
          sgemm('N', 'T', std::int64_t(rows), std::int64_t(ci), std::int64_t(taps * co), dc,
                std::int64_t(taps * co), bt.data(), std::int64_t(taps * co), 1.0f, dx, std::int64_t(ci));
        std::vector<float> dbt(ci * taps * co);
        sgemm('T', 'N', std::int64_t(ci), std::int64_t(taps * co), std::int64_t(rows), x, std::int64_t(ci),
              dc, std::int64_t(taps * co), 0.0f, dbt.data(), std::int64_t(taps * co));
        auto& dw = grads.at(op.name + ".weight");
        for (std::size_t c = 0; c < ci; ++c)
          for (std::size_t o = 0; o < co; ++o)
            for (std::size_t t = 0; t < taps; ++t)
              dw[(c * co + o) * taps + t] = dbt[c * taps * co + t * co + o];
        if (op.bias) {
          const auto sums = channel_sums(os.n * os.spatial(), os.c, [&](std::size_t r, int o) {
            return double(dy[r * co + std::size_t(o)]);
          });
          auto& db = grads.at(op.name + ".bias");
          for (std::size_t o = 0; o < co; ++o) db[o] = float(sums[o]);
        }
        break;
      }
      case OpKind::BatchNorm: {
        const std::size_t rows = is.n * is.spatial(), C = std::size_t(is.c);
        // Plain references, not a structured binding: lambdas and OpenMP regions below use them, which
        // clang before 16 refuses for bindings (the sanitizer and fuzz builds use clang 14).
        const auto& stats = plan.stats.at(index);
        const std::vector<float>& mean = stats.first;
        const std::vector<float>& inv_std = stats.second;
        const auto& gamma = p(op, ".weight");
        const auto sum_dy = channel_sums(
            rows, is.c, [&](std::size_t r, int c) { return double(dy[r * C + std::size_t(c)]); });
        const auto sum_dy_xhat = channel_sums(rows, is.c, [&](std::size_t r, int c) {
          const std::size_t k = std::size_t(c);
          return double(dy[r * C + k]) * (double(x[r * C + k]) - mean[k]) * inv_std[k];
        });
        auto &dgamma = grads.at(op.name + ".weight"), &dbeta = grads.at(op.name + ".bias");
        // dx = gamma inv_std (dy - mean(dy) - xhat mean(dy xhat)), with xhat = (x - mean) inv_std formed
        // first: expanding it into a x + b would cancel catastrophically in float when |mean| >> std.
        std::vector<float> scale(C), mean_dy(C), mean_dy_xhat(C);
        for (std::size_t c = 0; c < C; ++c) {
          dgamma[c] = float(sum_dy_xhat[c]), dbeta[c] = float(sum_dy[c]);
          scale[c] = float(gamma[c] * inv_std[c]);
          mean_dy[c] = float(sum_dy[c] / double(rows));
          mean_dy_xhat[c] = float(sum_dy_xhat[c] / double(rows));
        }
        if (need_dx) {
#pragma omp parallel for schedule(static)
          for (std::int64_t r = 0; r < std::int64_t(rows); ++r)
            for (std::size_t c = 0; c < C; ++c) {
              const std::size_t i = std::size_t(r) * C + c;
              const float xhat = (x[i] - mean[c]) * inv_std[c];
              dx[i] += scale[c] * (dy[i] - mean_dy[c] - xhat * mean_dy_xhat[c]);
            }
        }
        break;
      }
      case OpKind::ReLU:
        if (need_dx) {
#pragma omp parallel for schedule(static)
          for (std::int64_t i = 0; i < std::int64_t(count); ++i) dx[i] += x[i] > 0 ? dy[i] : 0.0f;
        }
        break;
      case OpKind::Sigmoid:
        if (need_dx) {
#pragma omp parallel for schedule(static)
          for (std::int64_t i = 0; i < std::int64_t(count); ++i) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        }
        break;
      case OpKind::Add: {
        float* db = plan.grads[std::size_t(op.inputs[1])].data();
        const bool need_db = needed[std::size_t(op.inputs[1])];
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < std::int64_t(count); ++i) {
          if (need_dx) dx[i] += dy[i];
          if (need_db) db[i] += dy[i];
        }
        plan.touched[std::size_t(op.inputs[1])] |= char(need_db);
        break;
      }
      case OpKind::MaxPool: {
        if (!need_dx) break;
        const auto& arg = plan.argmax.at(index);
        const std::size_t C = std::size_t(os.c);
        const int ky = op.kernel[1], kz = op.kernel[2];
        // Pooling windows do not overlap when kernel == stride (the builders' only use), so the scatter is
        // race-free per output voxel; overlapping windows run serially.
        const bool disjoint = op.kernel == op.stride;
#pragma omp parallel for collapse(2) schedule(static) if (disjoint)
        for (int n = 0; n < os.n; ++n)
          for (int X = 0; X < os.x; ++X)
            for (int Y = 0; Y < os.y; ++Y)
              for (int Z = 0; Z < os.z; ++Z) {
                const std::size_t o = row(os, n, X, Y, Z);
                for (std::size_t c = 0; c < C; ++c) {
                  const int t = arg[o + c], i = t / (ky * kz), j = (t / kz) % ky, l = t % kz;
                  dx[row(is, n, X * op.stride[0] + i, Y * op.stride[1] + j, Z * op.stride[2] + l) + c] +=
                      dy[o + c];
                }
              }
        break;
      }
      case OpKind::Concat: {
        float* db = plan.grads[std::size_t(op.inputs[1])].data();
        const bool need_db = needed[std::size_t(op.inputs[1])];
        const std::size_t ca = std::size_t(is.c), cb = std::size_t(os.c) - ca, rows = os.n * os.spatial();
#pragma omp parallel for schedule(static)
        for (std::int64_t r = 0; r < std::int64_t(rows); ++r) {
          const float* g = dy + std::size_t(r) * (ca + cb);
          if (need_dx)
            for (std::size_t c = 0; c < ca; ++c) dx[std::size_t(r) * ca + c] += g[c];
          if (need_db)
            for (std::size_t c = 0; c < cb; ++c) db[std::size_t(r) * cb + c] += g[ca + c];
        }
        plan.touched[std::size_t(op.inputs[1])] |= char(need_db);
        break;
      }
      case OpKind::Crop:
      case OpKind::ZeroPad: {
        if (!need_dx) break;
        const bool crop = op.kind == OpKind::Crop;
        const Shape small = crop ? os : is, large = crop ? is : os;
        const std::size_t len = std::size_t(small.z) * std::size_t(small.c);
#pragma omp parallel for collapse(3) schedule(static)
        for (int n = 0; n < small.n; ++n)
          for (int i = 0; i < small.x; ++i)
            for (int j = 0; j < small.y; ++j) {
              const std::size_t s_off = row(small, n, i, j, 0);
              const std::size_t l_off = row(large, n, i + op.pad_lo[0], j + op.pad_lo[1], op.pad_lo[2]);
              float* d = dx + (crop ? l_off : s_off);
              const float* g = dy + (crop ? s_off : l_off);
              for (std::size_t k = 0; k < len; ++k) d[k] += g[k];
            }
        break;
      }
      case OpKind::Dense: {
        const std::vector<float> wcl = dense_weights(op, is);
        const std::int64_t F = std::int64_t(is.per_sample()), O = op.channels;
        if (need_dx) sgemm('N', 'N', is.n, F, O, dy, O, wcl.data(), F, 1.0f, dx, F);
        std::vector<float> dwcl(std::size_t(O * F));
        sgemm('T', 'N', O, F, is.n, dy, O, x, F, 0.0f, dwcl.data(), F);
        auto& dw = grads.at(op.name + ".weight");
        const std::size_t S = is.spatial(), C = std::size_t(is.c);
        for (std::size_t o = 0; o < std::size_t(O); ++o)
          for (std::size_t c = 0; c < C; ++c)
            for (std::size_t v = 0; v < S; ++v)
              dw[o * std::size_t(F) + c * S + v] = dwcl[o * std::size_t(F) + v * C + c];
        if (op.bias) {
          auto& db = grads.at(op.name + ".bias");
          for (int n = 0; n < is.n; ++n)
            for (std::int64_t o = 0; o < O; ++o) db[std::size_t(o)] += dy[n * O + o];
        }
        break;
      }
    }
    if (need_dx) plan.touched[std::size_t(a)] = 1;
  }
};

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

// Private to models/nn/cpu/: the CPU backend's state and per-batch plans,
// shared by network.cpp (planning, parameters and the public calls),
// forward.cpp and backward.cpp.
#pragma once

#include <omp.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "models/nn/cpu/network.hpp"
#include "models/nn/lowering.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {
namespace cpu_detail {

using dnnl::memory;
using tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

inline memory::dims dims_of(const Shape& s) { return {s.n, s.c, s.x, s.y, s.z}; }
inline memory::dims dims_of(const Triple& t) { return {t[0], t[1], t[2]}; }

// oneDNN failures are engine bugs or exhausted memory, never bad user input.
[[noreturn]] inline void rethrow(const dnnl::error& e, const std::string& what) {
  throw Error(fmt::format("oneDNN failed while {}: {} (status {})", what, e.what(), int(e.status)));
}

inline void sgemm(char ta, char tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                  std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                  std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  const dnnl_status_t status = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success) throw Error(fmt::format("oneDNN sgemm failed (status {})", int(status)));
}

// Offset of voxel (n, x, y, z) in a channels-last buffer of shape s (row of s.c
// floats).
inline std::size_t row(const Shape& s, int n, int x, int y, int z) {
  return ((((std::size_t(n) * s.x + x) * s.y + y) * s.z + z)) * std::size_t(s.c);
}

inline std::size_t product(const std::vector<int>& shape) {
  std::size_t e = 1;
  for (int d : shape) e *= std::size_t(d);
  return e;
}

// Per-channel sums over all rows of a channels-last tensor, in double (batch
// statistics over ~1e6 values). Each thread sums a static block of rows; the
// partial sums are then added in thread order, so the result has the same bits
// on every run with the same thread count (training reproducibility; a critical
// section would add them in arrival order).
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

// Flush-to-zero and denormals-are-zero on the calling thread and the OpenMP
// pool for the lifetime of the guard. Backward passes through training-mode
// batch norm produce gradients that shrink towards the float denormal range
// (< 1.2e-38), where x86 arithmetic is ~100x slower: a U-Net training step
// measured 20x slower without this. Values that small are below any meaningful
// contribution; PyTorch offers the same switch (torch.set_flush_denormal). The
// previous state is restored, so other code (the physics operators) is
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
  std::vector<Shape> shapes;   // per value, batch n
  std::vector<int> buffer_of;  // per value: index into buffers (fused values
                               // share their convolution's buffer)
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
}  // namespace cpu_detail

// Private header: the helpers are the Impl's vocabulary.
using namespace cpu_detail;

struct CpuNetwork::Impl {
  using Plan = cpu_detail::Plan;
  using ConvPlan = cpu_detail::ConvPlan;

  Network net;
  Mode mode;
  Parameters params;
  std::map<std::string, std::vector<float>> grads;
  // Training mode's predict: an inference copy with buffers and batch-norm
  // coefficients of its own, so that a predict between forward and backward
  // cannot touch what backward reads.
  InferenceMirror predict_copy;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};

  // Inference fusion: absorbed[op] when a batch norm / activation is computed
  // inside its convolution; root[value] is the op whose buffer holds the value;
  // post[conv] the fused activation.
  std::vector<Step> steps;
  std::vector<char> absorbed;
  std::vector<int> root;
  std::map<int, dnnl::algorithm> post;
  std::map<int, std::vector<float>> conv_weights,
      conv_bias;  // per conv op, effective (folded) parameters
  std::uint64_t version = 0;

  PlanCache<Plan> plans{2};
  Plan* last = nullptr;
  // NFMIMO_NN_PROFILE=1 prints each op's time and oneDNN implementation to
  // stderr (for the benchmark).
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

  Impl(Network network, const Parameters& parameters, Mode m);

  const std::vector<float>& p(const Op& op, const char* suffix) const {
    return params.at(op.name + suffix).values;
  }

  // The shared lowering's inference fusions (the CPU's training kernels fuse
  // nothing): absorbed[op] when an op is computed inside its chain's
  // convolution, root[value] the op whose buffer holds the value, post[conv]
  // the fused activation.
  void plan_fusion();

  // Effective convolution parameters: a batch norm folded into its convolution
  // gives w' = w gamma / sqrt(var + eps), b' = (b - mean) gamma / sqrt(var +
  // eps) + beta (per output channel).
  void fold_parameters();

  // At most two plans: a chunked run uses the full batch and one remainder.
  Plan& plan_for(int n);

  std::unique_ptr<Plan> build_plan(int n);

  // Inference reuses a buffer once every reader of the values in it has run;
  // training keeps one per value (backward reads them all).
  void assign_buffers(Plan& plan);

  void build_conv(Plan& plan, int index);

  // Reorders the (effective) convolution weights into the primitives' formats
  // when they changed.
  void upload_weights(Plan& plan);

  // ---- forward
  // ------------------------------------------------------------------------------------------
  void forward(const float* input, float* output, int n);

  static void to_channels_last(const float* in, float* out, const Shape& s);

  static void from_channels_last(const float* in, float* out, const Shape& s);

  void forward_op(Plan& plan, int index);

  // Transposed convolution with kernel <= stride: each input voxel writes its
  // own kernel-sized output block, so the op is one GEMM [rows, c_in] x [c_in,
  // taps * c_out] and a scatter; voxels no tap reaches get the bias.
  std::vector<float> transposed_weights(const Op& op, int c_in) const;

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
                              float* y);

  void batch_norm_forward(Plan& plan, int index, const Op& op, const Shape& s, const float* x, float* y);

  void max_pool_forward(Plan& plan, int index, const Op& op, const Shape& is, const Shape& os, const float* x,
                        float* y);

  // Dense: the weight's input axis is in the logical order (c, x, y, z);
  // permuted here to channels-last.
  std::vector<float> dense_weights(const Op& op, const Shape& is) const;

  void dense_forward(Plan&, const Op& op, const Shape& is, const Shape& os, const float* x, float* y);

  // ---- backward
  // -----------------------------------------------------------------------------------------
  void backward(const float* grad_output, float* grad_input);

  void backward_op(Plan& plan, int index, const std::vector<char>& needed);
};

}  // namespace nfmimo::nn

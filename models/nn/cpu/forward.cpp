// The CPU backend's forward pass, op by op.
#include "models/nn/cpu/network_impl.hpp"

namespace nfmimo::nn {

void CpuNetwork::Impl::forward(const float* input, float* output, int n) {
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

void CpuNetwork::Impl::to_channels_last(const float* in, float* out, const Shape& s) {
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

void CpuNetwork::Impl::from_channels_last(const float* in, float* out, const Shape& s) {
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

void CpuNetwork::Impl::forward_op(Plan& plan, int index) {
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
      // Copies z-rows between the small and the large tensor; ZeroPad clears its
      // border first.
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

std::vector<float> CpuNetwork::Impl::transposed_weights(const Op& op, int c_in) const {
  const auto& w = p(op, ".weight");  // [c_in, c_out, taps]
  const std::size_t taps = std::size_t(op.kernel[0] * op.kernel[1] * op.kernel[2]),
                    co = std::size_t(op.channels);
  std::vector<float> bt(w.size());
  for (std::size_t ci = 0; ci < std::size_t(c_in); ++ci)
    for (std::size_t o = 0; o < co; ++o)
      for (std::size_t t = 0; t < taps; ++t) bt[ci * taps * co + t * co + o] = w[(ci * co + o) * taps + t];
  return bt;
}

void CpuNetwork::Impl::conv_transpose_forward(Plan& plan, const Op& op, const Shape& is, const Shape& os,
                                              const float* x, float* y) {
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

void CpuNetwork::Impl::batch_norm_forward(Plan& plan, int index, const Op& op, const Shape& s, const float* x,
                                          float* y) {
  const std::size_t rows = s.n * s.spatial(), C = std::size_t(s.c);
  const auto &gamma = p(op, ".weight"), &beta = p(op, ".bias");
  std::vector<float> scale(C), shift(C);
  const double eps = net.batch_norm_settings.epsilon;
  if (mode == Mode::Training) {
    // Two passes (mean, then centred squares) in double: the one-pass formula
    // loses digits when |mean| >> std.
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

void CpuNetwork::Impl::max_pool_forward(Plan& plan, int index, const Op& op, const Shape& is, const Shape& os,
                                        const float* x, float* y) {
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

std::vector<float> CpuNetwork::Impl::dense_weights(const Op& op, const Shape& is) const {
  const auto& w = p(op, ".weight");
  const std::size_t F = is.per_sample(), S = is.spatial(), C = std::size_t(is.c);
  std::vector<float> wcl(w.size());
  for (std::size_t o = 0; o < std::size_t(op.channels); ++o)
    for (std::size_t c = 0; c < C; ++c)
      for (std::size_t v = 0; v < S; ++v) wcl[o * F + v * C + c] = w[o * F + c * S + v];
  return wcl;
}

void CpuNetwork::Impl::dense_forward(Plan&, const Op& op, const Shape& is, const Shape& os, const float* x,
                                     float* y) {
  const std::vector<float> wcl = dense_weights(op, is);
  const std::int64_t F = std::int64_t(is.per_sample()), O = op.channels;
  sgemm('N', 'T', is.n, O, F, x, F, wcl.data(), F, 0.0f, y, O);
  if (op.bias)
    for (int n = 0; n < is.n; ++n)
      for (std::int64_t o = 0; o < O; ++o) y[n * O + o] += p(op, ".bias")[std::size_t(o)];
}

}  // namespace nfmimo::nn

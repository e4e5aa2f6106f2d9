// The CPU backend's backward pass, op by op in reverse order.
#include "models/nn/cpu/network_impl.hpp"

namespace nfmimo::nn {

void CpuNetwork::Impl::backward(const float* grad_output, float* grad_input) {
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

void CpuNetwork::Impl::backward_op(Plan& plan, int index, const std::vector<char>& needed) {
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
        // oneDNN overwrites diff_src: write straight into a fresh gradient,
        // through scratch otherwise.
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
      sgemm('T', 'N', std::int64_t(ci), std::int64_t(taps * co), std::int64_t(rows), x, std::int64_t(ci), dc,
            std::int64_t(taps * co), 0.0f, dbt.data(), std::int64_t(taps * co));
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
      // Plain references, not a structured binding: lambdas and OpenMP regions
      // below use them, which clang before 16 refuses for bindings (the sanitizer
      // and fuzz builds use clang 14).
      const auto& stats = plan.stats.at(index);
      const std::vector<float>& mean = stats.first;
      const std::vector<float>& inv_std = stats.second;
      const auto& gamma = p(op, ".weight");
      const auto sum_dy =
          channel_sums(rows, is.c, [&](std::size_t r, int c) { return double(dy[r * C + std::size_t(c)]); });
      const auto sum_dy_xhat = channel_sums(rows, is.c, [&](std::size_t r, int c) {
        const std::size_t k = std::size_t(c);
        return double(dy[r * C + k]) * (double(x[r * C + k]) - mean[k]) * inv_std[k];
      });
      auto &dgamma = grads.at(op.name + ".weight"), &dbeta = grads.at(op.name + ".bias");
      // dx = gamma inv_std (dy - mean(dy) - xhat mean(dy xhat)), with xhat = (x -
      // mean) inv_std formed first: expanding it into a x + b would cancel
      // catastrophically in float when |mean| >> std.
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
      // Pooling windows do not overlap when kernel == stride (the builders' only
      // use), so the scatter is race-free per output voxel; overlapping windows
      // run serially.
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

}  // namespace nfmimo::nn

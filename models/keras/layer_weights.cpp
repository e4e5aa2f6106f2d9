// Keras weight arrays in our layouts: Conv3D kernel [kx, ky, kz, in, out] -> [out, in, kx, ky, kz],
// Conv3DTranspose [kx, ky, kz, out, in] -> [in, out, kx, ky, kz], BatchNormalization's four vectors.
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/keras/internal.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn::keras {

namespace {

h5::Array<float> read_array(const h5::File& f, const std::string& path, const std::string& layer) {
  try {
    return f.read<float>(path);
  } catch (const InputError& e) {
    throw InputError(fmt::format("layer '{}': {}", layer, e.what()));
  }
}

}  // namespace

// Converts one weighted layer into our parameters of `op` (Conv, ConvTranspose or BatchNorm).
void convert_layer(const h5::File& f, const LayerWeights& w, const Op& op, int in_c, Parameters& out,
                   const std::map<std::string, bool>& bn_flags) {
  const auto at = [&](const std::string& role) {
    return fmt::format("{}: layer '{}' ({} '{}')", f.path(), w.layer, role,
                       w.paths.count(role) ? w.paths.at(role) : "");
  };
  const auto need = [&](const std::string& role) -> h5::Array<float> {
    auto it = w.paths.find(role);
    if (it == w.paths.end())
      throw InputError(fmt::format("{}: layer '{}' has no '{}' array (it holds: {})", f.path(), w.layer, role,
                                   fmt::join(
                                       [&] {
                                         std::vector<std::string> r;
                                         for (const auto& [k, v] : w.paths) r.push_back(k);
                                         return r;
                                       }(),
                                       ", ")));
    return read_array(f, it->second, w.layer);
  };
  const auto check_shape = [&](const h5::Array<float>& a, const std::vector<hsize_t>& want,
                               const std::string& role) {
    if (a.dims != want)
      throw InputError(fmt::format("{}: has shape [{}]; nfmimo's '{}' needs [{}]", at(role),
                                   fmt::join(a.dims, ", "), op.name, fmt::join(want, ", ")));
    for (float v : a.data)
      if (!std::isfinite(v)) throw InputError(fmt::format("{}: holds non-finite values", at(role)));
  };
  const int kx = op.kernel[0], ky = op.kernel[1], kz = op.kernel[2], oc = op.channels;
  if (op.kind == OpKind::Conv || op.kind == OpKind::ConvTranspose) {
    const bool transposed = op.kind == OpKind::ConvTranspose;
    auto kernel = need("kernel");
    // Conv3D [kx, ky, kz, in, out]; Conv3DTranspose [kx, ky, kz, out, in].
    const std::vector<hsize_t> want =
        transposed ? std::vector<hsize_t>{hsize_t(kx), hsize_t(ky), hsize_t(kz), hsize_t(oc), hsize_t(in_c)}
                   : std::vector<hsize_t>{hsize_t(kx), hsize_t(ky), hsize_t(kz), hsize_t(in_c), hsize_t(oc)};
    check_shape(kernel, want, "kernel");
    ParameterTensor weight;
    weight.shape =
        transposed ? std::vector<int>{in_c, oc, kx, ky, kz} : std::vector<int>{oc, in_c, kx, ky, kz};
    weight.values.resize(kernel.data.size());
    for (int a = 0; a < kx; ++a)
      for (int b = 0; b < ky; ++b)
        for (int c = 0; c < kz; ++c)
          for (int i = 0; i < in_c; ++i)
            for (int o = 0; o < oc; ++o) {
              const std::size_t tap = (std::size_t(a) * ky + b) * kz + c;
              const std::size_t ours = transposed ? ((std::size_t(i) * oc + o) * kx * ky * kz + tap)
                                                  : ((std::size_t(o) * in_c + i) * kx * ky * kz + tap);
              const std::size_t theirs = transposed ? (tap * oc + o) * in_c + i : (tap * in_c + i) * oc + o;
              weight.values[ours] = kernel.data[theirs];
            }
    ParameterTensor bias;
    bias.shape = {oc};
    if (w.paths.count("bias")) {
      auto b = need("bias");
      check_shape(b, {hsize_t(oc)}, "bias");
      bias.values = std::move(b.data);
    } else {
      bias.values.assign(std::size_t(oc), 0.0f);  // use_bias=False
    }
    out[op.name + ".weight"] = std::move(weight);
    out[op.name + ".bias"] = std::move(bias);
    return;
  }
  // Batch norm: gamma / beta are absent when scale / center is off (then 1 / 0).
  const int c = in_c;
  const auto vec = [&](const std::string& role, bool present, float fallback) {
    ParameterTensor t;
    t.shape = {c};
    if (present) {
      auto a = need(role);
      check_shape(a, {hsize_t(c)}, role);
      t.values = std::move(a.data);
    } else {
      t.values.assign(std::size_t(c), fallback);
    }
    return t;
  };
  out[op.name + ".weight"] = vec("gamma", bn_flags.at("scale"), 1.0f);
  out[op.name + ".bias"] = vec("beta", bn_flags.at("center"), 0.0f);
  auto mean = vec("moving_mean", true, 0.0f);
  auto var = vec("moving_variance", true, 1.0f);
  for (float v : var.values)
    if (!(v >= 0)) throw InputError(fmt::format("{}: a negative variance", at("moving_variance")));
  mean.trainable = var.trainable = false;
  out[op.name + ".running_mean"] = std::move(mean);
  out[op.name + ".running_var"] = std::move(var);
}

}  // namespace nfmimo::nn::keras

#include "models/nn/reference.hpp"

#include <cmath>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo::nn {

Tensor<double> to_double(const Tensor<float>& t) {
  Tensor<double> d(t.shape);
  for (std::size_t i = 0; i < t.size(); ++i) d.data[i] = t.data[i];
  return d;
}

Tensor<float> to_float(const Tensor<double>& t) {
  Tensor<float> f(t.shape);
  for (std::size_t i = 0; i < t.size(); ++i) f.data[i] = float(t.data[i]);
  return f;
}

ReferenceNetwork::ReferenceNetwork(Network network, const Parameters& parameters)
    : network_(std::move(network)) {
  check_parameters(network_, parameters, "reference network");
  for (const auto& [name, t] : parameters)
    parameters_[name] = std::vector<double>(t.values.begin(), t.values.end());
}

Parameters ReferenceNetwork::export_parameters() const {
  Parameters out;
  for (const auto& spec : network_.parameter_specs()) {
    const auto& v = parameters_.at(spec.name);
    out[spec.name] = ParameterTensor{spec.shape, std::vector<float>(v.begin(), v.end()), spec.trainable};
  }
  return out;
}

const std::vector<double>& ReferenceNetwork::param(const Op& op, const char* suffix) const {
  return parameters_.at(op.name + suffix);
}

namespace {

// Calls f(n, c, x, y, z) for every element of shape s.
template <class F>
void for_each(const Shape& s, F&& f) {
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int x = 0; x < s.x; ++x)
        for (int y = 0; y < s.y; ++y)
          for (int z = 0; z < s.z; ++z) f(n, c, x, y, z);
}

bool inside(const Shape& s, int x, int y, int z) {
  return x >= 0 && x < s.x && y >= 0 && y < s.y && z >= 0 && z < s.z;
}

std::size_t weight_index(const Triple& k, int a, int b, int b_count, int i, int j, int l) {
  return (((std::size_t(a) * b_count + b) * k[0] + i) * k[1] + j) * k[2] + l;
}

}  // namespace

Tensor<double> ReferenceNetwork::forward(const Tensor<double>& input, Mode mode, bool update_running) {
  const int N = input.shape.n;
  require(input.shape == network_.input_shape(N),
          fmt::format("network '{}' expects input {} but got {}", network_.architecture(),
                      to_string(network_.input_shape(N)), to_string(input.shape)));
  mode_ = mode;
  const auto& ops = network_.ops();
  values_.assign(ops.size(), Tensor<double>());
  batch_stats_.clear();
  argmax_.clear();
  values_[0] = input;
  for (std::size_t index = 1; index < ops.size(); ++index) {
    const Op& op = ops[index];
    const Tensor<double>& in = values_[std::size_t(op.inputs[0])];
    const Shape is = in.shape;
    Tensor<double> out(network_.shape(int(index), N));
    const Shape os = out.shape;
    switch (op.kind) {
      case OpKind::Input:
        break;
      case OpKind::Conv: {
        // y[n,o,X,Y,Z] = b[o] + sum_{c,i,j,l} w[o,c,i,j,l] x[n,c, X s + i - pad_lo, ...] (zeros outside).
        const auto& w = param(op, ".weight");
        for_each(os, [&](int n, int o, int X, int Y, int Z) {
          double sum = op.bias ? param(op, ".bias")[std::size_t(o)] : 0.0;
          for (int c = 0; c < is.c; ++c)
            for (int i = 0; i < op.kernel[0]; ++i)
              for (int j = 0; j < op.kernel[1]; ++j)
                for (int l = 0; l < op.kernel[2]; ++l) {
                  const int x = X * op.stride[0] + i - op.pad_lo[0], y = Y * op.stride[1] + j - op.pad_lo[1],
                            z = Z * op.stride[2] + l - op.pad_lo[2];
                  if (inside(is, x, y, z))
                    sum += w[weight_index(op.kernel, o, c, is.c, i, j, l)] * in.at(n, c, x, y, z);
                }
          out.at(n, o, X, Y, Z) = sum;
        });
        break;
      }
      case OpKind::ConvTranspose: {
        // Scatter form: every input voxel adds w[c,o,:,:,:] x[n,c,X,Y,Z] at output (X s + i, Y s + j, Z s +
        // l).
        const auto& w = param(op, ".weight");
        for_each(os, [&](int n, int o, int x, int y, int z) {
          out.at(n, o, x, y, z) = op.bias ? param(op, ".bias")[std::size_t(o)] : 0.0;
        });
        for_each(is, [&](int n, int c, int X, int Y, int Z) {
          for (int o = 0; o < os.c; ++o)
            for (int i = 0; i < op.kernel[0]; ++i)
              for (int j = 0; j < op.kernel[1]; ++j)
                for (int l = 0; l < op.kernel[2]; ++l)
                  out.at(n, o, X * op.stride[0] + i, Y * op.stride[1] + j, Z * op.stride[2] + l) +=
                      w[weight_index(op.kernel, c, o, os.c, i, j, l)] * in.at(n, c, X, Y, Z);
        });
        break;
      }
      case OpKind::BatchNorm: {
        const double eps = network_.batch_norm_settings.epsilon;
        const auto& gamma = param(op, ".weight");
        const auto& beta = param(op, ".bias");
        std::vector<double> mean(std::size_t(is.c), 0.0), var(std::size_t(is.c), 0.0);
        if (mode == Mode::Training) {
          const double count = double(is.n) * double(is.spatial());
          for_each(is,
                   [&](int n, int c, int x, int y, int z) { mean[std::size_t(c)] += in.at(n, c, x, y, z); });
          for (auto& m : mean) m /= count;
          for_each(is, [&](int n, int c, int x, int y, int z) {
            const double d = in.at(n, c, x, y, z) - mean[std::size_t(c)];
            var[std::size_t(c)] += d * d;
          });
          for (auto& v : var) v /= count;  // biased, as used for normalising
          if (update_running) {
            const double m = network_.batch_norm_settings.momentum;
            auto& rm = parameters_.at(op.name + ".running_mean");
            auto& rv = parameters_.at(op.name + ".running_var");
            for (int c = 0; c < is.c; ++c) {
              rm[std::size_t(c)] = (1 - m) * rm[std::size_t(c)] + m * mean[std::size_t(c)];
              rv[std::size_t(c)] = (1 - m) * rv[std::size_t(c)] + m * var[std::size_t(c)];
            }
          }
          batch_stats_[int(index)] = {mean, var};
        } else {
          mean = param(op, ".running_mean");
          var = param(op, ".running_var");
        }
        for_each(is, [&](int n, int c, int x, int y, int z) {
          const std::size_t k = std::size_t(c);
          out.at(n, c, x, y, z) =
              gamma[k] * (in.at(n, c, x, y, z) - mean[k]) / std::sqrt(var[k] + eps) + beta[k];
        });
        break;
      }
      case OpKind::ReLU:
        for (std::size_t i = 0; i < in.size(); ++i) out.data[i] = in.data[i] > 0 ? in.data[i] : 0.0;
        break;
      case OpKind::Sigmoid:
        for (std::size_t i = 0; i < in.size(); ++i) out.data[i] = 1.0 / (1.0 + std::exp(-in.data[i]));
        break;
      case OpKind::MaxPool: {
        auto& arg = argmax_[int(index)];
        arg.assign(out.size(), 0);
        for_each(os, [&](int n, int c, int X, int Y, int Z) {
          double best = -INFINITY;
          std::size_t best_at = 0;
          for (int i = 0; i < op.kernel[0]; ++i)
            for (int j = 0; j < op.kernel[1]; ++j)
              for (int l = 0; l < op.kernel[2]; ++l) {
                const std::size_t at =
                    in.offset(n, c, X * op.stride[0] + i, Y * op.stride[1] + j, Z * op.stride[2] + l);
                if (in.data[at] > best) best = in.data[at], best_at = at;
              }
          out.at(n, c, X, Y, Z) = best;
          arg[out.offset(n, c, X, Y, Z)] = best_at;
        });
        break;
      }
      case OpKind::Concat: {
        const Tensor<double>& b = values_[std::size_t(op.inputs[1])];
        for_each(os, [&](int n, int c, int x, int y, int z) {
          out.at(n, c, x, y, z) = c < is.c ? in.at(n, c, x, y, z) : b.at(n, c - is.c, x, y, z);
        });
        break;
      }
      case OpKind::Add: {
        const Tensor<double>& b = values_[std::size_t(op.inputs[1])];
        for (std::size_t i = 0; i < in.size(); ++i) out.data[i] = in.data[i] + b.data[i];
        break;
      }
      case OpKind::Crop:
        for_each(os, [&](int n, int c, int x, int y, int z) {
          out.at(n, c, x, y, z) = in.at(n, c, x + op.pad_lo[0], y + op.pad_lo[1], z + op.pad_lo[2]);
        });
        break;
      case OpKind::ZeroPad:
        for_each(is, [&](int n, int c, int x, int y, int z) {
          out.at(n, c, x + op.pad_lo[0], y + op.pad_lo[1], z + op.pad_lo[2]) = in.at(n, c, x, y, z);
        });
        break;
      case OpKind::Dense: {
        const auto& w = param(op, ".weight");
        const std::size_t features = is.per_sample();
        for (int n = 0; n < N; ++n)
          for (int o = 0; o < os.c; ++o) {
            double sum = op.bias ? param(op, ".bias")[std::size_t(o)] : 0.0;
            for (std::size_t f = 0; f < features; ++f)
              sum += w[std::size_t(o) * features + f] * in.data[n * features + f];
            out.data[std::size_t(n) * std::size_t(os.c) + std::size_t(o)] = sum;
          }
        break;
      }
    }
    values_[index] = std::move(out);
  }
  return values_[std::size_t(network_.output())];
}

Tensor<double> ReferenceNetwork::backward(const Tensor<double>& grad_output) {
  const auto& ops = network_.ops();
  require(!values_.empty() && values_[0].size() > 0, "reference network: backward called before forward");
  const int N = values_[0].shape.n;
  require(grad_output.shape == network_.output_shape(N),
          "reference network: gradient shape differs from the output");
  std::vector<Tensor<double>> grads(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) grads[i] = Tensor<double>(values_[i].shape);
  grads[std::size_t(network_.output())] = grad_output;
  gradients_.clear();
  for (const auto& spec : network_.parameter_specs())
    if (spec.trainable) gradients_[spec.name].assign(parameters_.at(spec.name).size(), 0.0);

  for (std::size_t index = ops.size(); index-- > 1;) {
    const Op& op = ops[index];
    const Tensor<double>& dy = grads[index];
    const Tensor<double>& in = values_[std::size_t(op.inputs[0])];
    const Tensor<double>& out = values_[index];
    Tensor<double>& dx = grads[std::size_t(op.inputs[0])];
    const Shape is = in.shape, os = out.shape;
    switch (op.kind) {
      case OpKind::Input:
        break;
      case OpKind::Conv: {
        const auto& w = param(op, ".weight");
        auto& dw = gradients_.at(op.name + ".weight");
        for_each(os, [&](int n, int o, int X, int Y, int Z) {
          const double g = dy.at(n, o, X, Y, Z);
          if (op.bias) gradients_.at(op.name + ".bias")[std::size_t(o)] += g;
          for (int c = 0; c < is.c; ++c)
            for (int i = 0; i < op.kernel[0]; ++i)
              for (int j = 0; j < op.kernel[1]; ++j)
                for (int l = 0; l < op.kernel[2]; ++l) {
                  const int x = X * op.stride[0] + i - op.pad_lo[0], y = Y * op.stride[1] + j - op.pad_lo[1],
                            z = Z * op.stride[2] + l - op.pad_lo[2];
                  if (!inside(is, x, y, z)) continue;
                  const std::size_t wi = weight_index(op.kernel, o, c, is.c, i, j, l);
                  dw[wi] += g * in.at(n, c, x, y, z);
                  dx.at(n, c, x, y, z) += g * w[wi];
                }
        });
        break;
      }
      case OpKind::ConvTranspose: {
        const auto& w = param(op, ".weight");
        auto& dw = gradients_.at(op.name + ".weight");
        if (op.bias)
          for_each(os, [&](int n, int o, int x, int y, int z) {
            gradients_.at(op.name + ".bias")[std::size_t(o)] += dy.at(n, o, x, y, z);
          });
        for_each(is, [&](int n, int c, int X, int Y, int Z) {
          for (int o = 0; o < os.c; ++o)
            for (int i = 0; i < op.kernel[0]; ++i)
              for (int j = 0; j < op.kernel[1]; ++j)
                for (int l = 0; l < op.kernel[2]; ++l) {
                  const std::size_t wi = weight_index(op.kernel, c, o, os.c, i, j, l);
                  const double g =
                      dy.at(n, o, X * op.stride[0] + i, Y * op.stride[1] + j, Z * op.stride[2] + l);
                  dw[wi] += g * in.at(n, c, X, Y, Z);
                  dx.at(n, c, X, Y, Z) += g * w[wi];
                }
        });
        break;
      }
      case OpKind::BatchNorm: {
        const double eps = network_.batch_norm_settings.epsilon;
        const auto& gamma = param(op, ".weight");
        auto& dgamma = gradients_.at(op.name + ".weight");
        auto& dbeta = gradients_.at(op.name + ".bias");
        const bool training = mode_ == Mode::Training;
        const auto& mean = training ? batch_stats_.at(int(index)).first : param(op, ".running_mean");
        const auto& var = training ? batch_stats_.at(int(index)).second : param(op, ".running_var");
        const double count = double(is.n) * double(is.spatial());
        std::vector<double> sum_dy(std::size_t(is.c), 0.0), sum_dy_xhat(std::size_t(is.c), 0.0);
        const auto xhat = [&](int n, int c, int x, int y, int z) {
          return (in.at(n, c, x, y, z) - mean[std::size_t(c)]) / std::sqrt(var[std::size_t(c)] + eps);
        };
        for_each(is, [&](int n, int c, int x, int y, int z) {
          sum_dy[std::size_t(c)] += dy.at(n, c, x, y, z);
          sum_dy_xhat[std::size_t(c)] += dy.at(n, c, x, y, z) * xhat(n, c, x, y, z);
        });
        for (int c = 0; c < is.c; ++c)
          dgamma[std::size_t(c)] += sum_dy_xhat[std::size_t(c)],
              dbeta[std::size_t(c)] += sum_dy[std::size_t(c)];
        for_each(is, [&](int n, int c, int x, int y, int z) {
          const std::size_t k = std::size_t(c);
          const double inv_std = 1.0 / std::sqrt(var[k] + eps);
          if (training)
            // Batch statistics depend on every input: dx = gamma inv_std (dy - mean(dy) - xhat mean(dy
            // xhat)).
            dx.at(n, c, x, y, z) +=
                gamma[k] * inv_std *
                (dy.at(n, c, x, y, z) - sum_dy[k] / count - xhat(n, c, x, y, z) * sum_dy_xhat[k] / count);
          else
            dx.at(n, c, x, y, z) += gamma[k] * inv_std * dy.at(n, c, x, y, z);
        });
        break;
      }
      case OpKind::ReLU:
        for (std::size_t i = 0; i < in.size(); ++i) dx.data[i] += in.data[i] > 0 ? dy.data[i] : 0.0;
        break;
      case OpKind::Sigmoid:
        for (std::size_t i = 0; i < in.size(); ++i)
          dx.data[i] += dy.data[i] * out.data[i] * (1.0 - out.data[i]);
        break;
      case OpKind::MaxPool: {
        const auto& arg = argmax_.at(int(index));
        for (std::size_t i = 0; i < dy.size(); ++i) dx.data[arg[i]] += dy.data[i];
        break;
      }
      case OpKind::Concat: {
        Tensor<double>& db = grads[std::size_t(op.inputs[1])];
        for_each(os, [&](int n, int c, int x, int y, int z) {
          if (c < is.c)
            dx.at(n, c, x, y, z) += dy.at(n, c, x, y, z);
          else
            db.at(n, c - is.c, x, y, z) += dy.at(n, c, x, y, z);
        });
        break;
      }
      case OpKind::Add: {
        Tensor<double>& db = grads[std::size_t(op.inputs[1])];
        for (std::size_t i = 0; i < dy.size(); ++i) dx.data[i] += dy.data[i], db.data[i] += dy.data[i];
        break;
      }
      case OpKind::Crop:
        for_each(os, [&](int n, int c, int x, int y, int z) {
          dx.at(n, c, x + op.pad_lo[0], y + op.pad_lo[1], z + op.pad_lo[2]) += dy.at(n, c, x, y, z);
        });
        break;
      case OpKind::ZeroPad:
        for_each(is, [&](int n, int c, int x, int y, int z) {
          dx.at(n, c, x, y, z) += dy.at(n, c, x + op.pad_lo[0], y + op.pad_lo[1], z + op.pad_lo[2]);
        });
        break;
      case OpKind::Dense: {
        const auto& w = param(op, ".weight");
        auto& dw = gradients_.at(op.name + ".weight");
        const std::size_t features = is.per_sample();
        for (int n = 0; n < N; ++n)
          for (int o = 0; o < os.c; ++o) {
            const double g = dy.data[std::size_t(n) * std::size_t(os.c) + std::size_t(o)];
            if (op.bias) gradients_.at(op.name + ".bias")[std::size_t(o)] += g;
            for (std::size_t f = 0; f < features; ++f) {
              dw[std::size_t(o) * features + f] += g * in.data[n * features + f];
              dx.data[n * features + f] += g * w[std::size_t(o) * features + f];
            }
          }
        break;
      }
    }
  }
  return grads[0];
}

}  // namespace nfmimo::nn

#include "models/nn/op_table.hpp"

#include <algorithm>

#include "radar/error.hpp"

namespace nfmimo::nn {
namespace {

int& axis_of(Shape& s, int a) { return a == 0 ? s.x : a == 1 ? s.y : s.z; }

std::string same_shape(const Op&, const Shape* in, Shape& out) {
  out = in[0];
  return {};
}

std::string infer_conv(const Op& op, const Shape* in, Shape& out) {
  out = in[0];
  for (int a = 0; a < 3; ++a) {
    const int padded = in[0].axis(a) + op.pad_lo[a] + op.pad_hi[a];
    if (padded < op.kernel[a]) return "kernel larger than the padded input " + to_string(in[0]);
    axis_of(out, a) = (padded - op.kernel[a]) / op.stride[a] + 1;
  }
  out.c = op.channels;
  return {};
}

std::string infer_conv_transpose(const Op& op, const Shape* in, Shape& out) {
  out = in[0];
  for (int a = 0; a < 3; ++a) {
    if (op.pad_hi[a] >= op.stride[a] && op.pad_hi[a] > 0) return "output padding must be below the stride";
    axis_of(out, a) = (in[0].axis(a) - 1) * op.stride[a] + op.kernel[a] + op.pad_hi[a];
  }
  out.c = op.channels;
  return {};
}

std::string infer_max_pool(const Op& op, const Shape* in, Shape& out) {
  out = in[0];
  for (int a = 0; a < 3; ++a) {
    if (in[0].axis(a) < op.kernel[a]) return "pooling window larger than the input " + to_string(in[0]);
    axis_of(out, a) = (in[0].axis(a) - op.kernel[a]) / op.stride[a] + 1;
  }
  return {};
}

std::string infer_concat(const Op&, const Shape* in, Shape& out) {
  const Shape &a = in[0], &b = in[1];
  if (b.x != a.x || b.y != a.y || b.z != a.z)
    return "inputs differ in spatial size: " + to_string(a) + " and " + to_string(b);
  out = a;
  out.c += b.c;
  return {};
}

std::string infer_add(const Op&, const Shape* in, Shape& out) {
  if (!(in[1] == in[0])) return "inputs differ in shape: " + to_string(in[0]) + " and " + to_string(in[1]);
  out = in[0];
  return {};
}

std::string infer_crop(const Op& op, const Shape* in, Shape& out) {
  out = in[0];
  for (int a = 0; a < 3; ++a) {
    const int size = in[0].axis(a) - op.pad_lo[a] - op.pad_hi[a];
    if (size <= 0 || op.pad_lo[a] < 0 || op.pad_hi[a] < 0)
      return "crop removes the whole input " + to_string(in[0]);
    axis_of(out, a) = size;
  }
  return {};
}

std::string infer_zero_pad(const Op& op, const Shape* in, Shape& out) {
  out = in[0];
  for (int a = 0; a < 3; ++a) {
    if (op.pad_lo[a] < 0 || op.pad_hi[a] < 0) return "negative padding";
    axis_of(out, a) = in[0].axis(a) + op.pad_lo[a] + op.pad_hi[a];
  }
  return {};
}

std::string infer_dense(const Op& op, const Shape*, Shape& out) {
  out = Shape{1, op.channels, 1, 1, 1};
  return {};
}

void bias_of(const Op& op, std::vector<ParameterSpec>& specs) {
  if (op.bias) specs.push_back({op.name + ".bias", {op.channels}});
}

void conv_parameters(const Op& op, const Shape& in, std::vector<ParameterSpec>& specs) {
  specs.push_back({op.name + ".weight", {op.channels, in.c, op.kernel[0], op.kernel[1], op.kernel[2]}});
  bias_of(op, specs);
}

void conv_transpose_parameters(const Op& op, const Shape& in, std::vector<ParameterSpec>& specs) {
  specs.push_back({op.name + ".weight", {in.c, op.channels, op.kernel[0], op.kernel[1], op.kernel[2]}});
  bias_of(op, specs);
}

void batch_norm_parameters(const Op& op, const Shape& in, std::vector<ParameterSpec>& specs) {
  specs.push_back({op.name + ".weight", {in.c}});
  specs.push_back({op.name + ".bias", {in.c}});
  specs.push_back({op.name + ".running_mean", {in.c}, false});
  specs.push_back({op.name + ".running_var", {in.c}, false});
}

void dense_parameters(const Op& op, const Shape& in, std::vector<ParameterSpec>& specs) {
  specs.push_back({op.name + ".weight", {op.channels, int(in.per_sample())}});
  bias_of(op, specs);
}

}  // namespace

const std::vector<OpInfo>& op_table() {
  // In OpKind order (op_info indexes it by the enum's value).
  static const std::vector<OpInfo> table = {
      {OpKind::Input, "input", 0, nullptr, nullptr},
      {OpKind::Conv, "conv", 1, infer_conv, conv_parameters},
      {OpKind::ConvTranspose, "conv_transpose", 1, infer_conv_transpose, conv_transpose_parameters},
      {OpKind::BatchNorm, "batch_norm", 1, same_shape, batch_norm_parameters},
      {OpKind::ReLU, "relu", 1, same_shape, nullptr},
      {OpKind::Sigmoid, "sigmoid", 1, same_shape, nullptr},
      {OpKind::MaxPool, "max_pool", 1, infer_max_pool, nullptr},
      {OpKind::Concat, "concat", 2, infer_concat, nullptr},
      {OpKind::Crop, "crop", 1, infer_crop, nullptr},
      {OpKind::ZeroPad, "zero_pad", 1, infer_zero_pad, nullptr},
      {OpKind::Add, "add", 2, infer_add, nullptr},
      {OpKind::Dense, "dense", 1, infer_dense, dense_parameters},
  };
  return table;
}

const OpInfo& op_info(OpKind kind) {
  const auto& table = op_table();
  const std::size_t i = std::size_t(kind);
  require(i < table.size() && table[i].kind == kind,
          "op table: no row for op kind " + std::to_string(int(kind)));
  return table[i];
}

}  // namespace nfmimo::nn

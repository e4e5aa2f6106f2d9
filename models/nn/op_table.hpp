// The op table: what every backend needs to know about an op kind apart from how to execute it (its name,
// arity, output shape and parameters), one row per kind. Adding a layer means one row here plus one
// execution function per backend (the double reference, the CPU and the CUDA one).
#pragma once

#include <string>
#include <vector>

#include "models/nn/graph.hpp"

namespace nfmimo::nn {

struct OpInfo {
  OpKind kind;
  const char* name;  // "conv", as in messages and profiles
  int arity;         // number of input values
  // Output shape of one sample from the input shapes (inputs[0..arity)); returns the reason when the op
  // does not fit its inputs, an empty string otherwise.
  std::string (*infer)(const Op& op, const Shape* inputs, Shape& out);
  // Appends the op's parameters ("<op>.weight", ...) given its first input's shape; null when it has none.
  void (*parameters)(const Op& op, const Shape& input, std::vector<ParameterSpec>& specs);
};

// The row of `kind` (every OpKind has one).
const OpInfo& op_info(OpKind kind);
// Every row, in OpKind order.
const std::vector<OpInfo>& op_table();

}  // namespace nfmimo::nn

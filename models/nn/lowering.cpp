#include "models/nn/lowering.hpp"

#include <algorithm>

namespace nfmimo::nn {

std::vector<Step> lower(const Network& network, Mode mode, const FusionRules& rules) {
  const auto& ops = network.ops();
  std::vector<std::vector<int>> users(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i)
    for (int v : ops[i].inputs) users[std::size_t(v)].push_back(int(i));
  // The only reader of value v, or -1 (several readers, or v is the network's output): only then can the op
  // that reads it compute inside the op that writes it.
  const auto only_user = [&](int v) {
    return users[std::size_t(v)].size() == 1 && v != network.output() ? users[std::size_t(v)][0] : -1;
  };
  const auto kind = [&](int i) { return i < 0 ? OpKind::Input : ops[std::size_t(i)].kind; };
  const auto is_activation = [](OpKind k) { return k == OpKind::ReLU || k == OpKind::Sigmoid; };

  std::vector<char> done(ops.size(), 0);
  std::map<int, int> pending_conv_of_bn;
  std::vector<Step> steps;
  for (std::size_t i = 1; i < ops.size(); ++i) {
    if (done[i]) continue;
    const Op& op = ops[i];
    Step s;
    s.kind = op.kind, s.op = int(i), s.inputs = op.inputs, s.chain = {int(i)};
    const auto absorb = [&](int v) { s.chain.push_back(v), done[std::size_t(v)] = 1; };
    if (op.kind == OpKind::Conv) {
      int next = only_user(int(i));
      if (mode == Mode::Inference) {
        if (kind(next) == OpKind::BatchNorm) {
          s.folded_batch_norm = next;
          absorb(next);
          next = only_user(next);
        }
        if (is_activation(kind(next))) {
          s.activation = kind(next);
          absorb(next);
        }
      } else if (kind(next) == OpKind::BatchNorm) {
        if (rules.training_pending_bias) {
          s.pending_bias = op.bias;
          if (op.bias) pending_conv_of_bn[next] = int(i);
        }
      } else if (rules.training_conv_activation && is_activation(kind(next))) {
        s.activation = kind(next), s.pre_activation = int(i);
        absorb(next);
      }
    } else if (op.kind == OpKind::BatchNorm) {
      const int next = only_user(int(i));
      if (rules.batch_norm_relu && kind(next) == OpKind::ReLU) {
        s.batch_norm_relu = true;
        absorb(next);
      }
      if (auto it = pending_conv_of_bn.find(int(i)); it != pending_conv_of_bn.end())
        s.bias_from_conv = it->second;
    }
    s.result = s.chain.back();
    done[i] = 1;
    steps.push_back(std::move(s));
  }
  return steps;
}

BufferAssignment assign_buffers(const Network& network, const std::vector<Step>& steps,
                                const std::function<std::size_t(int value)>& size_of, bool reuse,
                                bool alias_chain) {
  const std::size_t values = network.ops().size();
  BufferAssignment a;
  a.buffer_of.assign(values, -1);
  // Last step reading each value; the output is read after the last step.
  std::vector<int> last_use(values, -1);
  for (std::size_t k = 0; k < steps.size(); ++k)
    for (int v : steps[k].inputs) last_use[std::size_t(v)] = int(k);
  last_use[std::size_t(network.output())] = int(steps.size());

  std::vector<int> free_list;
  const auto take = [&](std::size_t size) {
    int best = -1;
    for (std::size_t f = 0; f < free_list.size(); ++f) {
      const std::size_t have = a.sizes[std::size_t(free_list[f])];
      if (have >= size && (best < 0 || have < a.sizes[std::size_t(free_list[std::size_t(best)])]))
        best = int(f);
    }
    if (best < 0) {
      a.sizes.push_back(size);
      return int(a.sizes.size()) - 1;
    }
    const int b = free_list[std::size_t(best)];
    free_list.erase(free_list.begin() + best);
    return b;
  };
  const auto release = [&](int value) {
    const int b = a.buffer_of[std::size_t(value)];
    if (reuse && std::find(free_list.begin(), free_list.end(), b) == free_list.end()) free_list.push_back(b);
  };

  a.buffer_of[0] = take(size_of(0));
  if (last_use[0] < 0) release(0);
  for (std::size_t k = 0; k < steps.size(); ++k) {
    const Step& s = steps[k];
    // The result's buffer is taken before the inputs are released: a step never writes over what it reads.
    const int b = take(size_of(s.result));
    a.buffer_of[std::size_t(s.result)] = b;
    if (alias_chain)
      for (int v : s.chain) a.buffer_of[std::size_t(v)] = b;
    for (int v : s.inputs)
      if (last_use[std::size_t(v)] == int(k)) release(v);
    if (last_use[std::size_t(s.result)] < 0) release(s.result);
  }
  return a;
}

}  // namespace nfmimo::nn

// The lowering shared by every backend: from a Network graph to the list of steps a backend executes, the
// buffers those steps write (reused once dead), and the cache of per-batch-size plans.
//
// One algorithm, tested once on the CPU (tests/test_lowering.cpp), instead of one copy per backend: the CPU
// (oneDNN) and cuDNN backends differ only in which fusions their training kernels implement (FusionRules).
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <vector>

#include "models/nn/graph.hpp"
#include "models/nn/reference.hpp"

namespace nfmimo::nn {

// Fusions beyond inference's, which every backend runs (a convolution absorbs a following batch norm, folded
// into its weights, and then a following ReLU or sigmoid). Training fusions depend on the backend's kernels.
struct FusionRules {
  // Training: a convolution whose only reader is a ReLU or sigmoid runs both as one step.
  bool training_conv_activation = false;
  // A batch norm that stays a step of its own (training, or not after a convolution) and whose only reader is
  // a ReLU runs both as one pass.
  bool batch_norm_relu = false;
  // Training: a convolution whose only reader is a batch norm leaves its bias to it (the batch mean removes
  // a constant per channel, so the bias changes only the running mean).
  bool training_pending_bias = false;
};

// One executed step: an op, possibly with the ops fused into it.
struct Step {
  OpKind kind = OpKind::Input;        // the kind of `op`
  int op = 0;                         // the op whose attributes and parameters it uses (the first of a chain)
  int result = 0;                     // the value it produces (the last op of a chain)
  std::vector<int> inputs;            // the values it reads (op's inputs)
  std::vector<int> chain;             // the ops it computes, in order: op first, result last
  int folded_batch_norm = -1;         // inference, convolution: the batch norm folded into its weights
  OpKind activation = OpKind::Input;  // convolution: the fused ReLU / Sigmoid (Input: none)
  int pre_activation = -1;            // training, convolution with an activation: the convolution's value
  bool batch_norm_relu = false;       // batch norm with a fused ReLU
  bool pending_bias = false;          // training convolution leaving its bias to the following batch norm
  int bias_from_conv = -1;            // batch norm whose convolution left its bias pending: that convolution
};

// The steps of `network` in execution order (the input op excluded).
std::vector<Step> lower(const Network& network, Mode mode, const FusionRules& rules = {});

// Which buffer holds each value.
struct BufferAssignment {
  std::vector<int> buffer_of;      // per value: buffer index, -1 when the value is never materialised
  std::vector<std::size_t> sizes;  // per buffer: the size asked for (units of size_of)
};

// Buffers for the input and every step's result, of size_of(value). With `reuse` (inference), a buffer is
// reused, best fit, once every reader of its value has run; the network's output is never reused. Without it
// (training: backward reads every activation) each value has its own. Values absorbed into a step get the
// step's buffer when `alias_chain`, none (-1) otherwise.
BufferAssignment assign_buffers(const Network& network, const std::vector<Step>& steps,
                                const std::function<std::size_t(int value)>& size_of, bool reuse,
                                bool alias_chain);

// Plans (whatever a backend prepares for one batch size) by batch size: sizes pinned by the caller (a
// trainer's batch and tail) are kept for the cache's lifetime, at most `max_unpinned` others. Building a
// plan may evict one unpinned plan that the caller does not name in `keep` (the last used one, the one a
// pending backward reads).
template <class Plan>
class PlanCache {
 public:
  explicit PlanCache(std::size_t max_unpinned = 2) : max_unpinned_(max_unpinned) {}

  template <class Build>
  Plan& get(int n, Build&& build, std::initializer_list<const Plan*> keep = {}) {
    auto it = plans_.find(n);
    if (it == plans_.end()) {
      std::size_t unpinned = 0;
      for (const auto& [size, plan] : plans_) unpinned += !pinned_.count(size);
      if (unpinned >= max_unpinned_)
        for (auto e = plans_.begin(); e != plans_.end(); ++e)
          if (!pinned_.count(e->first) &&
              std::find(keep.begin(), keep.end(), e->second.get()) == keep.end()) {
            plans_.erase(e);
            break;
          }
      it = plans_.emplace(n, build(n)).first;
      ++builds_;
    }
    return *it->second;
  }
  void pin(int n) { pinned_[n] = true; }
  Plan* find(int n) const {
    const auto it = plans_.find(n);
    return it == plans_.end() ? nullptr : it->second.get();
  }
  const std::map<int, std::unique_ptr<Plan>>& plans() const { return plans_; }
  std::size_t builds() const { return builds_; }  // plans built so far (tests: a hit builds nothing)

 private:
  std::size_t max_unpinned_;
  std::map<int, std::unique_ptr<Plan>> plans_;
  std::map<int, bool> pinned_;
  std::size_t builds_ = 0;
};

}  // namespace nfmimo::nn

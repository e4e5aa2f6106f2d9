#include "models/transfer.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo::nn {

std::string TransferReport::summary() const {
  return fmt::format(
      "{} tensors copied, {} adapted (centre z-taps, or the magnitude filter on both input "
      "channels), {} fresh",
      copied.size(), adapted.size(), fresh.size());
}

bool can_transfer(const std::string& from, const std::string& to) {
  return from == "unet3d" && (to == "unet2d" || to == "cv-unet3d");
}

namespace {

// [co, ci, kx, ky, kz] -> [co, ci, kx, ky, 1] keeping the z-tap `tap` (index into kz).
std::vector<float> z_tap(const ParameterTensor& t, int tap) {
  const std::size_t outer = std::size_t(t.shape[0]) * t.shape[1] * t.shape[2] * t.shape[3];
  const std::size_t kz = std::size_t(t.shape[4]);
  std::vector<float> out(outer);
  for (std::size_t i = 0; i < outer; ++i) out[i] = t.values[i * kz + std::size_t(tap)];
  return out;
}

// [co, 1, k...] -> [co, n, k...]: the single input channel's filter on each of the n channels.
std::vector<float> repeat_input_channel(const ParameterTensor& t, int n) {
  const std::size_t co = std::size_t(t.shape[0]), k = t.elements() / co;
  std::vector<float> out(co * std::size_t(n) * k);
  for (std::size_t o = 0; o < co; ++o)
    for (int c = 0; c < n; ++c)
      std::copy_n(t.values.begin() + std::ptrdiff_t(o * k), k,
                  out.begin() + std::ptrdiff_t((o * std::size_t(n) + std::size_t(c)) * k));
  return out;
}

}  // namespace

Parameters transfer_parameters(const Model& from, const Network& to, unsigned long long seed,
                               TransferReport* report) {
  require(can_transfer(from.architecture, to.architecture()),
          fmt::format("no transfer start from a {} model to a {} network (supported: unet3d -> unet2d, "
                      "unet3d -> cv-unet3d)",
                      from.architecture, to.architecture()));
  TransferReport r;
  Parameters p = initial_parameters(to, seed);
  std::map<std::string, OpKind> kind_of;
  for (const Op& op : to.ops()) kind_of[op.name] = op.kind;
  for (auto& [name, target] : p) {
    const auto source = from.parameters.find(name);
    if (source == from.parameters.end()) {
      r.fresh.push_back(name);
      continue;
    }
    const ParameterTensor& s = source->second;
    const std::vector<int>& ts = target.shape;
    const std::string op = name.substr(0, name.rfind('.'));
    const bool weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const OpKind kind = kind_of.count(op) ? kind_of.at(op) : OpKind::Input;
    if (s.shape == ts) {
      target.values = s.values;
      r.copied.push_back(name);
    } else if (weight && ts.size() == 5 && s.shape.size() == 5 && ts[4] == 1 && s.shape[4] > 1 &&
               std::equal(ts.begin(), ts.begin() + 4, s.shape.begin())) {
      // Conv: the centre tap (a 3x3x3 filter's middle slice is the 3x3x1 filter on the same slice);
      // ConvTranspose: tap 0, what the 3D up-convolution writes to the even slices.
      const int tap = kind == OpKind::ConvTranspose ? 0 : s.shape[4] / 2;
      target.values = z_tap(s, tap);
      r.adapted.push_back(name);
    } else if (weight && kind == OpKind::Conv && ts.size() == 5 && s.shape.size() == 5 && s.shape[1] == 1 &&
               ts[0] == s.shape[0] && ts[1] > 1 &&
               std::equal(ts.begin() + 2, ts.end(), s.shape.begin() + 2)) {
      target.values = repeat_input_channel(s, ts[1]);
      r.adapted.push_back(name);
    } else {
      r.fresh.push_back(name);
    }
  }
  if (report) *report = r;
  return p;
}

}  // namespace nfmimo::nn

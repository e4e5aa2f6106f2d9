#include "tools/methods.hpp"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo {

const std::vector<MethodEntry>& all_methods() {
  static const std::vector<MethodEntry> table = [] {
    std::vector<MethodEntry> t;
    for (auto family : {analytic_methods, learned_methods, iterative_methods, pnp_methods})
      for (auto& e : family()) t.push_back(std::move(e));
    return t;
  }();
  return table;
}

double parse_param_number(const std::string& method, const std::string& key, const std::string& text) {
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  require(ec == std::errc() && end == text.data() + text.size() && !text.empty(),
          fmt::format("{}: --param {}={} is not a number", method, key, text));
  return v;
}

int parse_param_count(const std::string& method, const std::string& key, const std::string& text) {
  int v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  require(ec == std::errc() && end == text.data() + text.size() && !text.empty(),
          fmt::format("{}: --param {}={} is not a whole number", method, key, text));
  return v;
}

std::string method_names() {
  std::string s;
  for (const auto& e : all_methods()) s += (s.empty() ? "" : ", ") + e.name;
  return s;
}

MethodResult run_method(const std::string& name, const MethodContext& context) {
  for (const auto& e : all_methods())
    if (e.name == name) {
      MethodResult r = e.run(context);
      if (r.magnitude.empty()) {
        r.magnitude.resize(r.complex.size());
        for (std::size_t i = 0; i < r.complex.size(); ++i) r.magnitude[i] = std::abs(r.complex[i]);
      }
      return r;
    }
  throw InputError(fmt::format("unknown method '{}' (known: {})", name, method_names()));
}

bool is_learned_method(const std::string& name) {
  for (const auto& e : learned_methods())
    if (e.name == name) return true;
  return false;
}

bool is_tunable_method(const std::string& name) { return name == "l1" || name == "tv" || name == "pnp"; }

}  // namespace nfmimo

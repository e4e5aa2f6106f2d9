// --param key=value (reconstruct, evaluate, bench): the input is one --param per line, for the method named
// on the first line. Every method's options are parsed and validated before any work starts; the harness
// gives an operator mode no method accepts, so that the run ends at that check instead of reconstructing.
#include <cstddef>
#include <cstdint>
#include <sstream>

#include "radar/system.hpp"
#include "tests/fuzz/fuzz_common.hpp"
#include "tools/evaluation.hpp"
#include "tools/methods.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nfmimo::RadarSystem system = nfmimo::paper_system(2);
  static const nfmimo::ImagingGrid grid(nfmimo::Axis::linspace(-0.1, 0.1, 2),
                                        nfmimo::Axis::linspace(-0.1, 0.1, 2),
                                        nfmimo::Axis::linspace(0.4, 0.5, 2));
  std::stringstream lines(nfmimo::fuzz::text_of(data, size));
  std::string method, line;
  std::getline(lines, method);
  std::map<std::string, std::string> all;
  while (std::getline(lines, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;  // the CLI refuses these before any method sees them
    all[line.substr(0, eq)] = line.substr(eq + 1);
  }
  nfmimo::MethodContext context;
  context.system = &system;
  context.grid = &grid;
  context.frames = 0;
  context.device = nfmimo::DeviceKind::Cpu;
  context.mode = "fuzz";  // refused by every method after its --param checks (see above)
  context.model = "/nonexistent/fuzz-model.h5";
  for (const auto& entry : nfmimo::all_methods()) {
    if (!method.empty() && entry.name != method) continue;
    nfmimo::fuzz::expect_ok_or_refusal([&] {
      context.params = nfmimo::params_for_method(entry.name, all);
      nfmimo::run_method(entry.name, context);
    });
  }
  return 0;
}

// synthesize --config FILE.json (synthesizer/scene.hpp). An accepted configuration must survive the round
// trip through its canonical JSON unchanged (datasets store that text and compare it on resume and merge).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "synthesizer/scene.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text = nfmimo::fuzz::text_of(data, size);
  nfmimo::fuzz::expect_ok_or_refusal([&] {
    const nfmimo::SceneConfig config = nfmimo::parse_scene_config(text, "fuzz.json");
    const std::string canonical = nfmimo::scene_config_json(config);
    const nfmimo::SceneConfig again = nfmimo::parse_scene_config(canonical, "canonical");
    if (nfmimo::scene_config_json(again) != canonical) std::abort();
  });
  return 0;
}

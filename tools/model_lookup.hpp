// The shipped models (models/trained/, docs/models.md) found by what they are for: `reconstruct` and
// `evaluate` with a learned method and no --model use the shipped model whose architecture is the method's
// and whose radar system and imaging grid are the measurements'. None matching is an InputError that lists
// the shipped models and the `train` command for the measurements' system.
#pragma once

#include <string>
#include <vector>

#include "radar/system.hpp"

namespace nfmimo {

// Where the shipped models are: $NFMIMO_MODELS_DIR when set, else the source tree's models/trained.
std::string shipped_models_dir();

struct ShippedModel {
  std::string path;
  std::string architecture, role;
  RadarSystem system;
  ImagingGrid grid;
};
// Every readable weights file (*.h5, checkpoints excluded) in `dir`, by file name; unreadable files are
// skipped (a lookup must not fail because of an unrelated file). A missing folder gives none.
std::vector<ShippedModel> list_shipped_models(const std::string& dir);

// The path of the model for the learned `method` (deep2s, cv-deep2s, ...) of `dir` matching `system` and
// `grid`; InputError otherwise, listing what `dir` holds and how to train a model for this system.
std::string default_model(const std::string& method, const RadarSystem& system, const ImagingGrid& grid,
                          const std::string& dir = shipped_models_dir());

}  // namespace nfmimo

// The learned rows of `nfmimo bench`: the networks alone, the Deep2S-family pipelines and a training step,
// per precision and batch, on the CPU and the GPU (docs/performance.md, "Rows").
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kernels/device.hpp"
#include "radar/physics.hpp"
#include "radar/system.hpp"
#include "tools/bench/harness.hpp"

namespace nfmimo::bench {

struct LearnedBenchOptions {
  std::vector<std::string> networks;    // architectures: unet3d, unet2d, resnet, cv-unet3d
  std::vector<std::string> pipelines;   // deep2s, cv-deep2s, deep2s-unet2d, deep2s-resnet
  std::vector<std::string> training;    // architectures, from "train-<arch>"
  std::vector<std::string> precisions;  // fp32, tf32, fp16, bf16 (the CPU runs fp32 only)
  std::vector<int> batches;
  std::vector<int> train_batches;
  std::vector<ImagingMode> modes;  // physics modes of the pipelines
  int width = 0;                   // network width (0: the paper's)
  std::string model;               // optional weights file for the pipelines and networks (its architecture)
  TimingRules rules;
};

// True when `name` is a learned row name (an architecture, a pipeline or train-<arch>); InputError for names
// that look like neither physics nor learned rows is the caller's job.
bool is_learned_row(const std::string& name);
// Sorts learned names into the option lists.
void add_learned_row(const std::string& name, LearnedBenchOptions& options);

// Measures every requested row on `device` and appends them with their ceilings. `ceilings_for(precision)`
// gives the device's ceiling for that precision's matrix unit.
void run_learned_rows(const RadarSystem& system, const ImagingGrid& grid, DeviceKind device,
                      const LearnedBenchOptions& options,
                      const std::function<Ceilings(const std::string& precision)>& ceilings_for,
                      std::vector<Row>& rows, std::vector<Ceilings>& row_ceilings);

}  // namespace nfmimo::bench

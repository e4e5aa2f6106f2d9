// nfmimo info FILE: what a file holds.
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "radar/error.hpp"
#include "tools/commands.hpp"

namespace nfmimo {
namespace {

std::string shape(const h5::Dims& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

void run(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  const std::string format = f.string_attribute("/", "nfmimo_format").value_or("");
  if (format.empty())
    throw InputError(
        fmt::format("{}: an HDF5 file, but not an nfmimo file (no 'nfmimo_format' attribute)", path));
  std::printf("%s: nfmimo %s file, format version %lld\n", path.c_str(), format.c_str(),
              f.int_attribute("/", "nfmimo_version").value_or(0));
  if (f.has("/system")) std::printf("  system : %s\n", describe(read_system(f)).c_str());
  if (auto g = read_grid(f)) std::printf("  grid   : %s\n", describe(*g).c_str());
  for (const char* name : {"/measurements", "/targets", "/snr_db", "/volumes"})
    if (f.has(name))
      std::printf("  %-13s %s %s\n", name, shape(f.shape(name)).c_str(),
                  f.is_complex(name) ? "complex" : "real");
  for (const char* attr : {"method", "source", "device", "architecture", "generator", "shard"})
    if (auto v = f.string_attribute("/", attr)) std::printf("  %-13s %s\n", attr, v->c_str());
  // Datasets made by `nfmimo synthesize`: how they were made.
  for (const char* attr : {"seed", "count", "first_sample", "complete"})
    if (auto v = f.int_attribute("/", attr)) std::printf("  %-13s %lld\n", attr, *v);
  if (auto v = f.string_attribute("/", "synthesizer_config"))
    std::printf("  %-13s %s\n", "config", v->c_str());
  // Weights files: width and the training record (docs/formats.md); checkpoints say where the run stands.
  for (const char* attr : {"width", "trainable_parameters"})
    if (format == "weights")
      if (auto v = f.int_attribute("/", attr)) std::printf("  %-13s %lld\n", attr, *v);
  if (auto v = f.string_attribute("/", "training")) std::printf("  %-13s %s\n", "training", v->c_str());
  if (f.int_attribute("/", "checkpoint"))
    std::printf("  %-13s a training checkpoint: continue it with `nfmimo train ... --resume`\n",
                "checkpoint");
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand("info", "Show what an nfmimo file holds");
  c->add_option("file", *path, "An nfmimo HDF5 file")->required();
  c->callback([path] { run(*path); });
}

}  // namespace nfmimo

// nfmimo import keras MODEL.h5 --arch A [--system S --freqs K --grid G] --out W
// nfmimo export W --format keras|onnx --out FILE [--batch-norm fold|keep]
// Moving networks between nfmimo and Keras / ONNX Runtime (docs/interop.md).
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "models/keras.hpp"
#include "models/onnx_export.hpp"
#include "radar/error.hpp"
#include "tools/commands.hpp"

namespace nfmimo {
namespace {

struct ImportOptions {
  std::string format, input, arch, system = "paper", grid = "paper", output;
  int freqs = 15;
  bool force = false;
};

void run_import(const ImportOptions& o) {
  require_distinct_paths(o.input, o.output);
  require(o.freqs >= 1, fmt::format("--freqs must be positive (got {})", o.freqs));
  const RadarSystem system = named_system(o.system, o.freqs);
  const ImagingGrid grid = parse_grid(o.grid);
  validate_grid(grid, system, "--grid");
  const nn::KerasImport r = nn::import_keras(o.input, o.arch, system, grid);
  nn::write_model(o.output, r.model, o.force);
  std::printf(
      "%s: %s model (Keras %s, %s), %zu weighted layers -> %s network (width %d%s), batch-norm epsilon "
      "%g\n",
      o.input.c_str(), r.format.c_str(), r.keras_version.c_str(), o.arch.c_str(), r.layer_map.size(),
      o.arch.c_str(), r.model.options.width,
      o.arch == "resnet" ? fmt::format(", {} blocks", r.model.options.blocks).c_str() : "",
      r.model.batch_norm.epsilon);
  std::printf("wrote %s\n", o.output.c_str());
}

struct ExportOptions {
  std::string input, format, output, batch_norm = "fold";
  bool force = false, pipeline = false;
};

void run_export(const ExportOptions& o) {
  require_distinct_paths(o.input, o.output);
  const nn::Model model = nn::read_model(o.input);
  require(!o.pipeline || o.format == "onnx", "--pipeline is an ONNX export (give --format onnx)");
  if (o.format == "keras") {
    if (o.batch_norm != "fold")
      std::fprintf(stderr,
                   "nfmimo: note: --batch-norm applies to ONNX; Keras files keep their batch norms\n");
    nn::export_keras(model, o.output, o.force);
  } else {
    nn::export_onnx(
        model, o.output,
        {.fold_batch_norm = o.batch_norm == "fold", .overwrite = o.force, .pipeline = o.pipeline});
  }
  if (o.pipeline)
    std::printf("wrote %s (onnx, %s pipeline, input measurements [batch, %d, %d, %d, 2])\n", o.output.c_str(),
                model.architecture.c_str(), model.system.frequencies(), model.system.transmitters(),
                model.system.receivers());
  else
    std::printf("wrote %s (%s, %s network, input [batch, %d, %d, %d, %d])\n", o.output.c_str(),
                o.format.c_str(), model.architecture.c_str(), model.network().input_shape().c,
                model.grid.x().size, model.grid.y().size, model.grid.z().size);
}

}  // namespace

void add_interop_commands(CLI::App& app) {
  auto in = std::make_shared<ImportOptions>();
  // `import keras` sits beside the measured-data importers of `import` (tools/cmd_import.cpp), which must be
  // registered first.
  CLI::App* import = app.get_subcommand("import");
  CLI::App* c =
      import->add_subcommand("keras",
                             "Network trained with Keras (the authors' released model_*.h5, or your "
                             "own) as an nfmimo weights file (docs/interop.md)");
  in->format = "keras";
  c->add_option("model", in->input, "Keras 2 model file (model.save(\"x.h5\")) or Keras 3 .weights.h5")
      ->required();
  c->add_option("--arch", in->arch, "Architecture the file holds")
      ->required()
      ->check(CLI::IsMember({"unet3d", "unet2d", "resnet", "cv-unet3d"}));
  c->add_option("--system", in->system, "Radar system the model was trained for, by name")
      ->capture_default_str();
  c->add_option("--freqs,-K", in->freqs, "Frequencies of --system")->capture_default_str();
  c->add_option("--grid", in->grid, "Imaging grid 'x0:x1:nx,y0:y1:ny,z0:z1:nz' (m) or 'paper'")
      ->capture_default_str();
  c->add_option("--out,-o", in->output, "nfmimo weights file to write")->required();
  c->add_flag("--force,-f", in->force, "Replace an existing output file");
  c->callback([in] { run_import(*in); });

  auto ex = std::make_shared<ExportOptions>();
  CLI::App* e = app.add_subcommand("export",
                                   "Export an nfmimo weights file's network to Keras HDF5 or ONNX "
                                   "(docs/interop.md)");
  e->add_option("weights", ex->input, "nfmimo weights file")->required();
  e->add_option("--format", ex->format, "keras (HDF5 for tf.keras.models.load_model) or onnx (opset 17)")
      ->required()
      ->check(CLI::IsMember({"keras", "onnx"}));
  e->add_option("--out,-o", ex->output, "File to write")->required();
  e->add_option("--batch-norm", ex->batch_norm,
                "ONNX: fold the inference batch norms into the convolutions, or keep "
                "them as BatchNormalization nodes")
      ->capture_default_str()
      ->check(CLI::IsMember({"fold", "keep"}));
  e->add_flag("--pipeline", ex->pipeline,
              "ONNX: the whole learned pipeline (measurements -> adjoint -> magnitude / per-sample maximum "
              "-> network) "
              "in one graph");
  e->add_flag("--force,-f", ex->force, "Replace an existing output file");
  e->callback([ex] { run_export(*ex); });
}

}  // namespace nfmimo

#include "models/training/run_files.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn::run_files {

// JSON has no infinity or NaN: written as strings, read back.
json number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}
double number_from(const json& j) {
  if (j.is_string()) {
    const std::string s = j.get<std::string>();
    return s == "inf" ? INFINITY : s == "-inf" ? -INFINITY : NAN;
  }
  return j.get<double>();
}

json record_json(const EpochRecord& r) {
  return {{"epoch", r.epoch},
          {"partial", r.partial},
          {"steps", r.steps},
          {"samples", r.samples},
          {"train_loss", number(r.train_loss)},
          {"learning_rate", r.learning_rate},
          {"gradient_norm", number(r.gradient_norm)},
          {"val_loss", number(r.val_loss)},
          {"val_psnr_db", number(r.val_psnr_db)},
          {"val_ssim_3d", number(r.val_ssim_3d)},
          {"val_ssim_2d", number(r.val_ssim_2d)},
          {"samples_per_s", r.samples_per_s},
          {"epoch_s", r.epoch_seconds},
          {"elapsed_s", r.elapsed_seconds}};
}

EpochRecord record_from(const json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int>();
  r.partial = j.at("partial").get<bool>();
  r.steps = j.at("steps").get<std::int64_t>();
  r.samples = j.at("samples").get<std::int64_t>();
  r.train_loss = number_from(j.at("train_loss"));
  r.learning_rate = j.at("learning_rate").get<double>();
  r.gradient_norm = number_from(j.at("gradient_norm"));
  r.val_loss = number_from(j.at("val_loss"));
  r.val_psnr_db = number_from(j.at("val_psnr_db"));
  r.val_ssim_3d = number_from(j.at("val_ssim_3d"));
  r.val_ssim_2d = number_from(j.at("val_ssim_2d"));
  r.samples_per_s = j.at("samples_per_s").get<double>();
  r.epoch_seconds = j.at("epoch_s").get<double>();
  r.elapsed_seconds = j.at("elapsed_s").get<double>();
  return r;
}

// What must be the same for a checkpoint to be continued: everything that decides the weights.
json run_identity(const TrainerSettings& s, const BatchSource& source, const ValidationSet& validation) {
  const OptimizerSettings& o = s.optimizer;
  json identity = {{"architecture", s.architecture},
                   {"width", s.options.width},
                   {"blocks", s.options.blocks},
                   {"batch", source.batch_size()},
                   {"seed", s.seed},
                   {"init_from", s.init_from},
                   {"loss", to_string(o.loss)},
                   {"ssim_weight", o.ssim_weight},
                   {"learning_rate", o.learning_rate},
                   {"beta1", o.beta1},
                   {"beta2", o.beta2},
                   {"epsilon", o.epsilon},
                   {"weight_decay", o.weight_decay},
                   {"clip_norm", o.clip_norm},
                   {"schedule",
                    {{"kind", to_string(s.schedule.kind)},
                     {"min_lr", s.schedule.min_lr},
                     {"factor", s.schedule.factor},
                     {"threshold", s.schedule.threshold},
                     {"patience", s.schedule.patience}}},
                   {"data", json::parse(source.record_json())},
                   {"validation", json::parse(validation.record_json)}};
  // Only denoisers carry the key, so that checkpoints written before roles existed still resume.
  if (s.role != kReconstructionRole) identity["role"] = s.role;
  return identity;
}

// The first difference between two JSON values, as "key: a vs b".
std::optional<std::string> first_difference(const json& a, const json& b, const std::string& path) {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string key = path.empty() ? it.key() : path + "." + it.key();
      if (!b.contains(it.key())) return fmt::format("{}: {} vs (missing)", key, it.value().dump());
      if (auto d = first_difference(it.value(), b.at(it.key()), key)) return d;
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key()))
        return fmt::format("{}: (missing) vs {}", path.empty() ? it.key() : path + "." + it.key(),
                           it.value().dump());
    return std::nullopt;
  }
  if (a != b) return fmt::format("{}: {} vs {}", path, a.dump(), b.dump());
  return std::nullopt;
}

json state_json(const RunState& r, const json& identity, long long optimizer_step) {
  json records = json::array();
  for (const auto& e : r.records) records.push_back(record_json(e));
  return {{"format", 1},
          {"identity", identity},
          {"epoch", r.epoch},
          {"index", r.index},
          {"steps", r.steps},
          {"samples", r.samples},
          {"seconds", r.seconds},
          {"epoch_loss_sum", r.epoch_loss_sum},
          {"epoch_norm_sum", r.epoch_norm_sum},
          {"epoch_seconds", r.epoch_seconds},
          {"epoch_step_seconds", r.epoch_step_seconds},
          {"epoch_steps", r.epoch_steps},
          {"optimizer_step", optimizer_step},
          {"schedule",
           {{"plateau_lr", r.schedule.plateau_lr},
            {"best", r.schedule.best},
            {"has_best", r.schedule.has_best},
            {"bad_epochs", r.schedule.bad_epochs}}},
          {"records", records},
          {"last_validation", r.last_validation ? record_json(*r.last_validation) : json(nullptr)}};
}

const char* kStateDataset = "/checkpoint/state_json";

void write_checkpoint(const std::string& path, const Model& model, const OptimizerState& optimizer,
                      const RunState& run, const json& identity) {
  // The weights are written by write_model into the staged temporary; the optimizer state is added to it
  // before the one rename.
  OutputSet set(true);
  set.add(path);
  write_model(path, model, true);
  {
    h5::File f(set.temporary(path), h5::File::Mode::ReadWrite, path);
    for (const auto* which : {&optimizer.m, &optimizer.v})
      for (const auto& [name, values] : *which)
        f.write<float>(fmt::format("/optimizer/{}/{}", which == &optimizer.m ? "m" : "v", name),
                       h5::Dims{values.size()}, values.data());
    const std::string text = state_json(run, identity, optimizer.step).dump();
    f.write<std::uint8_t>(kStateDataset, h5::Dims{text.size()},
                          reinterpret_cast<const std::uint8_t*>(text.data()));
    f.set_attribute("/", "checkpoint", 1LL);
    f.close();
  }
  set.commit();
}

LoadedCheckpoint read_checkpoint(const std::string& path) {
  LoadedCheckpoint c;
  c.model = read_model(path);
  const h5::File f(path, h5::File::Mode::Read);
  if (!f.is_dataset(kStateDataset))
    throw InputError(fmt::format("{}: is a weights file but not a training checkpoint ({} is missing)", path,
                                 kStateDataset));
  const auto bytes = f.read<std::uint8_t>(kStateDataset).data;
  json j;
  try {
    j = json::parse(std::string(bytes.begin(), bytes.end()));
    c.identity = j.at("identity");
    RunState& r = c.run;
    r.epoch = j.at("epoch").get<std::int64_t>();
    r.index = j.at("index").get<int>();
    r.steps = j.at("steps").get<std::int64_t>();
    r.samples = j.at("samples").get<std::int64_t>();
    r.seconds = j.at("seconds").get<double>();
    r.epoch_loss_sum = j.at("epoch_loss_sum").get<double>();
    r.epoch_norm_sum = j.at("epoch_norm_sum").get<double>();
    r.epoch_seconds = j.at("epoch_seconds").get<double>();
    r.epoch_step_seconds = j.at("epoch_step_seconds").get<double>();
    r.epoch_steps = j.at("epoch_steps").get<std::int64_t>();
    c.optimizer.step = j.at("optimizer_step").get<long long>();
    const json& s = j.at("schedule");
    r.schedule.plateau_lr = s.at("plateau_lr").get<double>();
    r.schedule.best = s.at("best").get<double>();
    r.schedule.has_best = s.at("has_best").get<bool>();
    r.schedule.bad_epochs = s.at("bad_epochs").get<int>();
    for (const auto& e : j.at("records")) r.records.push_back(record_from(e));
    if (!j.at("last_validation").is_null()) r.last_validation = record_from(j.at("last_validation"));
  } catch (const json::exception& e) {
    throw InputError(
        fmt::format("{}: dataset '{}': not a readable training state ({})", path, kStateDataset, e.what()));
  }
  for (const auto& [name, t] : c.model.parameters) {
    if (!t.trainable || c.optimizer.step == 0) continue;
    for (const char* which : {"m", "v"}) {
      const std::string where = fmt::format("/optimizer/{}/{}", which, name);
      if (!f.is_dataset(where))
        throw InputError(fmt::format("{}: the optimizer state of '{}' is missing", f.where(where), name));
      auto values = f.read<float>(where).data;
      if (values.size() != t.values.size())
        throw InputError(fmt::format("{}: holds {} values; the parameter has {}", f.where(where),
                                     values.size(), t.values.size()));
      (which[0] == 'm' ? c.optimizer.m : c.optimizer.v)[name] = std::move(values);
    }
  }
  return c;
}

void write_text(const std::string& path, const std::string& text) {
  AtomicOutput out(path, true);
  write_file_checked(out.temporary_path(), text, path);
  out.commit();
}

void write_logs(const TrainerSettings& s, const std::vector<EpochRecord>& records, const json& identity,
                const std::string& device) {
  if (!s.log_csv.empty()) {
    std::string csv =
        "epoch,partial,steps,samples,train_loss,learning_rate,gradient_norm,val_loss,val_psnr_db,val_ssim_3d,"
        "val_ssim_2d,samples_per_s,epoch_s,elapsed_s\n";
    for (const auto& r : records)
      csv += fmt::format(
          "{},{},{},{},{:.8g},{:.6g},{:.6g},{:.8g},{:.6f},{:.6f},{:.6f},{:.4g},{:.4g},{:.4g}\n", r.epoch,
          r.partial ? 1 : 0, r.steps, r.samples, r.train_loss, r.learning_rate, r.gradient_norm, r.val_loss,
          r.val_psnr_db, r.val_ssim_3d, r.val_ssim_2d, r.samples_per_s, r.epoch_seconds, r.elapsed_seconds);
    write_text(s.log_csv, csv);
  }
  if (!s.log_json.empty()) {
    json j;
    j["run"] = identity;
    j["device"] = device;
    j["command"] = s.command;
    j["epochs"] = json::array();
    for (const auto& r : records) j["epochs"].push_back(record_json(r));
    write_text(s.log_json, j.dump(2) + "\n");
  }
}

bool exists(const std::string& path) {
  std::error_code ec;
  return !path.empty() && std::filesystem::exists(path, ec);
}

}  // namespace nfmimo::nn::run_files

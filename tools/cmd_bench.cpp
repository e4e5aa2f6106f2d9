// nfmimo bench: throughput and latency of the physics operators (and, as they land, the learned pipelines) on
// the CPU and the GPU, with floors and a correctness check per row. See docs/performance.md.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/atomic_file.hpp"
#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_imaging.hpp"
#include "kernels/gpu_timing.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/names.hpp"
#include "radar/reference.hpp"
#include "tools/bench/harness.hpp"
#include "tools/bench/learned_bench.hpp"
#include "tools/commands.hpp"

namespace nfmimo {
namespace {

struct BenchOptions {
  std::string methods = "adjoint", modes = "exact,fast", batches = "1,64,512", devices = "auto",
              system = "paper";
  std::string json, csv, grid = "paper", precisions = "fp32,tf32,fp16", train_batches = "32", model;
  int freqs = 15, width = 0;
  bool quick = false, force = false;
  double seconds = 5;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<cfloat> random_frames(std::size_t count, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<cfloat> v(count);
  for (auto& z : v) z = {g(rng), g(rng)};
  return v;
}

double relative_error(const cfloat* a, const std::vector<cdouble>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(a[i].real()) || !std::isfinite(a[i].imag())) return INFINITY;
    num += std::norm(cdouble(a[i]) - ref[i]);
    den += std::norm(ref[i]);
  }
  return den > 0 ? std::sqrt(num / den) : INFINITY;
}

// One operation of the physics benchmark: "forward", or an imaging method with a mode.
struct PhysicsOp {
  std::string name;  // forward | adjoint | backprojection | kirchhoff
  ImagingMode mode = ImagingMode::Exact;
  bool is_forward() const { return name == "forward"; }
};

class PhysicsBench {
 public:
  PhysicsBench(const RadarSystem& s, const ImagingGrid& g, int max_batch)
      : s_(s),
        g_(g),
        V_(g.voxels()),
        S_(s.samples_per_frame()),
        x_(random_frames(V_ * max_batch, 1)),
        y_(random_frames(S_ * max_batch, 2)) {}

  // The double reference of frame 0 (identical in every batch: frames are generated in order from one seed).
  const std::vector<cdouble>& reference(const PhysicsOp& op) {
    const std::string key = op.name;
    auto it = references_.find(key);
    if (it != references_.end()) return it->second;
    std::vector<cdouble> in;
    if (op.is_forward()) {
      for (std::size_t i = 0; i < V_; ++i) in.emplace_back(x_[i]);
      return references_[key] = forward_reference(s_, g_, in, 1);
    }
    for (std::size_t i = 0; i < S_; ++i) in.emplace_back(y_[i]);
    return references_[key] = image_reference(parse_method(op.name), s_, g_, in, 1);
  }

  // FLOPs and minimal bytes per volume (see docs/performance.md for the counting rules).
  void cost(const PhysicsOp& op, bench::Row& row) const {
    const double K = s_.frequencies(), T = s_.transmitters(), R = s_.receivers(), V = double(V_);
    const double io = 8.0 * (K * T * R + V);  // complex64 measurements in + volume out
    if (op.is_forward()) {
      row.flops_per_volume = 8.0 * K * T * R * V;
    } else if (op.mode == ImagingMode::Exact) {
      row.flops_per_volume = 8.0 * K * T * (R + 1) * V;
    } else {
      const double M = fast_mode_params(s_).profile_length;
      row.flops_per_volume = 24.0 * T * R * V + 5.0 * M * std::log2(M) * T * R;
      row.bytes_per_volume = io + 2.0 * 8.0 * T * R * M;
      return;
    }
    row.bytes_per_volume = io;
  }

  const RadarSystem& s_;
  const ImagingGrid& g_;
  std::size_t V_, S_;
  std::vector<cfloat> x_, y_;
  std::map<std::string, std::vector<cdouble>> references_;
};

std::vector<int> parse_batches(const std::string& text, const char* option) {
  std::vector<int> batches;
  for (const auto& b : split(text)) {
    int v = 0;
    try {
      v = std::stoi(b);
    } catch (const std::exception&) {
      throw InputError(fmt::format("{}: '{}' is not a number", option, b));
    }
    require(v >= 1, fmt::format("{}: {} is not a positive batch size", option, v));
    batches.push_back(v);
  }
  require(!batches.empty(), fmt::format("{}: no batch sizes given", option));
  return batches;
}

void run(const BenchOptions& o) {
  // Everything is checked before any work: the outputs (folder, overwrite rule, collisions, lock) too.
  require(std::isfinite(o.seconds) && o.seconds > 0 && o.seconds <= 86400,
          fmt::format("--seconds must be a positive number of seconds up to 86400 (got {})", o.seconds));
  OutputSet outputs(o.force);
  outputs.add(o.json, "--json");
  outputs.add(o.csv, "--csv");
  const RadarSystem s = named_system(o.system, o.freqs);
  const ImagingGrid g = parse_grid(o.grid);
  validate_grid(g, s, "--grid");
  const std::vector<int> batches = parse_batches(o.batches, "--batch");
  // Learned rows (networks, pipelines, train-<arch>) apart from the physics operators.
  bench::LearnedBenchOptions learned;
  learned.batches = batches;
  learned.train_batches = parse_batches(o.train_batches, "--train-batch");
  learned.precisions = split(o.precisions);
  require(o.width >= 0 && o.width <= 1024,
          fmt::format("--width must be 0 (the paper's) or 1..1024 (got {})", o.width));
  learned.width = o.width;
  learned.model = o.model;
  for (const auto& mode : split(o.modes)) learned.modes.push_back(parse_mode(mode));
  std::vector<std::string> physics_methods;
  for (const auto& m : split(o.methods)) {
    if (bench::is_learned_row(m))
      bench::add_learned_row(m, learned);
    else
      physics_methods.push_back(m);
  }
  const bool any_learned =
      !learned.networks.empty() || !learned.pipelines.empty() || !learned.training.empty();
  std::vector<PhysicsOp> ops;
  for (const auto& m : physics_methods)
    for (const auto& mode : split(o.modes)) {
      if (m != "forward") {
        try {
          parse_method(m);
        } catch (const InputError&) {
          throw InputError(
              fmt::format("--methods: unknown '{}' (physics: forward, adjoint, backprojection, kirchhoff; "
                          "networks: unet3d, "
                          "unet2d, resnet, cv-unet3d; pipelines: deep2s, cv-deep2s, deep2s-unet2d, "
                          "deep2s-resnet; training: "
                          "train-<network>)",
                          m));
        }
      }
      const ImagingMode md = parse_mode(mode);
      if (md == ImagingMode::Fast && (m == "forward" || m == "kirchhoff")) continue;  // no fast variant
      if (m == "forward" && mode != split(o.modes).front()) continue;
      ops.push_back({m, md});
    }
  require(!ops.empty() || any_learned, "--methods/--modes select nothing to benchmark");
  std::vector<DeviceKind> devices;
  for (const auto& d : split(o.devices)) {
    if (d == "all") {
      devices.push_back(DeviceKind::Cpu);
      if (cuda_device_count() > 0) devices.push_back(DeviceKind::Cuda);
    } else {
      devices.push_back(resolve_device(parse_device(d)));
    }
  }

  bench::TimingRules rules;
  rules.target_seconds = o.seconds;
  if (o.quick) rules = {1, 2, 3, 0.2};
  learned.rules = rules;
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  PhysicsBench pb(s, g, max_batch);

  nlohmann::json report;
  report["environment"] = bench::environment();
  report["problem"] = {{"system", describe(s)}, {"grid", describe(g)}};
  std::vector<bench::Row> rows;
  std::vector<bench::Ceilings> row_ceilings;
  std::map<std::string, bench::Ceilings> ceilings;
  // Per device and precision: the matrix-unit rate the learned rows are measured against (the CPU has one).
  std::map<std::string, std::map<std::string, bench::Ceilings>> matrix_ceilings;
  for (DeviceKind d : devices) {
    const std::string dev = to_string(d);
    std::fprintf(stderr, "bench: measuring %s ceilings...\n", dev.c_str());
    if (d == DeviceKind::Cpu) {
      ceilings[dev] = bench::measure_cpu_ceilings();
      for (const char* p : {"fp32", "tf32", "fp16", "bf16"}) matrix_ceilings[dev][p] = ceilings[dev];
    } else {
      const GpuCeilings gc = measure_gpu_ceilings();
      ceilings[dev] = {gc.fp32_tflops * 1e12, gc.copy_gbs * 1e9, "FP32 FMA kernel; device copy of 1 GiB"};
      const double bw = gc.copy_gbs * 1e9;
      matrix_ceilings[dev]["fp32"] = {
          std::max(gc.gemm_fp32_tflops, gc.fp32_tflops) * 1e12, bw,
          "cuBLAS FP32 GEMM 8192^3 (no tensor cores) or the FMA kernel; device copy"};
      matrix_ceilings[dev]["tf32"] = {gc.gemm_tf32_tflops * 1e12, bw, "cuBLAS TF32 GEMM 8192^3; device copy"};
      matrix_ceilings[dev]["fp16"] = {gc.gemm_fp16_tflops * 1e12, bw,
                                      "cuBLAS FP16 GEMM 8192^3, FP32 accumulation; device copy"};
      matrix_ceilings[dev]["bf16"] = {gc.gemm_bf16_tflops * 1e12, bw,
                                      "cuBLAS BF16 GEMM 8192^3, FP32 accumulation; device copy"};
      report["ceilings"][dev]["gemm_tflops"] = {{"fp32", gc.gemm_fp32_tflops},
                                                {"tf32", gc.gemm_tf32_tflops},
                                                {"fp16", gc.gemm_fp16_tflops},
                                                {"bf16", gc.gemm_bf16_tflops}};
    }
    report["ceilings"][dev]["flops_per_s"] = ceilings[dev].flops_per_s;
    report["ceilings"][dev]["bytes_per_s"] = ceilings[dev].bytes_per_s;
    report["ceilings"][dev]["how"] = ceilings[dev].how;
  }

  for (DeviceKind d : devices) {
    if (ops.empty()) break;
    const std::string dev = to_string(d);
    std::unique_ptr<CpuOperator> cpu;
    std::unique_ptr<GpuImagingPlan> gpu;
    std::unique_ptr<DeviceStream> stream;
    std::unique_ptr<DeviceBuffer<cfloat>> dx, dy;
    if (d == DeviceKind::Cpu) {
      cpu = std::make_unique<CpuOperator>(s, g);
    } else {
      gpu = std::make_unique<GpuImagingPlan>(s, g, max_batch);
      stream = std::make_unique<DeviceStream>();
      dx = std::make_unique<DeviceBuffer<cfloat>>(pb.V_ * max_batch);
      dy = std::make_unique<DeviceBuffer<cfloat>>(pb.S_ * max_batch);
    }
    for (const PhysicsOp& op : ops)
      for (int batch : batches) {
        bench::Row row;
        row.op = op.name;
        row.mode = op.is_forward() ? "exact" : to_string(op.mode);
        row.device = dev;
        row.precision = "fp32";
        row.batch = batch;
        pb.cost(op, row);
        std::fprintf(stderr, "bench: %s %s on %s, batch %d\n", op.name.c_str(), row.mode.c_str(), dev.c_str(),
                     batch);
        std::vector<cfloat> out(op.is_forward() ? pb.S_ * batch : pb.V_ * batch);
        const cfloat* in = op.is_forward() ? pb.x_.data() : pb.y_.data();
        const std::size_t in_count = (op.is_forward() ? pb.V_ : pb.S_) * batch;
        const Method method = op.is_forward() ? Method::Adjoint : parse_method(op.name);
        if (cpu) {
          auto call = [&] {
            if (op.is_forward())
              cpu->forward(in, out.data(), batch);
            else if (op.mode == ImagingMode::Fast)
              cpu->image_fast(method, in, out.data(), batch);
            else
              cpu->image(method, in, out.data(), batch);
          };
          row.compute = bench::summarise(bench::time_calls(rules, call));
        } else {
          DeviceBuffer<cfloat>& din = op.is_forward() ? *dx : *dy;
          DeviceBuffer<cfloat>& dout = op.is_forward() ? *dy : *dx;
          din.upload(in, in_count, stream->get());
          auto call = [&] {
            if (op.is_forward())
              gpu->forward(din.data(), dout.data(), batch, stream->get());
            else
              gpu->image(method, op.mode, din.data(), dout.data(), batch, stream->get());
          };
          row.compute = bench::summarise(bench::time_calls(rules, call, stream->get()));
          bench::TimingRules copy_rules{1, 3, 10, 1.0};
          row.upload_ms = bench::summarise(bench::time_calls(
                                               copy_rules, [&] { din.upload(in, in_count, stream->get()); },
                                               stream->get()))
                              .median_ms;
          row.download_ms =
              bench::summarise(bench::time_calls(
                                   copy_rules, [&] { dout.download(out.data(), out.size(), stream->get()); },
                                   stream->get()))
                  .median_ms;
          stream->synchronize();
          row.device_memory_bytes = static_cast<double>(gpu_memory_used());
        }
        // Correctness: frame 0 of this row's output against the double reference.
        row.check_error = relative_error(out.data(), pb.reference({op.name, ImagingMode::Exact}));
        row.check_tolerance = op.mode == ImagingMode::Fast && !op.is_forward() ? 1e-3 : 1e-5;
        row.check_passed = row.check_error <= row.check_tolerance;
        row.check_against = "double-precision reference (frame 0)";
        rows.push_back(row);
        row_ceilings.push_back(ceilings[dev]);
      }
  }
  if (any_learned)
    for (DeviceKind d : devices) {
      const std::string dev = to_string(d);
      bench::run_learned_rows(
          s, g, d, learned, [&](const std::string& p) { return matrix_ceilings[dev].at(p); }, rows,
          row_ceilings);
    }
  for (std::size_t i = 0; i < rows.size(); ++i)
    report["rows"].push_back(bench::to_json(rows[i], row_ceilings[i]));
  if (!o.json.empty()) {
    AtomicOutput out(o.json, o.force);
    write_file_checked(out.temporary_path(), report.dump(2) + "\n", o.json);
    out.commit();
  }
  if (!o.csv.empty()) bench::write_csv(o.csv, rows, row_ceilings);
  outputs.commit();
  bench::print_table(rows, row_ceilings);
  for (const auto& r : rows)
    if (!r.check_passed)
      throw Error(
          fmt::format("benchmark row {} {} {} batch {} produced a wrong result (relative error {:.2e})", r.op,
                      r.mode, r.device, r.batch, r.check_error));
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* c =
      app.add_subcommand("bench", "Benchmark throughput and latency (JSON/CSV), with floors and checks");
  c->add_option(
       "--methods", o->methods,
       "Comma list: physics (adjoint, backprojection, kirchhoff, forward), networks (unet3d, unet2d, "
       "resnet, cv-unet3d), pipelines (deep2s, cv-deep2s, deep2s-unet2d, deep2s-resnet, deepdi, "
       "deep2s-plus), training "
       "steps (train-unet3d, ...)")
      ->capture_default_str();
  c->add_option("--precision", o->precisions,
                "Comma list for the learned rows: fp32, tf32, fp16, bf16 (CPU: fp32)")
      ->capture_default_str();
  c->add_option("--train-batch", o->train_batches, "Comma list of training-step batch sizes")
      ->capture_default_str();
  c->add_option("--width", o->width, "Network width for the learned rows (0: the paper's)")
      ->capture_default_str();
  c->add_option("--model", o->model,
                "Weights file for the learned rows of its architecture (default: random weights)");
  c->add_option("--modes", o->modes, "Comma list: exact, fast")->capture_default_str();
  c->add_option("--batch", o->batches, "Comma list of batch sizes")->capture_default_str();
  c->add_option("--device", o->devices, "Comma list: auto, cpu, cuda, all")->capture_default_str();
  c->add_option("--system", o->system, "Radar system by name")->capture_default_str();
  c->add_option("--freqs,-K", o->freqs, "Number of frequencies")->capture_default_str();
  c->add_option("--grid", o->grid, "Grid: 'paper' or 'x0:x1:nx,y0:y1:ny,z0:z1:nz'")->capture_default_str();
  c->add_option("--seconds", o->seconds, "Time budget per row (stops earlier after 100 iterations)")
      ->capture_default_str();
  c->add_option("--json", o->json, "Write the report as JSON");
  c->add_option("--csv", o->csv, "Write the rows as CSV");
  c->add_flag("--force,-f", o->force, "Replace existing output files");
  c->add_flag("--quick", o->quick, "Few iterations (CI): checks that every row is complete and correct");
  c->callback([o] { run(*o); });
}

}  // namespace nfmimo

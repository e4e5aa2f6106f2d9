// The learned rows of `nfmimo bench` (see learned_bench.hpp and docs/performance.md).
//
// Correctness per row, on frame 0 (a training row: the loss of a step from the initial parameters):
//   GPU rows against the float CPU backend (CpuNetwork, the CPU pipeline), at the precision's tolerance;
//   CPU rows against the double reference (ReferenceNetwork, image_reference) when it is affordable (a
//   forward pass under 2 GFLOP, i.e. a few seconds of its plain loops: narrow networks such as --width 2..8);
//   at full width the double reference would take minutes per volume, and the row says "unchecked" (tests
//   cover the CPU backend against the reference and PyTorch).
#include "tools/bench/learned_bench.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>

#include <fmt/format.h>

#include "kernels/device_buffer.hpp"
#include "kernels/gpu_timing.hpp"
#include "models/nn/architectures.hpp"
#include "models/learned/composite.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/nn/executor.hpp"
#include "models/nn/cuda/network.hpp"
#include "models/learned/gpu_pipeline.hpp"
#include "models/training/gpu_backend.hpp"
#include "models/learned/pipeline.hpp"
#include "models/nn/reference.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "radar/reference.hpp"

namespace nfmimo::bench {
namespace {

using namespace nn;

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool is_architecture(const std::string& name) { return contains(architecture_names(), name); }
bool is_pipeline(const std::string& name) {
  for (const auto& s : learned_method_specs())
    if (s.name == name) return true;
  return false;
}

// FLOPs of one volume's forward pass: convolutions, transposed convolutions and dense layers (2 per
// multiply-add); the elementwise layers add well under 1 %.
double forward_flops(const Network& net) {
  double f = 0;
  for (std::size_t i = 1; i < net.ops().size(); ++i) {
    const Op& op = net.ops()[i];
    const Shape in = net.shape(op.inputs[0], 1), out = net.shape(int(i), 1);
    const double taps = double(op.kernel[0]) * op.kernel[1] * op.kernel[2];
    if (op.kind == OpKind::Conv) f += 2.0 * double(out.spatial()) * out.c * in.c * taps;
    if (op.kind == OpKind::ConvTranspose) f += 2.0 * double(in.spatial()) * in.c * out.c * taps;
    if (op.kind == OpKind::Dense) f += 2.0 * double(in.per_sample()) * op.channels;
  }
  return f;
}

bool reference_affordable(const Network& net) { return forward_flops(net) < 2e9; }

std::size_t compute_bytes(Precision p) { return p == Precision::Fp16 || p == Precision::Bf16 ? 2 : 4; }

template <class A, class B>
double relative_error(const A* a, const B* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(double(a[i]))) return INFINITY;
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : INFINITY;
}

std::vector<float> uniform(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

std::vector<cfloat> gaussian(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<cfloat> v(n);
  for (auto& z : v) z = {g(rng), g(rng)};
  return v;
}

// A model for the rows: the file given with --model when its architecture matches, else initial parameters
// with non-trivial batch-norm statistics and biases (so that folding and fusion compute something).
Model bench_model(const std::string& arch, const RadarSystem& system, const ImagingGrid& grid,
                  const LearnedBenchOptions& o) {
  if (!o.model.empty()) {
    Model m = read_model(o.model);
    if (m.architecture == arch) {
      require_matching(m, o.model, system, grid, "the benchmark problem");
      return m;
    }
  }
  ArchitectureOptions ao;
  ao.width = o.width;
  Model m = make_model(arch, system, grid, ao, 7);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.5f, 1.5f), b(-0.2f, 0.2f);
  for (auto& [name, t] : m.parameters) {
    if (name.ends_with(".running_var"))
      for (auto& v : t.values) v = u(rng);
    if (name.ends_with(".running_mean") || name.ends_with(".bias"))
      for (auto& v : t.values) v = b(rng);
  }
  return m;
}

Precision row_precision(const std::string& name) { return parse_inference_precision(name); }

void fill_costs(Row& row, const Network& net, Precision p, double flops_factor, double io_bytes) {
  row.flops_per_volume = flops_factor * forward_flops(net);
  row.bytes_per_volume = io_bytes + double(net.parameter_count() * compute_bytes(p)) / row.batch;
}

void set_check(Row& row, double error, double tol, const std::string& against) {
  row.check_error = error;
  row.check_tolerance = tol;
  row.check_passed = error <= tol;
  row.check_against = against;
}

void set_unchecked(Row& row, const std::string& why) {
  row.check_error = -1;
  row.check_tolerance = 0;
  row.check_passed = true;
  row.check_against = "unchecked: " + why;
}

// Upload of `in_count` elements into `in` and download of `out_count` out of `out` (when not null).
template <class In, class Out = float>
void time_copies(Row& row, DeviceBuffer<In>& in, const In* host_in, std::size_t in_count,
                 DeviceBuffer<Out>* out, Out* host_out, std::size_t out_count, cudaStream_t s) {
  const TimingRules copy_rules{1, 3, 10, 1.0};
  row.upload_ms = summarise(time_calls(
                                copy_rules, [&] { in.upload(host_in, in_count, s); }, s))
                      .median_ms;
  if (out)
    row.download_ms = summarise(time_calls(
                                    copy_rules, [&] { out->download(host_out, out_count, s); }, s))
                          .median_ms;
}

// ---- networks -----------------------------------------------------------------------------------
void network_rows(const std::string& arch, const RadarSystem& system, const ImagingGrid& grid,
                  DeviceKind device, const LearnedBenchOptions& o,
                  const std::function<Ceilings(const std::string&)>& ceilings_for, std::vector<Row>& rows,
                  std::vector<Ceilings>& row_ceilings) {
  const Model model = bench_model(arch, system, grid, o);
  const Network net = model.network();
  const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  const std::size_t in_per = net.input_shape(1).elements(), out_per = net.output_shape(1).elements();
  const std::vector<float> input = uniform(in_per * std::size_t(max_batch), 3);
  const double io = double(in_per + out_per) * sizeof(float);
  // Frame 0's expected output (inference mode: frames are independent).
  std::vector<float> expected(out_per);
  std::string against;
  bool checked = true;
  if (device == DeviceKind::Cuda) {
    CpuNetwork cpu(net, model.parameters, Mode::Inference);
    cpu.forward(input.data(), expected.data(), 1);
    against = "cpu fp32 backend (frame 0)";
  } else if (reference_affordable(net)) {
    ReferenceNetwork ref(net, model.parameters);
    Tensor<double> x(net.input_shape(1));
    for (std::size_t i = 0; i < in_per; ++i) x.data[i] = input[i];
    const Tensor<double> y = ref.forward(x, Mode::Inference);
    for (std::size_t i = 0; i < out_per; ++i) expected[i] = float(y.data[i]);
    against = "double reference (frame 0)";
  } else {
    checked = false;
  }
  for (const auto& pname : o.precisions) {
    const Precision p = row_precision(pname);
    if (device == DeviceKind::Cpu && p != Precision::Fp32) continue;  // the CPU backend runs fp32 only
    // One executor for either device; GPU rows also time its device-memory calls (data already on the
    // device, CUDA events: the timing rules above), through the typed view.
    const std::unique_ptr<Executor> exec = make_executor(net, model.parameters, Mode::Inference, device, p);
    auto* gpu = dynamic_cast<GpuNetwork*>(exec.get());
    std::unique_ptr<DeviceStream> stream;
    std::unique_ptr<DeviceBuffer<float>> din, dout;
    if (gpu) {
      stream = std::make_unique<DeviceStream>();
      din = std::make_unique<DeviceBuffer<float>>(input.size());
      dout = std::make_unique<DeviceBuffer<float>>(out_per * std::size_t(max_batch));
    }
    for (int batch : o.batches) {
      std::fprintf(stderr, "bench: %s inference %s on %s, batch %d\n", arch.c_str(), pname.c_str(),
                   to_string(device).c_str(), batch);
      Row row;
      row.op = arch, row.mode = "inference", row.device = to_string(device), row.precision = pname,
      row.batch = batch;
      fill_costs(row, net, p, 1.0, io);
      std::vector<float> out(out_per * std::size_t(batch));
      if (gpu) {
        gpu->plan(batch);
        din->upload(input.data(), in_per * batch, stream->get());
        const auto call = [&] { gpu->forward_device(din->data(), dout->data(), batch, stream->get()); };
        row.compute = summarise(time_calls(o.rules, call, stream->get()));
        time_copies(row, *din, input.data(), in_per * batch, dout.get(), out.data(), out.size(),
                    stream->get());
        stream->synchronize();
        row.device_memory_bytes = double(gpu->device_bytes());
      } else {
        row.compute = summarise(time_calls(o.rules, [&] { exec->forward(input.data(), out.data(), batch); }));
      }
      if (checked)
        set_check(row, relative_error(out.data(), expected.data(), out_per),
                  device == DeviceKind::Cuda ? forward_tolerance(p) : 3e-5, against);
      else
        set_unchecked(row, "the double reference of this width takes minutes (use --width 8 or a GPU run)");
      rows.push_back(row);
      row_ceilings.push_back(ceilings_for(pname));
    }
  }
}

// ---- pipelines -----------------------------------------------------------------------------------
// The pipeline's definition in double: adjoint, per-sample normalisation, reference network (frame 0).
std::vector<float> reference_pipeline(const LearnedMethodSpec& spec, const Model& m, const cfloat* y) {
  const std::size_t S = m.system.samples_per_frame(), V = m.grid.voxels();
  std::vector<cdouble> yd(S);
  for (std::size_t i = 0; i < S; ++i) yd[i] = cdouble(y[i]);
  const std::vector<cdouble> a = image_reference(Method::Adjoint, m.system, m.grid, yd, 1);
  double peak = 0;
  for (const auto& z : a) peak = std::max(peak, std::abs(z));
  const double scale = peak > 0 ? 1 / peak : 1;
  const Network net = m.network();
  Tensor<double> x(net.input_shape(1));
  // DeepDI / Deep2S+: the dense layer on the scaled measurements replaces the normalised adjoint.
  const cfloat* w = spec.dense_first_stage ? dense_weights(m.parameters) : nullptr;
  const cfloat* b = spec.dense_first_stage ? dense_bias(m.parameters) : nullptr;
  for (std::size_t v = 0; v < V; ++v) {
    if (w) {
      cdouble z = cdouble(b[v]);
      for (std::size_t i = 0; i < S; ++i) z += cdouble(w[v * S + i]) * yd[i] * scale;
      x.data[v] = z.real(), x.data[V + v] = z.imag();
    } else if (spec.complex_input)
      x.data[v] = a[v].real() * scale, x.data[V + v] = a[v].imag() * scale;
    else
      x.data[v] = std::abs(a[v]) * scale;
  }
  ReferenceNetwork ref(net, without_dense_parameters(m.parameters));
  const Tensor<double> out = ref.forward(x, Mode::Inference);
  return std::vector<float>(out.data.begin(), out.data.end());
}

void pipeline_rows(const std::string& method, const RadarSystem& system, const ImagingGrid& grid,
                   DeviceKind device, const LearnedBenchOptions& o,
                   const std::function<Ceilings(const std::string&)>& ceilings_for, std::vector<Row>& rows,
                   std::vector<Ceilings>& row_ceilings) {
  const LearnedMethodSpec& spec = learned_method_spec(method);
  const Model model = bench_model(spec.architecture, system, grid, o);
  const Network net = model.network();
  const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  const std::size_t S = system.samples_per_frame(), V = grid.voxels();
  const std::vector<cfloat> y = gaussian(S * std::size_t(max_batch), 5);
  const double io = double(S) * sizeof(cfloat) + double(V) * sizeof(float);
  // Physics FLOPs of the adjoint (docs/performance.md): exact 8 K T (R + 1) V per volume.
  const double K = system.frequencies(), T = system.transmitters(), R = system.receivers();
  for (ImagingMode mode : o.modes) {
    const std::string mode_name = mode == ImagingMode::Exact ? "exact" : "fast";
    std::vector<float> expected;
    std::string against;
    bool checked = true;
    double base_tol = 3e-5;  // float adjoint and network against double
    if (device == DeviceKind::Cuda) {
      LearnedPipeline cpu(method, model, DeviceKind::Cpu, mode, 1);
      expected.resize(V);
      cpu.run(y.data(), 1, expected.data());
      against = "cpu fp32 pipeline (frame 0)";
    } else if (reference_affordable(net)) {
      expected = reference_pipeline(spec, model, y.data());
      against = "double reference: exact adjoint + network (frame 0)";
      if (mode == ImagingMode::Fast) base_tol = 2e-3;  // the fast adjoint's stated accuracy (docs/physics.md)
    } else {
      checked = false;
    }
    for (const auto& pname : o.precisions) {
      const Precision p = row_precision(pname);
      if (device == DeviceKind::Cpu && p != Precision::Fp32) continue;
      LearnedPipeline pipe(method, model, device, mode, device == DeviceKind::Cuda ? max_batch : 8, p);
      GpuLearnedPipeline* gp = pipe.gpu();
      std::unique_ptr<DeviceStream> stream;
      std::unique_ptr<DeviceBuffer<cfloat>> dy;
      std::unique_ptr<DeviceBuffer<float>> dv;
      if (gp) {
        stream = std::make_unique<DeviceStream>();
        dy = std::make_unique<DeviceBuffer<cfloat>>(y.size());
        dv = std::make_unique<DeviceBuffer<float>>(V * std::size_t(max_batch));
      }
      for (int batch : o.batches) {
        std::fprintf(stderr, "bench: %s %s %s on %s, batch %d\n", method.c_str(), mode_name.c_str(),
                     pname.c_str(), to_string(device).c_str(), batch);
        Row row;
        row.op = method, row.mode = mode_name, row.device = to_string(device), row.precision = pname;
        row.batch = batch;
        fill_costs(row, net, p, 1.0, io);
        row.flops_per_volume +=
            mode == ImagingMode::Exact ? 8.0 * K * T * (R + 1) * double(V) : 24.0 * T * R * double(V);
        if (spec.dense_first_stage) {  // the complex GEMM, streaming the dense weights once per batch
          row.flops_per_volume += 8.0 * double(S) * double(V);
          row.bytes_per_volume += double(S) * double(V) * sizeof(cfloat) / batch;
        }
        std::vector<float> out(V * std::size_t(batch));
        if (gp) {
          dy->upload(y.data(), S * batch, stream->get());
          const auto call = [&] { gp->run_device(dy->data(), dv->data(), batch, stream->get()); };
          row.compute = summarise(time_calls(o.rules, call, stream->get()));
          time_copies(row, *dy, y.data(), S * batch, dv.get(), out.data(), out.size(), stream->get());
          stream->synchronize();
          row.device_memory_bytes = double(gpu_memory_used());
        } else {
          row.compute = summarise(time_calls(o.rules, [&] { pipe.run(y.data(), batch, out.data()); }));
        }
        const double tol = device == DeviceKind::Cuda ? forward_tolerance(p) : base_tol;
        if (checked)
          set_check(row, relative_error(out.data(), expected.data(), V), tol, against);
        else
          set_unchecked(row, "the double reference of this width takes minutes (use --width 8 or a GPU run)");
        rows.push_back(row);
        row_ceilings.push_back(ceilings_for(pname));
        // The live path at batch 1: buffers planned once, the whole pipeline one CUDA graph, replayed.
        if (gp && batch == 1) {
          Row live = row;
          live.mode = mode_name + "+graph";
          std::vector<float> frame(V);
          pipe.run_live(y.data(), frame.data());
          live.compute = summarise(time_calls(
              o.rules, [&] { gp->replay_live(stream->get()); }, stream->get()));
          stream->synchronize();
          if (checked) set_check(live, relative_error(frame.data(), expected.data(), V), tol, against);
          if (!gp->live_graph()) live.check_against += "; NO CUDA GRAPH: " + gp->description();
          rows.push_back(live);
          row_ceilings.push_back(ceilings_for(pname));
        }
      }
    }
  }
}

// ---- training -----------------------------------------------------------------------------------
double mse(const std::vector<float>& y, const std::vector<float>& t) {
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += (double(y[i]) - t[i]) * (double(y[i]) - t[i]);
  return s / double(y.size());
}

void training_rows(const std::string& arch, const RadarSystem& system, const ImagingGrid& grid,
                   DeviceKind device, const LearnedBenchOptions& o,
                   const std::function<Ceilings(const std::string&)>& ceilings_for, std::vector<Row>& rows,
                   std::vector<Ceilings>& row_ceilings) {
  const Model model = bench_model(arch, system, grid, o);
  const Network net = model.network();
  const std::size_t in_per = net.input_shape(1).elements(), out_per = net.output_shape(1).elements();
  OptimizerSettings settings;
  settings.learning_rate = 1e-4;
  for (int batch : o.train_batches) {
    const std::vector<float> input = uniform(in_per * std::size_t(batch), 21),
                             target = uniform(out_per * std::size_t(batch), 22);
    // The loss of the first step, from the initial parameters (batch statistics over the whole batch).
    double expected = -1;
    std::string against;
    if (device == DeviceKind::Cuda) {
      CpuNetwork cpu(net, model.parameters, Mode::Training);
      std::vector<float> y(out_per * std::size_t(batch));
      cpu.forward(input.data(), y.data(), batch);
      expected = mse(y, target);
      against = "cpu fp32 training-mode forward: loss of the first step";
    } else if (reference_affordable(net) && batch <= 8) {
      ReferenceNetwork ref(net, model.parameters);
      Tensor<double> x(net.input_shape(batch));
      for (std::size_t i = 0; i < x.size(); ++i) x.data[i] = input[i];
      const Tensor<double> y = ref.forward(x, Mode::Training);
      expected = mse(std::vector<float>(y.data.begin(), y.data.end()), target);
      against = "double reference training-mode forward: loss of the first step";
    }
    for (const auto& pname : o.precisions) {
      const Precision p = parse_precision(pname);
      if (device == DeviceKind::Cpu && p != Precision::Fp32) continue;
      std::fprintf(stderr, "bench: train-%s %s on %s, batch %d\n", arch.c_str(), pname.c_str(),
                   to_string(device).c_str(), batch);
      Row row;
      row.op = "train-" + arch, row.mode = "step", row.device = to_string(device), row.precision = pname;
      row.batch = batch;
      // Forward, backward-data and backward-filter: three times the forward's FLOPs.
      fill_costs(row, net, p, 3.0, double(in_per + out_per) * sizeof(float));
      double first_loss = 0;
      if (device == DeviceKind::Cuda) {
        GpuTrainingBackend backend(net, model.parameters, p);
        DeviceStream stream;
        DeviceBuffer<float> din(input.size()), dt(target.size());
        din.upload(input.data(), din.size(), stream.get());
        dt.upload(target.data(), dt.size(), stream.get());
        const float* x = din.data();
        const float* t = dt.data();
        first_loss = backend.step_device(x, t, batch, settings, stream.get()).loss;
        // As the trainer steps (models/training/trainer.cpp): queue a step, collect the one before it, so
        // the row includes the host's reading of every loss.
        bool all_finite = true;
        const auto call = [&] {
          backend.queue_step(x, t, batch, settings, stream.get());
          if (backend.steps_in_flight() == TrainingBackend::kStepsInFlight)
            all_finite = backend.collect_step().finite && all_finite;
        };
        row.compute = summarise(time_calls(o.rules, call, stream.get()));
        while (backend.steps_in_flight() > 0) all_finite = backend.collect_step().finite && all_finite;
        if (!all_finite) std::fprintf(stderr, "bench: warning: a timed step was not finite\n");
        time_copies<float, float>(row, din, input.data(), din.size(), nullptr, nullptr, 0, stream.get());
        stream.synchronize();
        row.device_memory_bytes = double(gpu_memory_used());
      } else {
        CpuNetwork cpu(net, model.parameters, Mode::Training);
        std::vector<float> y(out_per * std::size_t(batch)), g(y.size());
        const auto call = [&] {
          cpu.forward(input.data(), y.data(), batch);
          for (std::size_t i = 0; i < y.size(); ++i) g[i] = 2.f * (y[i] - target[i]) / float(y.size());
          cpu.backward(g.data(), nullptr);
        };
        CpuNetwork first(net, model.parameters, Mode::Training);
        std::vector<float> y0(y.size());
        first.forward(input.data(), y0.data(), batch);
        first_loss = mse(y0, target);
        row.mode =
            "fwd+bwd";  // the CPU row has no optimizer update (Adam on 2.9 M parameters is < 1 % of it)
        row.compute = summarise(time_calls(o.rules, call));
      }
      if (expected >= 0)
        set_check(row, std::abs(first_loss - expected) / expected,
                  device == DeviceKind::Cuda ? forward_tolerance(p) : 1e-5, against);
      else
        set_unchecked(row,
                      "the double reference of this width and batch takes minutes (use --width 8 and a small "
                      "--train-batch, or a GPU run)");
      rows.push_back(row);
      row_ceilings.push_back(ceilings_for(pname));
    }
  }
}

}  // namespace

bool is_learned_row(const std::string& name) {
  return is_architecture(name) || is_pipeline(name) ||
         (name.starts_with("train-") && is_architecture(name.substr(6)));
}

void add_learned_row(const std::string& name, LearnedBenchOptions& o) {
  if (is_architecture(name))
    o.networks.push_back(name);
  else if (is_pipeline(name))
    o.pipelines.push_back(name);
  else if (name.starts_with("train-") && is_architecture(name.substr(6)))
    o.training.push_back(name.substr(6));
  else
    throw InputError(fmt::format("'{}' is not a network, pipeline or training row", name));
}

void run_learned_rows(const RadarSystem& system, const ImagingGrid& grid, DeviceKind device,
                      const LearnedBenchOptions& o,
                      const std::function<Ceilings(const std::string&)>& ceilings_for, std::vector<Row>& rows,
                      std::vector<Ceilings>& row_ceilings) {
  for (const auto& p : o.precisions) parse_inference_precision(p);  // names checked before any work
  for (const auto& a : o.networks) network_rows(a, system, grid, device, o, ceilings_for, rows, row_ceilings);
  for (const auto& m : o.pipelines)
    pipeline_rows(m, system, grid, device, o, ceilings_for, rows, row_ceilings);
  for (const auto& a : o.training)
    training_rows(a, system, grid, device, o, ceilings_for, rows, row_ceilings);
}

}  // namespace nfmimo::bench

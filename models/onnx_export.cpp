#include "models/onnx_export.hpp"

#include <fmt/format.h>

#include "radar/error.hpp"

#if NFMIMO_HAVE_ONNX
#include <cmath>
#include <fstream>

#include <climits>

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include "data/atomic_file.hpp"
#include "models/learned/complex_dense.hpp"
#endif

namespace nfmimo::nn {

#if !NFMIMO_HAVE_ONNX

bool onnx_export_available() { return false; }

void export_onnx(const Model&, const std::string& path, const OnnxExportOptions&) {
  throw InputError(
      fmt::format("{}: this nfmimo was built without the ONNX library (install Debian's libonnx-dev "
                  "and libprotobuf-dev, as tools/scripts/setup.sh does, and rebuild)",
                  path));
}

#else

bool onnx_export_available() { return true; }

namespace {

constexpr int kOpset = 17;
constexpr int kIrVersion = 8;  // the IR of opset 17 (ONNX 1.12)

void add_ints(onnx::NodeProto& node, const std::string& name, const std::vector<std::int64_t>& values) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (auto v : values) a->add_ints(v);
}

std::vector<std::int64_t> ints(const Triple& t) { return {t[0], t[1], t[2]}; }

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto& g) : g_(g) {}

  std::string initializer(const std::string& name, const std::vector<int>& shape,
                          const std::vector<float>& values) {
    auto* t = g_.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int d : shape) t->add_dims(d);
    t->set_raw_data(values.data(),
                    values.size() * sizeof(float));  // little-endian float32, as ONNX stores it
    return name;
  }
  std::string initializer_i64(const std::string& name, const std::vector<std::int64_t>& values) {
    auto* t = g_.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(std::int64_t(values.size()));
    for (auto v : values) t->add_int64_data(v);
    return name;
  }
  onnx::NodeProto& node(const std::string& type, const std::string& name,
                        const std::vector<std::string>& inputs, const std::string& output) {
    auto* n = g_.add_node();
    n->set_op_type(type);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(output);
    return *n;
  }

 private:
  onnx::GraphProto& g_;
};

void set_tensor_type(onnx::ValueInfoProto& v, const std::string& name, const std::vector<int>& dims) {
  v.set_name(name);
  auto* t = v.mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = t->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  for (int d : dims) shape->add_dim()->set_dim_value(d);
}
void set_tensor_type(onnx::ValueInfoProto& v, const std::string& name, const Shape& s) {
  set_tensor_type(v, name, std::vector<int>{s.c, s.x, s.y, s.z});
}

// The pipeline's first stage: measurements [batch, K, T, R, 2] -> the network input [batch, C, nx, ny, nz]
// (|A^H y| / max, or [Re, Im] of A^H y / max|A^H y| for two channels). Returns the input's value name.
std::string add_physics_stage(GraphBuilder& b, onnx::GraphProto& g, const Model& model, int channels) {
  const RadarSystem& sys = model.system;
  const ImagingGrid& grid = model.grid;
  const int k = sys.frequencies(), t = sys.transmitters(), r = sys.receivers();
  const std::int64_t m = std::int64_t(k) * t * r, v = std::int64_t(grid.voxels());
  set_tensor_type(*g.add_input(), "measurements", std::vector<int>{k, t, r, 2});
  const ComplexDense adjoint = ComplexDense::adjoint(sys, grid);  // W [V][M] = A^H, double rounded to float
  std::vector<float> wr(std::size_t(m * v)), wi(std::size_t(m * v));
  for (std::int64_t vi = 0; vi < v; ++vi)
    for (std::int64_t mi = 0; mi < m; ++mi) {
      const cfloat w = adjoint.weights()[std::size_t(vi * m + mi)];
      wr[std::size_t(mi * v + vi)] = w.real();
      wi[std::size_t(mi * v + vi)] = w.imag();
    }
  b.initializer("adjoint.real", {int(m), int(v)}, wr);
  b.initializer("adjoint.imag", {int(m), int(v)}, wi);
  b.initializer_i64("physics.frame_shape", {-1, m, 2});
  b.node("Reshape", "physics.flatten", {"measurements", "physics.frame_shape"}, "physics.y");
  auto& tr = b.node("Transpose", "physics.split_parts", {"physics.y"}, "physics.y_parts");  // [b, 2, M]
  add_ints(tr, "perm", {0, 2, 1});
  b.initializer_i64("physics.one_one", {1, 1});
  auto& split = b.node("Split", "physics.split", {"physics.y_parts", "physics.one_one"}, "physics.yr");
  split.add_output("physics.yi");
  auto* axis = split.add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(1);
  // (Wr + i Wi)(yr + i yi) = (Wr yr - Wi yi) + i (Wr yi + Wi yr), as [b, 1, M] x [M, V] products.
  b.node("MatMul", "physics.rr", {"physics.yr", "adjoint.real"}, "physics.rr");
  b.node("MatMul", "physics.ii", {"physics.yi", "adjoint.imag"}, "physics.ii");
  b.node("MatMul", "physics.ri", {"physics.yi", "adjoint.real"}, "physics.ri");
  b.node("MatMul", "physics.ir", {"physics.yr", "adjoint.imag"}, "physics.ir");
  b.node("Sub", "physics.xr", {"physics.rr", "physics.ii"}, "physics.xr");
  b.node("Add", "physics.xi", {"physics.ri", "physics.ir"}, "physics.xi");
  b.node("Mul", "physics.xr2", {"physics.xr", "physics.xr"}, "physics.xr2");
  b.node("Mul", "physics.xi2", {"physics.xi", "physics.xi"}, "physics.xi2");
  b.node("Add", "physics.mag2", {"physics.xr2", "physics.xi2"}, "physics.mag2");
  b.node("Sqrt", "physics.magnitude", {"physics.mag2"}, "physics.magnitude");
  auto& mx = b.node("ReduceMax", "physics.max", {"physics.magnitude"}, "physics.max");  // [b, 1, 1]
  add_ints(mx, "axes", {2});
  // An all-zero frame is divided by 1 (it stays zero), as the pipelines do.
  b.initializer("physics.zero", {}, {0.0f});
  b.initializer("physics.one", {}, {1.0f});
  b.node("Equal", "physics.is_zero", {"physics.max", "physics.zero"}, "physics.is_zero");
  b.node("Where", "physics.divisor", {"physics.is_zero", "physics.one", "physics.max"}, "physics.divisor");
  b.initializer_i64("physics.volume_shape", {-1, channels, grid.x().size, grid.y().size, grid.z().size});
  if (channels == 1) {
    b.node("Div", "physics.normalised", {"physics.magnitude", "physics.divisor"}, "physics.normalised");
  } else {
    b.node("Div", "physics.real", {"physics.xr", "physics.divisor"}, "physics.real");
    b.node("Div", "physics.imag", {"physics.xi", "physics.divisor"}, "physics.imag");
    auto& cat =
        b.node("Concat", "physics.normalised", {"physics.real", "physics.imag"}, "physics.normalised");
    auto* a = cat.add_attribute();
    a->set_name("axis");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(1);
  }
  b.node("Reshape", "physics.volume", {"physics.normalised", "physics.volume_shape"}, "physics.volume");
  return "physics.volume";
}

}  // namespace

void export_onnx(const Model& model, const std::string& path, const OnnxExportOptions& options) {
  if (model.composite())
    throw InputError(
        fmt::format("{}: ONNX export covers the networks unet3d, unet2d, resnet and cv-unet3d, not the "
                    "composite {}",
                    path, model.architecture));
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  const Network net = model.network();
  const auto& ops = net.ops();
  const auto& shapes = net.shapes();
  const std::vector<int> uses = net.use_counts();
  const auto& p = model.parameters;
  const double eps = model.batch_norm.epsilon;

  onnx::ModelProto m;
  m.set_ir_version(kIrVersion);
  m.set_producer_name("nfmimo");
  m.set_producer_version(NFMIMO_VERSION);
  m.set_domain("org.nfmimo");
  m.set_doc_string(
      fmt::format("nfmimo {} network ({}); input [batch, {}, {}, {}, {}] in the logical layout "
                  "[n, c, x, y, z], z fastest; batch norm {}",
                  model.architecture, "docs/interop.md", shapes[0].c, shapes[0].x, shapes[0].y, shapes[0].z,
                  options.fold_batch_norm ? "folded into the convolutions" : "kept"));
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  const auto meta = [&](const std::string& k, const std::string& v) {
    auto* e = m.add_metadata_props();
    e->set_key(k);
    e->set_value(v);
  };
  meta("architecture", model.architecture);
  meta("layout", "NCDHW with D, H, W = x, y, z (nfmimo's [n, c, x, y, z])");
  meta("normalisation", model.normalisation);
  if (!model.training.empty()) meta("training", model.training);

  onnx::GraphProto& g = *m.mutable_graph();
  g.set_name("nfmimo_" + model.architecture);
  GraphBuilder b(g);
  std::vector<std::string> value(ops.size());
  if (options.pipeline) {
    value[0] = add_physics_stage(b, g, model, net.input_shape().c);
  } else {
    set_tensor_type(*g.add_input(), "input", net.input_shape());
    value[0] = "input";
  }
  std::vector<bool> folded(ops.size(), false);  // batch norms folded into the convolution before them
  for (std::size_t i = 1; i < ops.size(); ++i) {
    const Op& op = ops[i];
    const std::string out = op.name;
    std::vector<std::string> in;
    for (int v : op.inputs) in.push_back(value[std::size_t(v)]);
    const int in_c = shapes[std::size_t(op.inputs.empty() ? 0 : op.inputs[0])].c;
    switch (op.kind) {
      case OpKind::Conv:
      case OpKind::ConvTranspose: {
        const bool t = op.kind == OpKind::ConvTranspose;
        std::vector<float> w = p.at(op.name + ".weight").values;
        std::vector<float> bias = p.at(op.name + ".bias").values;
        // Fold the batch norm that alone reads this convolution's output.
        const std::size_t next = i + 1;
        if (!t && options.fold_batch_norm && next < ops.size() && ops[next].kind == OpKind::BatchNorm &&
            ops[next].inputs[0] == int(i) && uses[i] == 1) {
          const std::string bn = ops[next].name;
          const auto& gamma = p.at(bn + ".weight").values;
          const auto& beta = p.at(bn + ".bias").values;
          const auto& mean = p.at(bn + ".running_mean").values;
          const auto& var = p.at(bn + ".running_var").values;
          const std::size_t per_out = w.size() / bias.size();
          for (std::size_t o = 0; o < bias.size(); ++o) {
            const double s = double(gamma[o]) / std::sqrt(double(var[o]) + eps);
            for (std::size_t k = 0; k < per_out; ++k)
              w[o * per_out + k] = float(double(w[o * per_out + k]) * s);
            bias[o] = float((double(bias[o]) - mean[o]) * s + beta[o]);
          }
          folded[next] = true;
        }
        const std::vector<int> wshape =
            t ? std::vector<int>{in_c, op.channels, op.kernel[0], op.kernel[1], op.kernel[2]}
              : std::vector<int>{op.channels, in_c, op.kernel[0], op.kernel[1], op.kernel[2]};
        in.push_back(b.initializer(op.name + ".weight", wshape, w));
        in.push_back(b.initializer(op.name + ".bias", {op.channels}, bias));
        auto& n = b.node(t ? "ConvTranspose" : "Conv", op.name, in, out);
        add_ints(n, "kernel_shape", ints(op.kernel));
        add_ints(n, "strides", ints(op.stride));
        if (t) {
          add_ints(n, "output_padding", ints(op.pad_hi));
          add_ints(n, "pads", {0, 0, 0, 0, 0, 0});
        } else {
          add_ints(n, "pads",
                   {op.pad_lo[0], op.pad_lo[1], op.pad_lo[2], op.pad_hi[0], op.pad_hi[1], op.pad_hi[2]});
        }
        break;
      }
      case OpKind::BatchNorm: {
        if (folded[i]) {
          value[i] = value[std::size_t(op.inputs[0])];
          continue;
        }
        for (const char* s : {".weight", ".bias", ".running_mean", ".running_var"})
          in.push_back(b.initializer(op.name + s, {in_c}, p.at(op.name + s).values));
        auto& n = b.node("BatchNormalization", op.name, in, out);
        auto* a = n.add_attribute();
        a->set_name("epsilon");
        a->set_type(onnx::AttributeProto::FLOAT);
        a->set_f(float(eps));
        break;
      }
      case OpKind::ReLU:
        b.node("Relu", op.name, in, out);
        break;
      case OpKind::Sigmoid:
        b.node("Sigmoid", op.name, in, out);
        break;
      case OpKind::MaxPool: {
        auto& n = b.node("MaxPool", op.name, in, out);
        add_ints(n, "kernel_shape", ints(op.kernel));
        add_ints(n, "strides", ints(op.stride));
        break;
      }
      case OpKind::Concat: {
        auto& n = b.node("Concat", op.name, in, out);
        auto* a = n.add_attribute();
        a->set_name("axis");
        a->set_type(onnx::AttributeProto::INT);
        a->set_i(1);
        break;
      }
      case OpKind::Add:
        b.node("Add", op.name, in, out);
        break;
      case OpKind::Crop: {
        const Shape& s = shapes[std::size_t(op.inputs[0])];
        in.push_back(b.initializer_i64(op.name + ".starts", ints(op.pad_lo)));
        in.push_back(b.initializer_i64(op.name + ".ends",
                                       {s.x - op.pad_hi[0], s.y - op.pad_hi[1], s.z - op.pad_hi[2]}));
        in.push_back(b.initializer_i64(op.name + ".axes", {2, 3, 4}));
        b.node("Slice", op.name, in, out);
        break;
      }
      case OpKind::ZeroPad: {
        in.push_back(b.initializer_i64(op.name + ".pads", {0, 0, op.pad_lo[0], op.pad_lo[1], op.pad_lo[2], 0,
                                                           0, op.pad_hi[0], op.pad_hi[1], op.pad_hi[2]}));
        b.node("Pad", op.name, in, out);  // mode "constant", value 0 (the defaults)
        break;
      }
      case OpKind::Input:
      case OpKind::Dense:
        throw InputError(
            fmt::format("{}: op '{}' ({}) has no ONNX export", path, op.name, to_string(op.kind)));
    }
    value[i] = out;
  }
  // The graph's output carries the documented name: a final Identity renames the last op's value.
  b.node("Identity", "output", {value[std::size_t(net.output())]}, "output");
  set_tensor_type(*g.add_output(), "output", net.output_shape());

  if (m.ByteSizeLong() > std::size_t(INT_MAX))
    throw InputError(
        fmt::format("{}: the graph would be {:.1f} GB, over protobuf's 2 GB limit for one ONNX file "
                    "(a smaller K or grid, or export the network alone)",
                    path, double(m.ByteSizeLong()) / 1e9));
  try {
    onnx::checker::check_model(m);
  } catch (const std::exception& e) {
    throw Error(
        fmt::format("{}: the ONNX checker refused the exported graph (a bug in nfmimo): {}", path, e.what()));
  }
  AtomicOutput out(path, options.overwrite);
  {
    std::ofstream file(out.temporary_path(), std::ios::binary);
    if (!m.SerializeToOstream(&file) || !file.flush())
      throw InputError(fmt::format("{}: cannot write the ONNX file ({})", path, write_failure_reason()));
  }
  out.commit();
}

#endif

}  // namespace nfmimo::nn

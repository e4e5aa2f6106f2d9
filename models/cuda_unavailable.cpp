// The cuDNN network backend in a build without CUDA: every entry point is a clear InputError (never a silent
// CPU fallback). The classes exist so that code using them links in both builds.
#include "kernels/device.hpp"
#include "models/nn/cuda/network.hpp"
#include "models/learned/gpu_pipeline.hpp"
#include "models/training/gpu_backend.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

namespace {
[[noreturn]] void unavailable(const char* what) {
  throw InputError(std::string(what) + " needs the cuDNN network backend: " + cuda_unavailable_reason());
}
}  // namespace

struct GpuNetwork::Impl {};
GpuNetwork::GpuNetwork(Network, const Parameters&, Mode, Precision) { unavailable("the GPU network"); }
GpuNetwork::~GpuNetwork() = default;
const Network& GpuNetwork::network() const { unavailable("the GPU network"); }
Mode GpuNetwork::mode() const { unavailable("the GPU network"); }
Precision GpuNetwork::precision() const { unavailable("the GPU network"); }
void GpuNetwork::plan(int) { unavailable("the GPU network"); }
void GpuNetwork::plan_predict(int) { unavailable("the GPU network"); }
void GpuNetwork::forward_device(const float*, float*, int, cudaStream_t) { unavailable("the GPU network"); }
void GpuNetwork::predict_device(const float*, float*, int, cudaStream_t) { unavailable("the GPU network"); }
void GpuNetwork::backward_device(const float*, float*, cudaStream_t) { unavailable("the GPU network"); }
void GpuNetwork::forward(const float*, float*, int) { unavailable("the GPU network"); }
void GpuNetwork::predict(const float*, float*, int) { unavailable("the GPU network"); }
void GpuNetwork::backward(const float*, float*) { unavailable("the GPU network"); }
const Parameters& GpuNetwork::parameters() const { unavailable("the GPU network"); }
void GpuNetwork::set_parameters(const Parameters&) { unavailable("the GPU network"); }
const Gradients& GpuNetwork::gradients() const { unavailable("the GPU network"); }
std::string GpuNetwork::description() const { unavailable("the GPU network"); }
std::size_t GpuNetwork::device_bytes() const { unavailable("the GPU network"); }
GpuNetworkInternals& GpuNetwork::internals() { unavailable("the GPU network"); }
int GpuNetwork::fused_convolutions(int) const { unavailable("the GPU network"); }
int GpuNetwork::thin_convolutions(int) const { unavailable("the GPU network"); }
void set_conv_fusion(ConvFusion) {}
void set_thin_convolution(ThinConvolution) {}

struct GpuTrainingBackend::Impl {};
GpuTrainingBackend::GpuTrainingBackend(const Network&, const Parameters&, Precision) {
  unavailable("GPU training");
}
GpuTrainingBackend::~GpuTrainingBackend() = default;
const Network& GpuTrainingBackend::network() const { unavailable("GPU training"); }
std::string GpuTrainingBackend::description() const { unavailable("GPU training"); }
StepResult GpuTrainingBackend::step(const float*, const float*, int, const OptimizerSettings&) {
  unavailable("GPU training");
}
void GpuTrainingBackend::predict(const float*, float*, int) { unavailable("GPU training"); }
void GpuTrainingBackend::plan_sizes(const std::vector<int>&, const std::vector<int>&) {
  unavailable("GPU training");
}
StepResult GpuTrainingBackend::step_device(const float*, const float*, int, const OptimizerSettings&,
                                           cudaStream_t) {
  unavailable("GPU training");
}
void GpuTrainingBackend::predict_device(const float*, float*, int, cudaStream_t) {
  unavailable("GPU training");
}
void GpuTrainingBackend::queue_step(const float*, const float*, int, const OptimizerSettings&, cudaStream_t) {
  unavailable("GPU training");
}
StepResult GpuTrainingBackend::collect_step() { unavailable("GPU training"); }
int GpuTrainingBackend::steps_in_flight() const { return 0; }
long long GpuTrainingBackend::skipped_steps() { unavailable("GPU training"); }
double GpuTrainingBackend::loss_scale() { unavailable("GPU training"); }
Parameters GpuTrainingBackend::parameters() const { unavailable("GPU training"); }
OptimizerState GpuTrainingBackend::optimizer_state() const { unavailable("GPU training"); }
void GpuTrainingBackend::load_state(const Parameters&, const OptimizerState&) { unavailable("GPU training"); }

std::unique_ptr<TrainingBackend> make_gpu_training_backend(const Network&, const Parameters&, Precision) {
  unavailable("GPU training");
}

struct GpuLearnedPipeline::Impl {};
GpuLearnedPipeline::GpuLearnedPipeline(const RadarSystem&, const ImagingGrid&, const Network&,
                                       const Parameters&, bool, Precision, ImagingMode, int) {
  unavailable("the GPU learned pipeline");
}
GpuLearnedPipeline::~GpuLearnedPipeline() = default;
int GpuLearnedPipeline::max_batch() const { unavailable("the GPU learned pipeline"); }
void GpuLearnedPipeline::run_device(const cfloat*, float*, int, cudaStream_t) {
  unavailable("the GPU learned pipeline");
}
void GpuLearnedPipeline::network_input_device(const cfloat*, float*, int, cudaStream_t) {
  unavailable("the GPU learned pipeline");
}
void GpuLearnedPipeline::run(const cfloat*, int, float*) { unavailable("the GPU learned pipeline"); }
void GpuLearnedPipeline::network_input(const cfloat*, int, float*) {
  unavailable("the GPU learned pipeline");
}
void GpuLearnedPipeline::run_live(const cfloat*, float*) { unavailable("the GPU learned pipeline"); }
void GpuLearnedPipeline::replay_live(cudaStream_t) { unavailable("the GPU learned pipeline"); }
bool GpuLearnedPipeline::live_graph() const { return false; }
std::string GpuLearnedPipeline::description() const { unavailable("the GPU learned pipeline"); }
GpuNetwork& GpuLearnedPipeline::network() { unavailable("the GPU learned pipeline"); }

}  // namespace nfmimo::nn

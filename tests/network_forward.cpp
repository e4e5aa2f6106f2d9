// Test helper for the Python interop suites (tests/python/test_keras_onnx.py): runs a weights file's network
// on stored inputs and writes the outputs, so that Keras and ONNX Runtime can be compared with nfmimo itself.
//   nfmimo_network_forward WEIGHTS IN.h5 OUT.h5
// IN.h5: /input float32 [n, c, x, y, z] (nfmimo's logical layout); OUT.h5: /output float32 [n, 1, x, y, z]
// from the CPU backend in inference mode (batch norm with the running statistics).
#include <cstdio>
#include <exception>

#include "data/hdf5.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/weights.hpp"

int main(int argc, char** argv) {
  using namespace nfmimo;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s WEIGHTS IN.h5 OUT.h5\n", argv[0]);
    return 2;
  }
  try {
    const nn::Model model = nn::read_model(argv[1]);
    const h5::File in(argv[2], h5::File::Mode::Read);
    const auto x = in.read<float>("/input");
    const nn::Network net = model.network();
    const nn::Shape s = net.input_shape();
    if (x.dims.size() != 5 || int(x.dims[1]) != s.c || int(x.dims[2]) != s.x || int(x.dims[3]) != s.y ||
        int(x.dims[4]) != s.z) {
      std::fprintf(stderr, "%s: /input does not have the network's shape [n, %d, %d, %d, %d]\n", argv[2], s.c,
                   s.x, s.y, s.z);
      return 2;
    }
    const int n = int(x.dims[0]);
    nn::CpuNetwork cpu(net, model.parameters, nn::Mode::Inference);
    const nn::Shape o = net.output_shape(n);
    std::vector<float> y(o.elements());
    cpu.forward(x.data.data(), y.data(), n);
    h5::File out(argv[3], h5::File::Mode::Create);
    out.write<float>("/output", {hsize_t(o.n), hsize_t(o.c), hsize_t(o.x), hsize_t(o.y), hsize_t(o.z)},
                     y.data());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nfmimo_network_forward: %s\n", e.what());
    return 2;
  }
  return 0;
}

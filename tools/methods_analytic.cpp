// The analytic methods: adjoint (A^H y), backprojection and Kirchhoff migration, on the CPU or GPU.
#include "kernels/imager.hpp"
#include "radar/names.hpp"
#include "tools/methods.hpp"

namespace nfmimo {

std::vector<MethodEntry> analytic_methods() {
  std::vector<MethodEntry> entries;
  const std::pair<Method, const char*> list[] = {
      {Method::Adjoint, "adjoint of the Born model, A^H y (the physics stage of Deep2S)"},
      {Method::Backprojection, "phase-only backprojection, weights exp(+j k (Rt + Rr))"},
      {Method::Kirchhoff, "Kirchhoff migration (obliquity and range weights)"}};
  for (const auto& item : list) {
    // A plain variable, not a structured binding: the lambda captures it, which clang before 16 refuses
    // for bindings (the sanitizer and fuzz builds use clang 14).
    const Method method = item.first;
    const char* help = item.second;
    entries.push_back({to_string(method), help, [method](const MethodContext& c) {
                         const ImagingMode mode = parse_mode(c.mode);
                         const Imager imager(*c.system, *c.grid, c.device, c.batch);
                         MethodResult r;
                         r.complex.resize(c.grid->voxels() * c.frames);
                         imager.image(method, mode, c.measurements, r.complex.data(), c.frames);
                         r.label = to_string(method) + " (" + to_string(mode) + ")";
                         r.device = imager.device_description();
                         return r;
                       }});
  }
  return entries;
}

}  // namespace nfmimo

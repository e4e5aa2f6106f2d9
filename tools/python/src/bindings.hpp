// The parts of the nfmimo._core module, each defined in the file of the same name (core.cpp calls them in
// this order, which is the order Python sees the names in).
#pragma once

#include <nanobind/nanobind.h>

namespace nfmimo::python {

void bind_geometry(nanobind::module_& m);        // System, Grid and their constructors
void bind_operator(nanobind::module_& m);        // Operator: forward and imaging on host or GPU arrays
void bind_reconstruction(nanobind::module_& m);  // Model, reconstruct and the method names
void bind_files(nanobind::module_& m);           // measurement and volume files
void bind_synthesizer(nanobind::module_& m);     // dataset files and the Synthesizer

}  // namespace nfmimo::python

// nfmimo._core: the engine's systems, grids, operators, method table, files and synthesizer for Python.
//
// Arrays cross the boundary through DLPack (nanobind ndarrays): the operators read their input and write
// their output in place, on the host or on the GPU, without copies; everything that allocates its result in
// C++ (reconstruct, files, the synthesizer) hands the buffer over to a numpy array that owns it. The Python
// layer (tools/python/nfmimo/) converts dtypes and layouts and allocates operator outputs; this layer checks
// every array again before any work, so a wrong call is a ValueError and never a crash. Every long call
// releases the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <omp.h>

#include <cstdint>

#include <fmt/format.h>

#include "kernels/device.hpp"
#include "radar/error.hpp"
#include "tools/python/src/arrays.hpp"
#include "tools/python/src/bindings.hpp"

NB_MODULE(_core, m) {
  using namespace nfmimo;
  using python::InArray;
  m.doc() = "nfmimo engine bindings (use the nfmimo package, not this module)";
  // Instances legitimately outlive the interpreter's teardown (a forked DataLoader worker exits with its
  // dataset alive, an autograd graph holds an operator): nanobind's leak report at exit would only alarm
  // users.
  nb::set_leak_warnings(false);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const InputError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const OutOfMemoryError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  python::bind_geometry(m);
  python::bind_operator(m);
  python::bind_reconstruction(m);
  python::bind_files(m);
  python::bind_synthesizer(m);

  // The address nanobind sees for an array (tests check that the operators work on the caller's memory).
  m.def("data_pointer", [](InArray a) { return reinterpret_cast<std::uintptr_t>(a.data()); });
  m.def("set_num_threads", [](int n) {
    require(n >= 1, fmt::format("threads must be positive (got {})", n));
    omp_set_num_threads(n);
  });
  m.def("get_num_threads", [] { return omp_get_max_threads(); });
  m.def("cuda_built", &cuda_built);
  m.def("cuda_device_count", &cuda_device_count);
  m.def("cuda_unavailable_reason", &cuda_unavailable_reason);
  m.attr("__version__") = NFMIMO_VERSION;
}

// Arrays at the Python boundary: DLPack views in (checked by hand, since nanobind accepts any dtype, device
// and layout here), numpy arrays that own moved vectors out.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "radar/complex.hpp"
#include "radar/error.hpp"
#include "radar/system.hpp"

namespace nb = nanobind;

namespace nfmimo::python {

using InArray = nb::ndarray<nb::ro>;  // any dtype, device and layout: checked by hand below
using OutArray = nb::ndarray<>;

constexpr int kDlCpu = 1, kDlCuda = 2;

// numpy array owning a moved vector (no copy on the way out).
template <class T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T>&& data, const std::vector<std::size_t>& shape) {
  auto* owner = new std::vector<T>(std::move(data));
  nb::capsule capsule(owner, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(owner->data(), shape.size(), shape.data(), capsule);
}

std::string shape_text(const nb::ndarray<nb::ro>& a);
std::string dims_text(const std::vector<std::size_t>& dims);

// Checks `a` is a C-contiguous array of T whose last dimensions are `trailing`; returns the product of the
// leading (batch) dimensions. InputError (ValueError in Python) naming `what` otherwise.
template <class T>
std::size_t check_array(const nb::ndarray<nb::ro>& a, const std::string& what,
                        const std::vector<std::size_t>& trailing, const char* dtype_name) {
  require(a.dtype() == nb::dtype<T>(), fmt::format("{}: expected dtype {}", what, dtype_name));
  const std::size_t nd = a.ndim();
  require(nd >= trailing.size(),
          fmt::format("{}: expected shape (..., {}), got {}", what, dims_text(trailing), shape_text(a)));
  for (std::size_t i = 0; i < trailing.size(); ++i)
    require(a.shape(nd - trailing.size() + i) == trailing[i],
            fmt::format("{}: expected shape (..., {}), got {}", what, dims_text(trailing), shape_text(a)));
  std::size_t batch = 1;
  for (std::size_t i = 0; i + trailing.size() < nd; ++i) batch *= a.shape(i);
  if (a.size() == 0) return batch;  // an empty array has no layout to check (exporters differ on its strides)
  std::int64_t expect = 1;
  for (std::size_t i = nd; i-- > 0;) {
    require(a.shape(i) <= 1 || a.stride(i) == expect,
            fmt::format("{}: the array is not C-contiguous (strides differ from its shape)", what));
    expect *= static_cast<std::int64_t>(a.shape(i));
  }
  return batch;
}

// A new array that owns its buffer, as a property's value (properties default to views into their object).
template <class A>
nb::object owned(A&& array) {
  return nb::cast(std::forward<A>(array), nb::rv_policy::move);
}

inline nb::ndarray<nb::ro> as_in(const OutArray& a) { return nb::ndarray<nb::ro>(a); }

std::vector<std::size_t> volume_dims(const ImagingGrid& g);

// Host complex64 [..., K, T, R] of `system`: pointer and frame count.
std::pair<const cfloat*, int> host_measurements(const InArray& y, const RadarSystem& system);

}  // namespace nfmimo::python

// String-array attributes and groups, as Keras's HDF5 files hold them.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "models/keras/internal.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn::keras {

std::vector<std::string> string_array_attribute(const h5::File& f, const std::string& object,
                                                const std::string& name) {
  if (!f.has_attribute(object, name)) return {};
  h5::Handle target(H5Oopen(f.id(), object.c_str(), H5P_DEFAULT), H5Oclose);
  h5::Handle a(H5Aopen(target.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  h5::Handle type(H5Aget_type(a.get()), H5Tclose);
  h5::Handle space(H5Aget_space(a.get()), H5Sclose);
  if (!a || !type || !space || H5Tget_class(type.get()) != H5T_STRING)
    throw InputError(
        fmt::format("{}: attribute '{}' of '{}' is not a list of strings", f.path(), name, object));
  return h5::read_string_values(a.get(), f.path(), fmt::format("attribute '{}' of '{}'", name, object));
}

void set_string_array_attribute(const h5::File& f, const std::string& object, const std::string& name,
                                const std::vector<std::string>& values) {
  // Fixed-length, null-padded: what h5py writes for numpy bytes arrays, which Keras decodes.
  std::size_t size = 1;
  for (const auto& v : values) size = std::max(size, v.size());
  std::vector<char> buffer(size * std::max<std::size_t>(values.size(), 1), '\0');
  for (std::size_t i = 0; i < values.size(); ++i)
    std::memcpy(buffer.data() + i * size, values[i].data(), values[i].size());
  h5::Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), size);
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  const hsize_t dims[1] = {values.size()};
  h5::Handle space(values.empty() ? H5Screate(H5S_NULL) : H5Screate_simple(1, dims, nullptr), H5Sclose);
  h5::Handle target(H5Oopen(f.id(), object.c_str(), H5P_DEFAULT), H5Oclose);
  h5::Handle a(H5Acreate2(target.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
               H5Aclose);
  if (!a || (!values.empty() && H5Awrite(a.get(), type.get(), buffer.data()) < 0))
    throw InputError(fmt::format("{}: cannot write attribute '{}' on '{}'", f.path(), name, object));
}

void make_group(const h5::File& f, const std::string& path) {
  h5::Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  h5::Handle g(H5Gcreate2(f.id(), path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g) throw InputError(fmt::format("{}: cannot create the group '{}'", f.path(), path));
}

}  // namespace nfmimo::nn::keras

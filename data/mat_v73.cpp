// MATLAB v7.3 .mat files, which are HDF5 files with a 512-byte user block (MATLAB's text header), read
// through the HDF5 library. MATLAB's layout: a struct is a group (attribute MATLAB_class = "struct"), a
// numeric array a dataset with MATLAB_class = "double", "single", ...; a complex array is the compound {real,
// imag}; an empty array is a dataset of its dimensions with the attribute MATLAB_empty = 1. Dimensions are
// stored reversed (MATLAB is column-major, HDF5 row-major), so the values come out column-major once the
// dimensions are flipped.
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "data/hdf5.hpp"
#include "data/mat_file.hpp"
#include "radar/error.hpp"

namespace nfmimo {

bool is_hdf5_file(const std::string& path) {
  static const char signature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  // HDF5 looks for its superblock at 0, 512, 1024, 2048, ... (user blocks are powers of two from 512).
  for (std::streamoff offset = 0; offset <= (1 << 20); offset = offset ? offset * 2 : 512) {
    char buffer[8];
    in.clear();
    in.seekg(offset);
    if (!in.read(buffer, 8)) return false;
    if (std::memcmp(buffer, signature, 8) == 0) return true;
  }
  return false;
}

namespace {

std::string hdf5_path(const std::string& field) {
  std::string p = "/" + field;
  for (char& c : p)
    if (c == '.') c = '/';
  return p;
}

class MatV73File final : public MatFile {
 public:
  explicit MatV73File(const std::string& path) : MatFile(path) {
    h5::silence_library_errors();
    file_ = h5::Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file_)
      throw InputError(
          fmt::format("{}: has an HDF5 signature (MATLAB v7.3) but HDF5 cannot open it (the file "
                      "is truncated or corrupt)",
                      path));
  }

  std::string format() const override { return "MATLAB v7.3 (HDF5)"; }

  bool has(const std::string& field) const override {
    // Checks each link on the way: H5Lexists fails (rather than returning false) past a missing group.
    std::string p;
    for (const char c : hdf5_path(field) + "/") {
      if (c == '/' && !p.empty()) {
        if (H5Lexists(file_.get(), p.c_str(), H5P_DEFAULT) <= 0) return false;
      }
      p += c;
    }
    return true;
  }

  MatArray read(const std::string& field) const override {
    if (!has(field)) throw InputError(fmt::format("{}: is missing", where(field)));
    const std::string p = hdf5_path(field);
    {
      h5::check_link_target(file_.get(), p, path());  // before HDF5 loads the header and decodes the layout
      h5::Handle object(H5Oopen(file_.get(), p.c_str(), H5P_DEFAULT), H5Oclose);
      if (!object)
        throw InputError(fmt::format("{}: cannot be read (the file is truncated or corrupt)", where(field)));
      if (H5Iget_type(object.get()) != H5I_DATASET)
        throw InputError(
            fmt::format("{}: is a struct (an HDF5 group); expected a numeric array", where(field)));
    }
    h5::Handle d(H5Dopen2(file_.get(), p.c_str(), H5P_DEFAULT), H5Dclose);
    if (!d)
      throw InputError(fmt::format("{}: cannot be opened (the file is truncated or corrupt)", where(field)));
    MatArray a;
    a.matlab_class = string_attribute(d.get(), "MATLAB_class", field);
    h5::Handle space(H5Dget_space(d.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    std::vector<hsize_t> hd(rank > 0 ? std::size_t(rank) : 0);
    if (rank > 0) H5Sget_simple_extent_dims(space.get(), hd.data(), nullptr);
    a.dims.assign(hd.rbegin(), hd.rend());
    if (int_attribute(d.get(), "MATLAB_empty", field) == 1) {
      // The dataset holds the dimensions of an empty array, not values.
      a.dims.assign(2, 0);
      return a;
    }
    h5::Handle type(H5Dget_type(d.get()), H5Tclose);
    const H5T_class_t cls = H5Tget_class(type.get());
    const std::size_t n = a.numel();
    if (cls == H5T_COMPOUND) {
      if (H5Tget_member_index(type.get(), "real") < 0 || H5Tget_member_index(type.get(), "imag") < 0)
        throw InputError(
            fmt::format("{}: is a compound without the members real and imag (MATLAB's complex "
                        "layout); nfmimo cannot read it as numbers",
                        where(field)));
      a.complex = true;
      struct Pair {
        double real, imag;
      };
      h5::Handle memory(H5Tcreate(H5T_COMPOUND, sizeof(Pair)), H5Tclose);
      H5Tinsert(memory.get(), "real", HOFFSET(Pair, real), H5T_NATIVE_DOUBLE);
      H5Tinsert(memory.get(), "imag", HOFFSET(Pair, imag), H5T_NATIVE_DOUBLE);
      std::vector<Pair> values(n);
      if (n && H5Dread(d.get(), memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
        throw truncated(field);
      a.real.resize(n);
      a.imag.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        a.real[i] = values[i].real;
        a.imag[i] = values[i].imag;
      }
    } else if (cls == H5T_FLOAT || cls == H5T_INTEGER) {
      if (a.matlab_class == "char")
        throw InputError(fmt::format("{}: is a char array; expected a numeric array", where(field)));
      a.real.resize(n);
      if (n && H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.real.data()) < 0)
        throw truncated(field);
    } else if (cls == H5T_REFERENCE) {
      throw InputError(fmt::format("{}: is a {} (HDF5 references); expected a numeric array", where(field),
                                   a.matlab_class.empty() ? "cell or struct array" : a.matlab_class));
    } else {
      throw InputError(fmt::format("{}: has an HDF5 type nfmimo cannot read as numbers", where(field)));
    }
    if (a.matlab_class.empty())
      a.matlab_class = cls == H5T_COMPOUND || cls == H5T_FLOAT ? "double" : "integer";
    return a;
  }

 private:
  InputError truncated(const std::string& field) const {
    return InputError(
        fmt::format("{}: its values cannot be read (the file is truncated or corrupt)", where(field)));
  }

  // The MATLAB_class tag: "" when absent or not one string (the caller then refuses the field by its type).
  std::string string_attribute(hid_t object, const char* name, const std::string& field) const {
    h5::check_attribute_messages(object, path(), fmt::format("field '{}'", field));
    if (H5Aexists(object, name) <= 0) return "";
    h5::Handle attr(H5Aopen(object, name, H5P_DEFAULT), H5Aclose);
    h5::Handle type(attr ? H5Aget_type(attr.get()) : -1, H5Tclose);
    if (!type || H5Tget_class(type.get()) != H5T_STRING) return "";
    const auto values =
        h5::read_string_values(attr.get(), path(), fmt::format("field '{}': attribute '{}'", field, name));
    return values.size() == 1 ? values[0] : "";
  }

  // The MATLAB_empty flag: 0 when absent or not one integer (one value only: H5Aread writes every element).
  long long int_attribute(hid_t object, const char* name, const std::string& field) const {
    h5::check_attribute_messages(object, path(), fmt::format("field '{}'", field));
    if (H5Aexists(object, name) <= 0) return 0;
    h5::Handle attr(H5Aopen(object, name, H5P_DEFAULT), H5Aclose);
    h5::Handle type(attr ? H5Aget_type(attr.get()) : -1, H5Tclose);
    h5::Handle space(attr ? H5Aget_space(attr.get()) : -1, H5Sclose);
    if (!type || !space || H5Tget_class(type.get()) != H5T_INTEGER ||
        H5Sget_simple_extent_npoints(space.get()) != 1)
      return 0;
    h5::require_attribute_storage(attr.get(), path(), fmt::format("field '{}': attribute '{}'", field, name));
    long long v = 0;
    if (H5Aread(attr.get(), H5T_NATIVE_LLONG, &v) < 0) return 0;
    return v;
  }

  h5::Handle file_;
};

}  // namespace

std::unique_ptr<MatFile> open_mat_v73(const std::string& path) { return std::make_unique<MatV73File>(path); }

}  // namespace nfmimo

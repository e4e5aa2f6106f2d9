// Reading numeric arrays out of MATLAB .mat files, by dotted path ("EMData.Values",
// "MIMOArray.Transmitter.X").
//
// Two formats, one interface: v5/v7 (the classic MAT format, zlib-compressed in v7) through libmatio
// (data/mat_v5.cpp), and v7.3, which is HDF5, through the HDF5 library (data/mat_v73.cpp). The file's first
// bytes decide: an HDF5 signature (v7.3 places it after a 512-byte user block) means v7.3, anything else goes
// to libmatio. Arrays come back in MATLAB's own order: `dims` as MATLAB reports size(), the values
// column-major (dims[0] varies fastest), whatever the storage; v7.3 stores the transposed dimensions, and the
// reader undoes that. Every problem is an InputError naming the file and the field.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace nfmimo {

struct MatArray {
  std::vector<std::size_t> dims;  // MATLAB's size(), column-major storage
  bool complex = false;
  std::vector<double> real, imag;  // numel values each (imag empty for real arrays)
  std::string matlab_class;        // "double", "single", "int16", ...

  std::size_t numel() const;
  std::string shape() const;  // "[9 x 16 x 251]"
};

class MatFile {
 public:
  virtual ~MatFile() = default;
  const std::string& path() const { return path_; }
  // "MATLAB v5/v7 (libmatio)" or "MATLAB v7.3 (HDF5)".
  virtual std::string format() const = 0;
  // True when the dotted path names a variable or a (nested) struct field, numeric or struct.
  virtual bool has(const std::string& field) const = 0;
  // A numeric array (real or complex). InputError if missing, a struct, a cell, a string or sparse.
  virtual MatArray read(const std::string& field) const = 0;

  // "FILE: field 'NAME': " prefix for messages.
  std::string where(const std::string& field) const;

 protected:
  explicit MatFile(std::string path) : path_(std::move(path)) {}

 private:
  std::string path_;
};

// Opens a .mat file of either version. InputError if it does not exist or is neither format.
std::unique_ptr<MatFile> open_mat_file(const std::string& path);

// The two readers (one file each); open_mat_file chooses.
std::unique_ptr<MatFile> open_mat_v5(const std::string& path);
std::unique_ptr<MatFile> open_mat_v73(const std::string& path);
// True when the file holds an HDF5 signature at offset 0 or at a user-block boundary (512, 1024, ...).
bool is_hdf5_file(const std::string& path);

}  // namespace nfmimo

// MATLAB v5/v7 .mat files through libmatio (Debian's libmatio-dev).
#include <matio.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

#include <fmt/format.h>

#include "data/mat_file.hpp"
#include "radar/error.hpp"

namespace nfmimo {

std::size_t MatArray::numel() const {
  std::size_t n = 1;
  for (std::size_t d : dims) n *= d;
  return n;
}

std::string MatArray::shape() const {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s + "]";
}

std::string MatFile::where(const std::string& field) const {
  return fmt::format("{}: field '{}'", path(), field);
}

std::unique_ptr<MatFile> open_mat_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw InputError(fmt::format("{}: no such file", path));
  return is_hdf5_file(path) ? open_mat_v73(path) : open_mat_v5(path);
}

namespace {

// libmatio reports problems through a log callback (and prints them by default). We collect the last message
// so that an error names what libmatio saw, and print nothing of our own accord.
std::mutex log_mutex;
std::string last_log;

void collect_log(int /*level*/, char* message) { last_log = message ? message : ""; }

std::string take_log() {
  std::string m;
  std::swap(m, last_log);
  return m;
}

const char* class_name(matio_classes c) {
  switch (c) {
    case MAT_C_EMPTY:
      return "empty";
    case MAT_C_CELL:
      return "cell";
    case MAT_C_STRUCT:
      return "struct";
    case MAT_C_OBJECT:
      return "object";
    case MAT_C_CHAR:
      return "char";
    case MAT_C_SPARSE:
      return "sparse";
    case MAT_C_DOUBLE:
      return "double";
    case MAT_C_SINGLE:
      return "single";
    case MAT_C_INT8:
      return "int8";
    case MAT_C_UINT8:
      return "uint8";
    case MAT_C_INT16:
      return "int16";
    case MAT_C_UINT16:
      return "uint16";
    case MAT_C_INT32:
      return "int32";
    case MAT_C_UINT32:
      return "uint32";
    case MAT_C_INT64:
      return "int64";
    case MAT_C_UINT64:
      return "uint64";
    default:
      return "unknown";
  }
}

template <class T>
void widen(const void* src, std::size_t n, std::vector<double>& out) {
  out.resize(n);
  const T* p = static_cast<const T*>(src);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(p[i]);
}

// Converts n elements of matio's storage type (Mat_VarRead stores values in the class's type) to double.
bool to_double(matio_classes c, const void* src, std::size_t n, std::vector<double>& out) {
  switch (c) {
    case MAT_C_DOUBLE:
      widen<double>(src, n, out);
      return true;
    case MAT_C_SINGLE:
      widen<float>(src, n, out);
      return true;
    case MAT_C_INT8:
      widen<std::int8_t>(src, n, out);
      return true;
    case MAT_C_UINT8:
      widen<std::uint8_t>(src, n, out);
      return true;
    case MAT_C_INT16:
      widen<std::int16_t>(src, n, out);
      return true;
    case MAT_C_UINT16:
      widen<std::uint16_t>(src, n, out);
      return true;
    case MAT_C_INT32:
      widen<std::int32_t>(src, n, out);
      return true;
    case MAT_C_UINT32:
      widen<std::uint32_t>(src, n, out);
      return true;
    case MAT_C_INT64:
      widen<std::int64_t>(src, n, out);
      return true;
    case MAT_C_UINT64:
      widen<std::uint64_t>(src, n, out);
      return true;
    default:
      return false;
  }
}

std::vector<std::string> split_field(const std::string& field) {
  std::vector<std::string> parts;
  std::stringstream s(field);
  std::string part;
  while (std::getline(s, part, '.')) parts.push_back(part);
  return parts;
}

class MatV5File final : public MatFile {
 public:
  explicit MatV5File(const std::string& path) : MatFile(path) {
    std::lock_guard lock(log_mutex);
    Mat_LogInitFunc("nfmimo", collect_log);
    take_log();
    mat_ = Mat_Open(path.c_str(), MAT_ACC_RDONLY);
    if (!mat_) {
      const std::string why = take_log();
      throw InputError(
          fmt::format("{}: not a readable MATLAB .mat file (v5/v7 through libmatio, v7.3 as HDF5){}", path,
                      why.empty() ? "" : ": " + why));
    }
  }
  ~MatV5File() override {
    for (auto& [name, var] : variables_) Mat_VarFree(var);
    Mat_Close(mat_);
  }

  std::string format() const override {
    switch (Mat_GetVersion(mat_)) {
      case MAT_FT_MAT4:
        return "MATLAB v4 (libmatio)";
      case MAT_FT_MAT73:
        return "MATLAB v7.3 (libmatio)";
      default:
        return "MATLAB v5/v7 (libmatio)";
    }
  }

  bool has(const std::string& field) const override { return find(field, false) != nullptr; }

  MatArray read(const std::string& field) const override {
    const matvar_t* v = find(field, true);
    if (v->class_type == MAT_C_STRUCT || v->class_type == MAT_C_CELL || v->class_type == MAT_C_CHAR ||
        v->class_type == MAT_C_SPARSE || v->class_type == MAT_C_OBJECT)
      throw InputError(fmt::format("{}: is a {} array; expected a numeric array", where(field),
                                   class_name(v->class_type)));
    MatArray a;
    a.matlab_class = class_name(v->class_type);
    a.dims.assign(v->dims, v->dims + v->rank);
    a.complex = v->isComplex != 0;
    const std::size_t n = a.numel();
    if (n > 0 && !v->data)
      throw InputError(
          fmt::format("{}: its data could not be read (the file is truncated or corrupt)", where(field)));
    bool ok = true;
    if (a.complex) {
      const auto* split = static_cast<const mat_complex_split_t*>(v->data);
      ok = n == 0 || (split && split->Re && split->Im && to_double(v->class_type, split->Re, n, a.real) &&
                      to_double(v->class_type, split->Im, n, a.imag));
    } else {
      ok = n == 0 || to_double(v->class_type, v->data, n, a.real);
    }
    if (!ok)
      throw InputError(fmt::format("{}: has class {}, which nfmimo does not read as numbers", where(field),
                                   a.matlab_class));
    return a;
  }

 private:
  // The top-level variable, read whole (with its fields) once and cached.
  matvar_t* variable(const std::string& name, bool required) const {
    if (auto it = variables_.find(name); it != variables_.end()) return it->second;
    std::lock_guard lock(log_mutex);
    take_log();
    // Only a variable that exists is read: Mat_VarReadInfo walks the headers without loading data.
    matvar_t* info = Mat_VarReadInfo(mat_, name.c_str());
    if (!info) {
      const std::string why = take_log();
      if (required)
        throw InputError(fmt::format("{}: is missing{}", where(name), why.empty() ? "" : " (" + why + ")"));
      return nullptr;
    }
    Mat_VarFree(info);
    matvar_t* v = Mat_VarRead(mat_, name.c_str());
    const std::string why = take_log();
    if (!v || !why.empty()) {
      if (v) Mat_VarFree(v);
      throw InputError(fmt::format("{}: could not be read (the file is truncated or corrupt){}", where(name),
                                   why.empty() ? "" : ": " + why));
    }
    variables_[name] = v;
    return v;
  }

  const matvar_t* find(const std::string& field, bool required) const {
    const auto parts = split_field(field);
    if (parts.empty()) throw InputError(fmt::format("{}: empty field name", path()));
    matvar_t* v = variable(parts[0], required);
    std::string walked = parts[0];
    for (std::size_t i = 1; v && i < parts.size(); ++i) {
      if (v->class_type != MAT_C_STRUCT) {
        if (!required) return nullptr;
        throw InputError(fmt::format("{}: is a {} array, not a struct, so it has no field '{}'",
                                     where(walked), class_name(v->class_type), parts[i]));
      }
      std::size_t numel = 1;
      for (int d = 0; d < v->rank; ++d) numel *= v->dims[d];
      if (numel != 1) {
        if (!required) return nullptr;
        throw InputError(fmt::format("{}: is a struct array of {} elements; expected a single struct",
                                     where(walked), numel));
      }
      matvar_t* next = Mat_VarGetStructFieldByName(v, parts[i].c_str(), 0);
      walked += "." + parts[i];
      if (!next) {
        if (!required) return nullptr;
        throw InputError(fmt::format("{}: is missing", where(walked)));
      }
      v = next;
    }
    return v;
  }

  mat_t* mat_ = nullptr;
  mutable std::map<std::string, matvar_t*> variables_;
};

}  // namespace

std::unique_ptr<MatFile> open_mat_v5(const std::string& path) { return std::make_unique<MatV5File>(path); }

}  // namespace nfmimo

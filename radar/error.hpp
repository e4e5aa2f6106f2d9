// One error vocabulary for the whole engine.
//
// InputError: something the user gave us is wrong (a file, a dataset, an option). The CLI turns it into one
// clear message and exit code 2. DeviceError: a CUDA / cuFFT / cuDNN call failed; it carries the status and
// the call. OutOfMemoryError is the device error a user can act on (smaller batch, CPU).
#pragma once

#include <stdexcept>
#include <string>

namespace nfmimo {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad user input: files, datasets, shapes, options.
class InputError : public Error {
 public:
  using Error::Error;
};

// A failed call into a device library; `call` is the expression, `status` the library's code.
class DeviceError : public Error {
 public:
  DeviceError(const std::string& what, std::string call, int status)
      : Error(what), call_(std::move(call)), status_(status) {}
  const std::string& call() const { return call_; }
  int status() const { return status_; }

 private:
  std::string call_;
  int status_;
};

class OutOfMemoryError : public DeviceError {
 public:
  using DeviceError::DeviceError;
};

// Precondition check at an API boundary: throws InputError with a message a user can act on.
inline void require(bool condition, const std::string& message) {
  if (!condition) throw InputError(message);
}

}  // namespace nfmimo

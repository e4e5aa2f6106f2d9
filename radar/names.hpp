// Names of methods and modes as the CLI and the files spell them.
#pragma once

#include <string>

#include "radar/physics.hpp"

namespace nfmimo {

std::string to_string(Method method);
std::string to_string(ImagingMode mode);
// Throw InputError listing the accepted names.
Method parse_method(const std::string& name);
ImagingMode parse_mode(const std::string& name);

}  // namespace nfmimo

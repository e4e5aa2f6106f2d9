// Tensors of the network engine.
//
// Logical layout everywhere outside a backend: [n, c, x, y, z] with z fastest (the volumes' own index order,
// with channels after the batch index: NCDHW in cuDNN/PyTorch terms, D = x). A backend may store activations
// differently inside (the CPU fast path and cuDNN use channels-last NDHWC); it converts at its boundary.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "radar/aligned.hpp"

namespace nfmimo::nn {

// Shape of an activation tensor. Dense layers use x = y = z = 1.
struct Shape {
  int n = 0, c = 0, x = 1, y = 1, z = 1;

  std::size_t spatial() const { return std::size_t(x) * y * z; }
  std::size_t per_sample() const { return spatial() * c; }
  std::size_t elements() const { return per_sample() * n; }
  int axis(int a) const { return a == 0 ? x : a == 1 ? y : z; }
  bool operator==(const Shape&) const = default;
};
std::string to_string(const Shape& s);  // "[n, c, x, y, z]"

// Dense storage in the logical layout, 64-byte aligned.
template <class T>
struct Tensor {
  Shape shape;
  aligned_vector<T> data;

  Tensor() = default;
  explicit Tensor(Shape s) : shape(s), data(s.elements(), T(0)) {}
  T* ptr() { return data.data(); }
  const T* ptr() const { return data.data(); }
  std::size_t size() const { return data.size(); }
  // Element (n, c, x, y, z).
  T& at(int n, int c, int x, int y, int z) { return data[offset(n, c, x, y, z)]; }
  const T& at(int n, int c, int x, int y, int z) const { return data[offset(n, c, x, y, z)]; }
  std::size_t offset(int n, int c, int x, int y, int z) const {
    return (((std::size_t(n) * shape.c + c) * shape.x + x) * shape.y + y) * shape.z + z;
  }
};

// A named parameter tensor (weights, biases, batch-norm statistics), always stored in float32 with a
// free-rank shape; `trainable` is false for batch-norm running statistics.
struct ParameterTensor {
  std::vector<int> shape;
  std::vector<float> values;
  bool trainable = true;

  std::size_t elements() const {
    std::size_t e = 1;
    for (int d : shape) e *= std::size_t(d);
    return e;
  }
};

}  // namespace nfmimo::nn

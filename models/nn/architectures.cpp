#include "models/nn/architectures.hpp"

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo::nn {

const std::vector<std::string>& architecture_names() {
  static const std::vector<std::string> names = {"unet3d", "unet2d", "resnet", "cv-unet3d"};
  return names;
}

const std::vector<std::string>& composite_architecture_names() {
  static const std::vector<std::string> names = {"deepdi", "deep2s-plus"};
  return names;
}

bool is_composite_architecture(const std::string& architecture) {
  for (const auto& n : composite_architecture_names())
    if (n == architecture) return true;
  return false;
}

static void require_known(const std::string& architecture) {
  for (const auto& n : architecture_names())
    if (n == architecture) return;
  if (is_composite_architecture(architecture)) return;
  throw InputError(
      fmt::format("unknown architecture '{}' (known: unet3d, unet2d, resnet, cv-unet3d, deepdi, deep2s-plus)",
                  architecture));
}

int architecture_input_channels(const std::string& architecture) {
  require_known(architecture);
  return architecture == "cv-unet3d" || is_composite_architecture(architecture) ? 2 : 1;
}

namespace {

// [Conv + BN + ReLU]; returns the ReLU's value.
int conv_block(Network& net, const std::string& name, int x, int channels, Triple kernel) {
  x = net.conv(name + ".conv", x, channels, kernel);
  x = net.batch_norm(name + ".bn", x);
  return net.relu(name + ".relu", x);
}

Network unet(const std::string& architecture, int nx, int ny, int nz, int in_channels, bool kernels_3d,
             int width) {
  constexpr int kLevels = 3;
  constexpr int kMultiple = 1 << kLevels;  // three 2x2x2 poolings
  const int sizes[3] = {nx, ny, nz};
  Triple crop{};
  for (int a = 0; a < 3; ++a) {
    require(sizes[a] >= kMultiple,
            fmt::format("the {} network needs at least {} voxels on every axis; the grid is "
                        "{} x {} x {}",
                        architecture, kMultiple, nx, ny, nz));
    crop[a] = sizes[a] % kMultiple;
  }
  const bool cropping = crop != Triple{0, 0, 0};
  const Triple k3 = kernels_3d ? Triple{3, 3, 3} : Triple{3, 3, 1};
  const Triple up_kernel = kernels_3d ? Triple{2, 2, 2} : Triple{2, 2, 1};

  Network net(architecture, Shape{1, in_channels, nx, ny, nz});
  int x = 0;
  if (cropping) x = net.crop("crop", x, crop, {0, 0, 0});

  std::vector<int> skips;
  for (int level = 1; level <= kLevels; ++level) {
    const int channels = width << (level - 1);
    x = conv_block(net, fmt::format("enc{}.block1", level), x, channels, k3);
    x = conv_block(net, fmt::format("enc{}.block2", level), x, channels, k3);
    skips.push_back(x);
    x = net.max_pool(fmt::format("pool{}", level), x, {2, 2, 2});
  }
  for (int level = kLevels; level >= 1; --level) {
    const int channels = width << (level - 1);
    x = net.conv_transpose(fmt::format("up{}", level), x, channels, up_kernel, {2, 2, 2});
    x = net.concat(fmt::format("cat{}", level), x, skips[std::size_t(level - 1)]);
    x = conv_block(net, fmt::format("dec{}.block1", level), x, channels, k3);
    x = conv_block(net, fmt::format("dec{}.block2", level), x, channels, k3);
  }
  if (cropping) x = net.zero_pad("pad", x, crop, {0, 0, 0});
  x = conv_block(net, "head", x, 2 * width, k3);
  x = net.conv("out.conv", x, 1, {1, 1, 1});
  x = net.sigmoid("out.sigmoid", x);
  net.set_output(x);
  return net;
}

Network resnet(int nx, int ny, int nz, int width, int blocks) {
  Network net("resnet", Shape{1, 1, nx, ny, nz});
  int x = net.conv("stem.conv", 0, width, {3, 3, 3});
  x = net.relu("stem.relu", x);
  for (int b = 1; b <= blocks; ++b) x = conv_block(net, fmt::format("block{}", b), x, width, {3, 3, 3});
  x = net.conv("out.conv", x, 1, {3, 3, 3});
  x = net.add("out.add", x, 0);
  net.set_output(x);
  return net;
}

}  // namespace

Network build_network(const std::string& architecture, int nx, int ny, int nz,
                      const ArchitectureOptions& options) {
  require_known(architecture);
  require(nx > 0 && ny > 0 && nz > 0,
          fmt::format("grid sizes must be positive, got {} x {} x {}", nx, ny, nz));
  require(options.width >= 0 && options.blocks >= 0, "architecture width and blocks must not be negative");
  if (architecture == "resnet") return resnet(nx, ny, nz, options.width ? options.width : 64, options.blocks);
  const int width = options.width ? options.width : 32;
  // A composite's graph is the CV U-Net behind its dense layer.
  if (is_composite_architecture(architecture)) return unet("cv-unet3d", nx, ny, nz, 2, true, width);
  return unet(architecture, nx, ny, nz, architecture_input_channels(architecture), architecture != "unet2d",
              width);
}

}  // namespace nfmimo::nn

// Device selection: never throws while counting; without a GPU the same binary runs on the CPU and the GPU
// entry points fail with a clear message.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_imaging.hpp"
#include "kernels/imager.hpp"
#include "radar/error.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

TEST(Device, ParsesNames) {
  EXPECT_EQ(parse_device("auto"), DeviceKind::Auto);
  EXPECT_EQ(parse_device("cpu"), DeviceKind::Cpu);
  EXPECT_EQ(parse_device("cuda"), DeviceKind::Cuda);
  EXPECT_THROW(parse_device("tpu"), InputError);
}

TEST(Device, AutoResolvesToWhatIsPresent) {
  const int count = cuda_device_count();
  EXPECT_GE(count, 0);
  EXPECT_EQ(resolve_device(DeviceKind::Auto), count > 0 ? DeviceKind::Cuda : DeviceKind::Cpu);
  EXPECT_EQ(resolve_device(DeviceKind::Cpu), DeviceKind::Cpu);
}

TEST(Device, ClearErrorWithoutGpu) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  EXPECT_THROW(resolve_device(DeviceKind::Cuda), InputError);
  EXPECT_THROW(GpuImagingPlan(test::small_system(), test::small_grid(), 1), InputError);
  EXPECT_THROW(Imager(test::small_system(), test::small_grid(), DeviceKind::Cuda), InputError);
  EXPECT_FALSE(cuda_unavailable_reason().empty());
}

// DeviceBuffer's uploads and downloads check their element range on the host before any CUDA call; the check
// itself needs no GPU, so it is tested here (the buffers' own tests are gpu tests).
TEST(Device, BufferCopiesMustStayInsideTheBuffer) {
  EXPECT_NO_THROW(device_memory::require_within(0, 4, 4, "upload"));
  EXPECT_NO_THROW(device_memory::require_within(4, 0, 4, "upload"));
  EXPECT_THROW(device_memory::require_within(1, 4, 4, "upload"), InputError);
  EXPECT_THROW(device_memory::require_within(5, 0, 4, "download"), InputError);
  // offset + count would wrap around: still refused.
  EXPECT_THROW(device_memory::require_within(SIZE_MAX, 2, 4, "download"), InputError);
  try {
    device_memory::require_within(2, 3, 4, "download");
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("download of elements [2, 5) outside the buffer's 4"),
              std::string::npos)
        << e.what();
  }
}

TEST(Device, ImagerOnCpuMatchesCpuOperator) {
  const Imager imager(test::small_system(), test::small_grid(), DeviceKind::Cpu);
  const CpuOperator op(test::small_system(), test::small_grid());
  const auto y = test::random_complex<float>(test::small_system().samples_per_frame() * 2, 3);
  std::vector<cfloat> a(test::small_grid().voxels() * 2), b(a.size());
  imager.image(Method::Kirchhoff, ImagingMode::Exact, y.data(), a.data(), 2);
  op.image(Method::Kirchhoff, y.data(), b.data(), 2);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace nfmimo

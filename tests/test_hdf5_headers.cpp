// Attribute messages whose declared value does not fit in the message (data/hdf5_headers.cpp). HDF5 1.10.8
// copies the declared size on any attribute call (H5Aexists included) and so read past its header buffer: the
// fuzzers found it in every smoke (tests/fuzz/corpus/*/attribute-value-past-message*). Every damaged case
// must be a refusal naming the file and the object; every valid header, of either version, must pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include "data/hdf5.hpp"
#include "tests/file_bytes.hpp"
#include "data/measurement_file.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "synthesizer/dataset.hpp"

namespace fs = std::filesystem;
using namespace nfmimo;

namespace {

using test::get_le;
using test::put_le;
using test::read_bytes;
using test::write_bytes;

// Writes, with HDF5's own API, a root group holding a scalar integer, a 4-value integer array and a string
// attribute, and a dataset with one attribute; `latest` makes version-2 object headers (checksummed).
void write_file(const fs::path& path, bool latest) {
  h5::Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (latest) H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  h5::Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  ASSERT_TRUE(file);
  h5::Handle scalar(H5Screate(H5S_SCALAR), H5Sclose);
  const hsize_t four = 4;
  h5::Handle vector(H5Screate_simple(1, &four, nullptr), H5Sclose);
  const std::int64_t one = 7, values[4] = {1, 2, 3, 4};
  h5::Handle a(H5Acreate2(file.get(), "count", H5T_STD_I64LE, scalar.get(), H5P_DEFAULT, H5P_DEFAULT),
               H5Aclose);
  H5Awrite(a.get(), H5T_NATIVE_INT64, &one);
  h5::Handle b(H5Acreate2(file.get(), "values", H5T_STD_I64LE, vector.get(), H5P_DEFAULT, H5P_DEFAULT),
               H5Aclose);
  H5Awrite(b.get(), H5T_NATIVE_INT64, values);
  h5::Handle d(
      H5Dcreate2(file.get(), "data", H5T_IEEE_F32LE, vector.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
      H5Dclose);
  const float data[4] = {5, 6, 7, 8};
  H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  h5::Handle c(H5Acreate2(d.get(), "unit", H5T_STD_I64LE, scalar.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5Awrite(c.get(), H5T_NATIVE_INT64, &one);
  // A compact dataset of 5 floats: its values live in its layout message.
  const hsize_t five = 5;
  const float floats[5] = {0, 1, 2, 3, 4};
  h5::Handle space5(H5Screate_simple(1, &five, nullptr), H5Sclose);
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_layout(dcpl.get(), H5D_COMPACT);
  h5::Handle e(
      H5Dcreate2(file.get(), "compact", H5T_IEEE_F32LE, space5.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
      H5Dclose);
  H5Dwrite(e.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, floats);
}

// The attribute message named `name`: offsets of its start (the version byte) and of its parts.
struct Message {
  std::size_t start = 0, type = 0, space = 0;
  unsigned version = 0;
};

Message find_attribute(const std::vector<unsigned char>& bytes, const std::string& name) {
  const std::string key = name + '\0';
  for (auto it = bytes.begin();; ++it) {
    it = std::search(it, bytes.end(), key.begin(), key.end());
    if (it == bytes.end()) break;
    const auto at = static_cast<std::size_t>(it - bytes.begin());
    for (std::size_t head : {8u, 9u}) {  // versions 1 and 2 have an 8-byte head, version 3 a 9-byte one
      if (at < head) continue;
      const unsigned char* m = bytes.data() + at - head;
      const unsigned v = m[0];
      if (!((v == 1 || v == 2) && head == 8) && !(v == 3 && head == 9)) continue;
      if (get_le(m + 2, 2) != key.size()) continue;
      const auto pad = [&](std::uint64_t n) { return v == 1 ? (n + 7) / 8 * 8 : n; };
      Message msg{at - head, 0, 0, v};
      msg.type = at + pad(key.size());
      msg.space = msg.type + pad(get_le(m + 4, 2));
      return msg;
    }
  }
  ADD_FAILURE() << "no attribute message named " << name;
  return {};
}

class HeaderTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string name = "nfmimo_headers_" + std::to_string(::getpid()) + "_" +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');  // parameterised names are "Case/Version1"
    dir_ = fs::temp_directory_path() / name;
    fs::create_directories(dir_);
    path_ = dir_ / "a.h5";
    write_file(path_, GetParam());
    bytes_ = read_bytes(path_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The damaged copy's refusal message when `use` reads it (empty when nothing was refused).
  std::string refusal(const std::vector<unsigned char>& damaged, const std::function<void(h5::File&)>& use) {
    const fs::path p = dir_ / "damaged.h5";
    write_bytes(p, damaged);
    try {
      h5::File f(p.string(), h5::File::Mode::Read);
      use(f);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  }
  // ... when its attribute 'count' of `object` is read.
  std::string refusal(const std::vector<unsigned char>& damaged, const std::string& object = "/") {
    return refusal(damaged, [&](h5::File& f) {
      (void)f.has_attribute(object, "count");
      (void)f.int_attribute(object, "count");
    });
  }

  fs::path dir_, path_;
  std::vector<unsigned char> bytes_;
};

TEST_P(HeaderTest, ValidHeadersPass) {
  h5::File f(path_.string(), h5::File::Mode::Read);
  EXPECT_EQ(f.int_attribute("/", "count").value(), 7);
  EXPECT_EQ(f.int_attribute("data", "unit").value(), 7);
  EXPECT_FALSE(f.has_attribute("/", "absent"));
  EXPECT_EQ(f.read<float>("compact").data, (std::vector<float>{0, 1, 2, 3, 4}));
  EXPECT_EQ(f.read<float>("data").data, (std::vector<float>{5, 6, 7, 8}));
  h5::Handle root(H5Oopen(f.id(), "/", H5P_DEFAULT), H5Oclose);
  EXPECT_NO_THROW(h5::check_attribute_messages(root.get(), "a.h5", "object '/'"));
}

// Version-2 headers carry a checksum that HDF5 verifies before anything is decoded, so a damaged one never
// reaches the attribute decoder: the damage cases run on version-1 headers, as every fuzz finding did.
class DamagedHeaderTest : public HeaderTest {};

TEST_P(DamagedHeaderTest, MoreValuesThanTheMessageHolds) {
  const Message m = find_attribute(bytes_, "values");
  auto damaged = bytes_;
  // Dataspace version 1: dimensions from byte 8; version 2: from byte 4 (8-byte lengths in these files).
  put_le(&damaged[m.space + (damaged[m.space] == 1 ? 8 : 4)], 8, 4000);
  const std::string why = refusal(damaged);
  EXPECT_NE(
      why.find("damaged.h5: damaged HDF5 file: object '/': an attribute declares 4000 values of 8 bytes"),
      std::string::npos)
      << why;
}

TEST_P(DamagedHeaderTest, LargerValuesThanTheMessageHolds) {
  const Message m = find_attribute(bytes_, "values");
  auto damaged = bytes_;
  put_le(&damaged[m.type + 4], 4, 1 << 20);  // the datatype's element size
  const std::string why = refusal(damaged);
  EXPECT_NE(why.find("an attribute declares 4 values of 1048576 bytes"), std::string::npos) << why;
}

TEST_P(DamagedHeaderTest, PartsLargerThanTheMessage) {
  const Message m = find_attribute(bytes_, "count");
  auto damaged = bytes_;
  put_le(&damaged[m.start + 6], 2, 0xfff0);  // the dataspace's size
  const std::string why = refusal(damaged);
  EXPECT_NE(why.find("bytes of name, type and dataspace"), std::string::npos) << why;
}

TEST_P(DamagedHeaderTest, DamageOnADatasetIsFoundToo) {
  const Message m = find_attribute(bytes_, "unit");
  auto damaged = bytes_;
  put_le(&damaged[m.type + 4], 4, 1 << 20);
  const std::string why = refusal(damaged, "data");
  EXPECT_NE(why.find("object 'data': an attribute declares 1 values of 1048576 bytes"), std::string::npos)
      << why;
}

// A compact dataset whose dataspace declares more values than its layout message holds: HDF5 1.10.8 copied
// them from past the header's buffer (a SEGV in H5VM_memcpyvv; h5py crashes on the same file).
TEST_P(DamagedHeaderTest, CompactDatasetWithMoreValuesThanItHolds) {
  // The dataset's version-1 dataspace: {1, rank 1, flags, 0, 4 reserved} and the dimension 5 (8 bytes).
  const unsigned char key[] = {1, 1};
  auto damaged = bytes_;
  std::size_t found = 0;
  for (std::size_t i = 0; i + 24 <= damaged.size(); ++i)
    if (std::equal(std::begin(key), std::end(key), &damaged[i]) && get_le(&damaged[i + 4], 4) == 0 &&
        get_le(&damaged[i + 8], 8) == 5) {
      put_le(&damaged[i + 8], 8, 400000);
      if (damaged[i + 2] & 1) put_le(&damaged[i + 16], 8, 400000);  // its maximum too
      ++found;
    }
  ASSERT_EQ(found, 1u);
  const std::string why = refusal(damaged, [](h5::File& f) { (void)f.read<float>("compact"); });
  EXPECT_NE(
      why.find("damaged.h5: damaged HDF5 file: object 'compact': a compact dataset declares 400000 values "
               "of 4 bytes and holds 20 bytes"),
      std::string::npos)
      << why;
}

// A header whose first chunk declares gigabytes: HDF5 1.10.8 allocated them before reading (the fuzzers' 2-13
// GB allocations from 12 KB files). Refused before HDF5 loads the header: the root group's before H5Fopen,
// another object's when its link is followed.
TEST_P(DamagedHeaderTest, HeaderChunkPastTheEndOfTheFile) {
  const auto header_of = [&](const char* name) {
    h5::Handle file(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    H5L_info_t link;
    EXPECT_GE(H5Lget_info(file.get(), name, &link, H5P_DEFAULT), 0);
    return static_cast<std::size_t>(link.u.address);
  };
  const std::size_t data = header_of("data");
  // The root group's header address: superblock version 0, 8-byte offsets, field at 24 + 5 x 8.
  ASSERT_EQ(bytes_[8], 0);
  const std::size_t root = get_le(&bytes_[64], 8);
  ASSERT_EQ(bytes_[root], 1);  // version-1 headers: the first chunk's size at byte 8
  ASSERT_EQ(bytes_[data], 1);

  auto damaged = bytes_;
  put_le(&damaged[root + 8], 4, 0xF0000000u);
  std::string why = refusal(damaged);
  EXPECT_NE(
      why.find("damaged.h5: damaged HDF5 file: the root group: an object header chunk of 4026531856 bytes "
               "runs past the end of the file"),
      std::string::npos)
      << why;

  damaged = bytes_;
  put_le(&damaged[data + 8], 4, 0xF0000000u);
  why = refusal(damaged, "data");
  EXPECT_NE(
      why.find("object 'data': an object header chunk of 4026531856 bytes runs past the end of the file"),
      std::string::npos)
      << why;
}

// The same for a contiguous dataset: HDF5 read it through a sieve buffer of the stored size (a SEGV in
// H5VM_memcpyvv found by the measurement fuzzer, reading a volume file's grid).
TEST_P(DamagedHeaderTest, ContiguousDatasetWithMoreValuesThanItStores) {
  h5::Handle file(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  H5L_info_t link;
  ASSERT_GE(H5Lget_info(file.get(), "data", &link, H5P_DEFAULT), 0);
  file.reset();
  auto damaged = bytes_;
  std::size_t found = 0;  // the dataset's version-1 dataspace: {1, rank 1, flags, 0, 4 reserved}, dimension 4
  for (std::size_t i = link.u.address; i < link.u.address + 256 && i + 24 <= damaged.size(); ++i)
    if (damaged[i] == 1 && damaged[i + 1] == 1 && get_le(&damaged[i + 4], 4) == 0 &&
        get_le(&damaged[i + 8], 8) == 4) {
      put_le(&damaged[i + 8], 8, 4000);
      if (damaged[i + 2] & 1) put_le(&damaged[i + 16], 8, 4000);
      ++found;
    }
  ASSERT_EQ(found, 1u);
  const std::string why = refusal(damaged, [](h5::File& f) { (void)f.read<float>("data"); });
  EXPECT_NE(
      why.find("object 'data': a contiguous dataset declares 4000 values of 4 bytes and holds 16 bytes"),
      std::string::npos)
      << why;
}

INSTANTIATE_TEST_SUITE_P(HeaderVersions, HeaderTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Version2" : "Version1"; });
INSTANTIATE_TEST_SUITE_P(HeaderVersion1, DamagedHeaderTest, ::testing::Values(false),
                         [](const auto&) { return std::string("Version1"); });

// The fuzzers' inputs (one per reader, and a string type damaged into an enum whose member names run past the
// header): before the checks each overflowed a heap buffer inside H5Aexists (the enum one in H5MM_xstrdup).
TEST(HeaderFuzzFindings, AreRefusedByEveryReader) {
  const fs::path corpus = fs::path(NFMIMO_SOURCE_DIR) / "tests" / "fuzz" / "corpus";
  int checked = 0;
  for (const auto& [reader, read] :
       std::vector<std::pair<std::string, std::function<void(const std::string&)>>>{
           {"measurements", [](const std::string& p) { (void)read_measurement_header(p); }},
           {"dataset", [](const std::string& p) { (void)read_dataset_info(p); }},
           {"weights", [](const std::string& p) { (void)nn::read_model(p); }}}) {
    for (const auto& e : fs::directory_iterator(corpus / reader)) {
      if (e.path().filename().string().rfind("attribute-value-past-message", 0) != 0) continue;
      ++checked;
      try {
        read(e.path().string());
        ADD_FAILURE() << e.path() << " was accepted";
      } catch (const InputError& err) {
        EXPECT_NE(std::string(err.what()).find("damaged HDF5 file"), std::string::npos) << err.what();
      }
    }
  }
  EXPECT_EQ(checked, 4);
}

}  // namespace

namespace {

// A weights file declaring 838 860 801 ResNet blocks (and 225 parameters): nfmimo built that network before
// comparing it with the stored parameters, for minutes (the weights fuzzer's timeouts). Refused before
// building.
TEST(WeightsFuzzFindings, AHugeDeclaredNetworkIsRefusedBeforeItIsBuilt) {
  const fs::path dir = fs::temp_directory_path() / ("nfmimo_huge_net_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path p = dir / "resnet.h5";
  fs::copy_file(fs::path(NFMIMO_SOURCE_DIR) / "models" / "trained" / "deep2s-resnet_paper_k15_snr30.h5", p);
  {
    h5::File f(p.string(), h5::File::Mode::ReadWrite);
    f.set_attribute("/", "blocks", 838860801LL);
    f.close();
  }
  std::string why;
  try {
    (void)nn::read_model(p.string());
  } catch (const InputError& e) {
    why = e.what();
  }
  fs::remove_all(dir);
  EXPECT_NE(why.find("declares a network of width 32 and 838860801 blocks; nfmimo builds width 0..1024 and "
                     "0..256 blocks"),
            std::string::npos)
      << why;
}

}  // namespace

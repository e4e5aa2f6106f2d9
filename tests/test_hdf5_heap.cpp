// Variable-length string attributes in files whose global heap is damaged (data/hdf5_strings.cpp). Before the
// heap check, HDF5 1.10.8 looped for ever on the first case below and overflowed a heap buffer on the second
// (found by tests/fuzz/fuzz_weights and fuzz_dataset); every case must now be a refusal naming the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/file_image.hpp"
#include "data/hdf5.hpp"
#include "tests/file_bytes.hpp"
#include "radar/error.hpp"

namespace fs = std::filesystem;
using nfmimo::InputError;
using namespace nfmimo;

namespace {

using test::get_le;
using test::put_le;
using test::read_bytes;
using test::write_bytes;

class HeapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nfmimo_heap_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = dir_ / "a.h5";
    h5::File f(path_.string(), h5::File::Mode::Create);
    f.set_attribute("/", "note", std::string("hello world"));
    f.set_attribute("/", "empty", std::string());
    f.set_attribute("/", "utf8", std::string("r\xc3\xa9sum\xc3\xa9"));
    f.close();
    bytes_ = read_bytes(path_);
    const unsigned char tag[] = {'G', 'C', 'O', 'L'};
    auto it = std::search(bytes_.begin(), bytes_.end(), std::begin(tag), std::end(tag));
    ASSERT_NE(it, bytes_.end()) << "the writer stored no global heap";
    heap_ = static_cast<std::size_t>(it - bytes_.begin());
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The byte offset of heap object `index` (its header), walking the collection as HDF5 does.
  std::size_t object(unsigned index) const {
    const std::size_t size = get_le(&bytes_[heap_ + 8], 8);
    std::size_t p = heap_ + 16;
    while (p + 16 <= heap_ + size) {
      const auto i = get_le(&bytes_[p], 2);
      const auto stored = get_le(&bytes_[p + 8], 8);
      if (i == index) return p;
      p += i ? 16 + (stored + 7) / 8 * 8 : stored;
    }
    ADD_FAILURE() << "no heap object " << index;
    return 0;
  }

  void expect_refused(const std::string& what) {
    write_bytes(path_, bytes_);
    try {
      h5::File f(path_.string(), h5::File::Mode::Read);
      (void)f.string_attribute("/", "note");
      ADD_FAILURE() << what << ": read without an error";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(path_.string()), std::string::npos) << m;
      EXPECT_NE(m.find("damaged HDF5 file"), std::string::npos) << m;
    }
    // The same bytes through the core driver (the fuzzers' path) are refused the same way.
    h5::ScopedFileImage image("image.h5", bytes_.data(), bytes_.size());
    h5::File g("image.h5", h5::File::Mode::Read);
    EXPECT_THROW((void)g.string_attribute("/", "note"), InputError) << what << " (in-memory image)";
  }

  fs::path dir_, path_;
  std::vector<unsigned char> bytes_;
  std::size_t heap_ = 0;
};

TEST_F(HeapTest, IntactStringsReadAsWritten) {
  h5::File f(path_.string(), h5::File::Mode::Read);
  EXPECT_EQ(f.string_attribute("/", "note").value(), "hello world");
  EXPECT_EQ(f.string_attribute("/", "empty").value(), "");
  EXPECT_EQ(f.string_attribute("/", "utf8").value(), "r\xc3\xa9sum\xc3\xa9");
  h5::ScopedFileImage image("image.h5", bytes_.data(), bytes_.size());
  h5::File g("image.h5", h5::File::Mode::Read);
  EXPECT_EQ(g.string_attribute("/", "note").value(), "hello world");
}

// MATLAB v7.3 files start with a 512-byte user block: heap addresses are relative to the superblock after it.
TEST_F(HeapTest, StringsAfterAUserBlockRead) {
  const fs::path p = dir_ / "userblock.h5";
  {
    h5::Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    ASSERT_GE(H5Pset_userblock(fcpl.get(), 512), 0);
    h5::Handle file(H5Fcreate(p.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT), H5Fclose);
    h5::Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.get(), H5T_VARIABLE);
    h5::Handle space(H5Screate(H5S_SCALAR), H5Sclose);
    h5::Handle a(H5Acreate2(file.get(), "note", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const char* value = "after the user block";
    ASSERT_GE(H5Awrite(a.get(), type.get(), &value), 0);
  }
  h5::File f(p.string(), h5::File::Mode::Read);
  EXPECT_EQ(f.string_attribute("/", "note").value(), "after the user block");
}

TEST_F(HeapTest, FreeSpaceOfSizeZeroIsRefused) {  // HDF5 1.10.8's parser never advanced: a hang
  put_le(&bytes_[object(0) + 8], 8, 0);
  expect_refused("free space of size 0");
}

TEST_F(HeapTest, ObjectLargerThanItsStringIsRefused) {  // HDF5 copied 4000 bytes into 11: an overflow
  put_le(&bytes_[object(1) + 8], 8, 4000);
  expect_refused("object 1 of 4000 bytes");
}

TEST_F(HeapTest, ObjectPastTheCollectionIsRefused) {
  put_le(&bytes_[object(1) + 8], 8, 1ull << 40);
  expect_refused("object 1 past the collection");
}

TEST_F(HeapTest, HugeCollectionIsRefused) {
  put_le(&bytes_[heap_ + 8], 8, 1ull << 50);
  expect_refused("a collection of 2^50 bytes");
}

TEST_F(HeapTest, MissingCollectionIsRefused) {
  bytes_[heap_] = 'X';
  expect_refused("no GCOL signature");
}

TEST_F(HeapTest, MissingObjectIsRefused) {
  put_le(&bytes_[object(1)], 2, 77);  // the attribute still names object 1
  expect_refused("object 1 renumbered");
}

TEST_F(HeapTest, DuplicateObjectIsRefused) {
  put_le(&bytes_[object(2)], 2, 1);
  expect_refused("two objects 1");
}

TEST_F(HeapTest, NullStringWithALengthIsRefused) {  // HDF5 allocated the declared length for a null string
  // The attribute's stored heap ID {length 11, the collection's address, object 1}: its address zeroed, the
  // length raised to 2^31 - 1.
  std::vector<unsigned char> id(16);
  put_le(&id[0], 4, 11);
  put_le(&id[4], 8, heap_);
  put_le(&id[12], 4, 1);
  auto it = std::search(bytes_.begin(), bytes_.end(), id.begin(), id.end());
  ASSERT_NE(it, bytes_.end()) << "no heap ID of 'note' in the file";
  put_le(&*it, 4, 0x7fffffff);
  put_le(&*it + 4, 8, 0);
  expect_refused("a null string of 2^31 - 1 bytes");
}

}  // namespace

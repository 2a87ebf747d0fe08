// Trained zstd dictionaries for gossip compression: loading a dict_dir,
// compressing small frames with dict_file, and decoding frames whose
// dictionary a node lacks (an error naming it, never a crash).
#include <gtest/gtest.h>
#include <zdict.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "io/wire.hpp"
#include "io/zstd_dictionaries.hpp"

namespace patina::io {
namespace {

namespace fs = std::filesystem;

// One machine's state change, as a worker publishes it: small, and alike
// in everything but the ids and a few words.
wire::ChangesetFrame machine_update(int i) {
  wire::ChangesetFrame f;
  auto& cs = f.changeset;
  cs.actor.fill(static_cast<std::uint8_t>(i % 7));
  cs.version = 1000 + i;
  cs.seqs = {0, 1};
  cs.last_seq = 1;
  cs.ts = 7000000000ull + static_cast<std::uint64_t>(i);
  const char* states[] = {"started", "stopped", "replacing", "destroyed"};
  for (int seq = 0; seq < 2; ++seq) {
    crdt::Change c;
    c.table = "machines";
    c.pk = {1, 0x0b, static_cast<std::uint8_t>('a' + i % 26), static_cast<std::uint8_t>('0' + i % 10)};
    c.cid = seq == 0 ? "state" : "region";
    c.val = seq == 0 ? std::string(states[i % 4]) : std::string(i % 2 ? "ord" : "ams");
    c.col_version = 1 + i % 3;
    c.db_version = cs.version;
    c.site_id = cs.actor;
    c.cl = 1;
    c.seq = seq;
    c.ts = cs.ts;
    cs.changes.push_back(c);
  }
  return f;
}

class ZstdDictionariesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("patina-dicts-{}-{}", ::getpid(), ::testing::UnitTest::GetInstance()->random_seed());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A dictionary trained on |n| frames, written as |name|; its id.
  unsigned train(const std::string& name, int offset = 0, int n = 2000) {
    std::string samples;
    std::vector<std::size_t> sizes;
    for (int i = 0; i < n; ++i) {
      auto bytes = wire::encode(machine_update(offset + i));
      samples.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      sizes.push_back(bytes.size());
    }
    std::string dict(4096, '\0');
    std::size_t size = ZDICT_trainFromBuffer(dict.data(), dict.size(), samples.data(), sizes.data(),
                                             static_cast<unsigned>(sizes.size()));
    EXPECT_FALSE(ZDICT_isError(size)) << ZDICT_getErrorName(size);
    dict.resize(ZDICT_isError(size) ? 0 : size);
    write(name, dict);
    return ZSTD_getDictID_fromDict(dict.data(), dict.size());
  }
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
  }

  fs::path dir_;
};

TEST_F(ZstdDictionariesTest, small_frames_shrink_with_a_trained_dictionary_and_decode_only_where_it_is_loaded) {
  const unsigned id = train("machines.dict");
  ASSERT_NE(id, 0u);
  auto dicts = ZstdDictionaries::load(dir_, "machines.dict", 3);
  ASSERT_TRUE(dicts) << dicts.error().message;
  EXPECT_EQ((*dicts)->encoder_id(), id);
  EXPECT_EQ((*dicts)->ids(), std::vector<std::uint32_t>{id});

  auto f = machine_update(123457);
  auto plain = wire::encode(f);
  auto with_dict = wire::compress(plain, 3, dicts->get());
  ASSERT_FALSE(with_dict.empty()) << "a trained dictionary must beat a " << plain.size() << "-byte frame";
  // Without one, zstd's own framing eats what it saves on a frame this small.
  auto without = wire::compress(plain, 3);
  EXPECT_LT(with_dict.size(), without.empty() ? plain.size() : without.size());
  EXPECT_LT(with_dict.size() * 10, plain.size() * 8) << with_dict.size() << " of " << plain.size();

  auto back = wire::decode(with_dict, dicts->get());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->changeset, f.changeset);

  // A node without the dictionary cannot read the frame, and says which one.
  auto lacking = wire::decode(with_dict);
  ASSERT_FALSE(lacking);
  EXPECT_EQ(lacking.error().code, Errc::not_found);
  EXPECT_NE(lacking.error().message.find(std::to_string(id)), std::string::npos) << lacking.error().message;
  // Nor can one whose dict_dir holds only another dictionary.
  fs::remove(dir_ / "machines.dict");
  const unsigned other = train("other.dict", 50000);
  ASSERT_NE(other, id);
  auto others = ZstdDictionaries::load(dir_, std::nullopt, 3);
  ASSERT_TRUE(others) << others.error().message;
  EXPECT_EQ((*others)->encoder(), nullptr);
  EXPECT_FALSE(wire::decode(with_dict, others->get()));
  // Without a dict_file, frames are compressed as before, and everyone reads them.
  auto no_dict = wire::compress(wire::encode(wire::ChangesetFrame{}), 3, others->get());
  if (!no_dict.empty()) {
    EXPECT_TRUE(wire::decode(no_dict));
  }
}

TEST_F(ZstdDictionariesTest, a_dict_dir_loads_every_trained_dictionary_and_refuses_a_bad_dict_file) {
  const unsigned a = train("a.dict", 0), b = train("b.dict", 100000);
  write("README", "not a dictionary");
  auto dicts = ZstdDictionaries::load(dir_, std::nullopt, 3);
  ASSERT_TRUE(dicts) << dicts.error().message;
  auto ids = (*dicts)->ids();
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_NE((*dicts)->decoder(a), nullptr);
  EXPECT_NE((*dicts)->decoder(b), nullptr);
  EXPECT_EQ((*dicts)->skipped(), std::vector<std::string>{"README"});

  auto not_dict = ZstdDictionaries::load(dir_, "README", 3);
  ASSERT_FALSE(not_dict);
  EXPECT_EQ(not_dict.error().code, Errc::invalid_argument);
  EXPECT_NE(not_dict.error().message.find("not a zstd dictionary"), std::string::npos) << not_dict.error().message;
  auto missing = ZstdDictionaries::load(dir_, "gone.dict", 3);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::invalid_argument);
  auto no_dir = ZstdDictionaries::load(dir_ / "nope", std::nullopt, 3);
  ASSERT_FALSE(no_dir);
  EXPECT_NE(no_dir.error().message.find("dict_dir"), std::string::npos) << no_dir.error().message;
  // A dict_file outside dict_dir (an absolute path) is loaded and readable too.
  fs::create_directories(dir_ / "sub");
  auto outside = ZstdDictionaries::load(dir_ / "sub", (dir_ / "a.dict").string(), 3);
  ASSERT_TRUE(outside) << outside.error().message;
  EXPECT_EQ((*outside)->encoder_id(), a);
  EXPECT_NE((*outside)->decoder(a), nullptr);
}

TEST_F(ZstdDictionariesTest, garbage_after_a_dictionary_frame_header_is_an_error_not_a_crash) {
  train("machines.dict");
  auto dicts = ZstdDictionaries::load(dir_, "machines.dict", 3);
  ASSERT_TRUE(dicts);
  auto packed = wire::compress(wire::encode(machine_update(5)), 3, dicts->get());
  ASSERT_FALSE(packed.empty());
  for (std::size_t i = wire::compressed_header; i < packed.size(); ++i) {
    auto bad = packed;
    bad[i] ^= std::byte{0x5a};
    EXPECT_FALSE(wire::decode(bad, dicts->get())) << "flipped byte " << i;
  }
  for (std::size_t n = 0; n < packed.size(); ++n) {
    EXPECT_FALSE(wire::decode(std::span<const std::byte>(packed.data(), n), dicts->get())) << n;
  }
}

}  // namespace
}  // namespace patina::io

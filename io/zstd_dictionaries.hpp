#pragma once
// Trained zstd dictionaries for gossip compression (gossip.compression
// dict_dir / dict_file, SPEC.md §5.3): small changesets share table and
// column names and value shapes that plain zstd cannot exploit in a 100-byte
// frame, a dictionary can.
//
// Every dictionary in dict_dir is loaded for decoding, keyed by the id zstd
// embeds in each frame compressed with it; dict_file (a name within
// dict_dir, or a path) is the one this node compresses with. Nodes that
// should read each other's frames need the same files: a frame whose
// dictionary a node lacks is dropped with a log line, and sync (which never
// uses dictionaries) repairs what it carried.
//
// Immutable once loaded: `patina reload-dicts` loads a new set and swaps it
// in (reactor thread), so frames in flight keep the set they started with.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

struct ZSTD_CDict_s;
struct ZSTD_DDict_s;

namespace patina::io {

class ZstdDictionaries {
 public:
  ~ZstdDictionaries();
  ZstdDictionaries(const ZstdDictionaries&) = delete;
  ZstdDictionaries& operator=(const ZstdDictionaries&) = delete;

  // Loads every regular file of |dir| that is a zstd dictionary (files
  // without the dictionary magic are skipped and named in |skipped|), and
  // |file| (relative to |dir| unless absolute) to compress with at |level|.
  // Errc::invalid_argument when |dir| cannot be read or |file| is missing or
  // not a dictionary; Errc::io when a file cannot be read.
  static Result<std::shared_ptr<const ZstdDictionaries>> load(const std::filesystem::path& dir,
                                                              const std::optional<std::string>& file, int level);

  // The dictionary to compress with, or nullptr (no dict_file).
  const ZSTD_CDict_s* encoder() const { return encoder_; }
  std::uint32_t encoder_id() const { return encoder_id_; }
  // The dictionary with |id|, or nullptr.
  const ZSTD_DDict_s* decoder(std::uint32_t id) const;
  // Ids of the loaded dictionaries, ascending.
  std::vector<std::uint32_t> ids() const;
  const std::vector<std::string>& skipped() const { return skipped_; }

 private:
  ZstdDictionaries() = default;

  std::map<std::uint32_t, ZSTD_DDict_s*> decoders_;
  ZSTD_CDict_s* encoder_ = nullptr;
  std::uint32_t encoder_id_ = 0;
  std::vector<std::string> skipped_;
};

}  // namespace patina::io

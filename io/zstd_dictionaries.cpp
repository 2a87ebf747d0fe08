#include "io/zstd_dictionaries.hpp"

#include <zstd.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

namespace patina::io {

namespace {

Result<std::string> read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::io, fmt::format("cannot read {}", path.string()));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return make_error(Errc::io, fmt::format("cannot read {}", path.string()));
  return bytes;
}

}  // namespace

ZstdDictionaries::~ZstdDictionaries() {
  for (auto& [id, d] : decoders_) ZSTD_freeDDict(d);
  ZSTD_freeCDict(encoder_);
}

Result<std::shared_ptr<const ZstdDictionaries>> ZstdDictionaries::load(const std::filesystem::path& dir,
                                                                       const std::optional<std::string>& file,
                                                                       int level) {
  std::error_code ec;
  std::vector<std::filesystem::path> paths;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) paths.push_back(it->path());
  }
  if (ec) {
    return make_error(Errc::invalid_argument,
                      fmt::format("gossip.compression.dict_dir {}: {}", dir.string(), ec.message()));
  }
  std::sort(paths.begin(), paths.end());
  std::shared_ptr<ZstdDictionaries> out(new ZstdDictionaries());
  for (const auto& path : paths) {
    auto bytes = read_whole(path);
    if (!bytes) return tl::unexpected(bytes.error());
    // Raw-content dictionaries have no id, so a receiver could not tell
    // which one a frame needs: only trained ones (zstd --train) count.
    const unsigned id = ZSTD_getDictID_fromDict(bytes->data(), bytes->size());
    if (id == 0) {
      out->skipped_.push_back(path.filename().string());
      continue;
    }
    if (out->decoders_.count(id) != 0) continue;  // the same dictionary twice
    ZSTD_DDict* d = ZSTD_createDDict(bytes->data(), bytes->size());
    if (d == nullptr) return make_error(Errc::io, fmt::format("zstd could not load the dictionary {}", path.string()));
    out->decoders_.emplace(id, d);
  }
  if (file) {
    std::filesystem::path path(*file);
    if (path.is_relative()) path = dir / path;
    auto bytes = read_whole(path);
    if (!bytes) {
      return make_error(Errc::invalid_argument,
                        fmt::format("gossip.compression.dict_file {}: cannot be read", path.string()));
    }
    const unsigned id = ZSTD_getDictID_fromDict(bytes->data(), bytes->size());
    if (id == 0) {
      return make_error(Errc::invalid_argument,
                        fmt::format("gossip.compression.dict_file {}: not a zstd dictionary (train one with "
                                    "`zstd --train`, e.g. on the files of `patina db sample-changes`)",
                                    path.string()));
    }
    out->encoder_ = ZSTD_createCDict(bytes->data(), bytes->size(), level);
    if (out->encoder_ == nullptr) {
      return make_error(Errc::io, fmt::format("zstd could not load the dictionary {}", path.string()));
    }
    out->encoder_id_ = id;
    // Whoever compresses with it can read its own frames back, wherever the file lives.
    if (out->decoders_.count(id) == 0) {
      ZSTD_DDict* d = ZSTD_createDDict(bytes->data(), bytes->size());
      if (d == nullptr) return make_error(Errc::io, fmt::format("zstd could not load the dictionary {}", path.string()));
      out->decoders_.emplace(id, d);
    }
  }
  return std::shared_ptr<const ZstdDictionaries>(std::move(out));
}

const ZSTD_DDict* ZstdDictionaries::decoder(std::uint32_t id) const {
  auto it = decoders_.find(id);
  return it == decoders_.end() ? nullptr : it->second;
}

std::vector<std::uint32_t> ZstdDictionaries::ids() const {
  std::vector<std::uint32_t> out;
  for (const auto& [id, d] : decoders_) out.push_back(id);
  return out;
}

}  // namespace patina::io

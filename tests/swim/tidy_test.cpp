// swim/ stays sans-IO (STYLE §2.1): no clocks, no <random>, no threads, no
// sockets, no Asio, no other project folder, no FIXME. A grep, run as a test.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

TEST(SwimTidy, swim_sources_use_no_clock_random_thread_io_or_project_includes) {
  namespace fs = std::filesystem;
  const fs::path dir = PATINA_SWIM_SOURCE_DIR;
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  const std::vector<std::string> banned{"::now(",
                                        "<random>",
                                        "random_device",
                                        "_distribution<",
                                        "<thread>",
                                        "<mutex>",
                                        "<future>",
                                        "asio",
                                        "<sys/socket",
                                        "getaddrinfo",
                                        "#include \"core/",
                                        "#include \"io/",
                                        "#include \"api/",
                                        "#include \"crdt/",
                                        "#include \"tools/",
                                        "FIX"
                                        "ME",
                                        "rand(",
                                        "time(nullptr",
                                        "<iostream>"};
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto ext = entry.path().extension();
    if (ext != ".hpp" && ext != ".cpp") continue;
    ++files;
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    for (const auto& b : banned)
      EXPECT_EQ(text.find(b), std::string::npos) << entry.path().filename() << " uses " << b;
  }
  EXPECT_GE(files, 6u);
}

}  // namespace

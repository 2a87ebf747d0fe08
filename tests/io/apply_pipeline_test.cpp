// The apply pipeline's driver against a sink that refuses for disk space:
// what it holds, in what order it applies, what it counts.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "core/metrics.hpp"
#include "core/runtime.hpp"
#include "io/apply_pipeline.hpp"

namespace patina::io {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;

// Refuses the first |refusals| batches as a writer below its free-space
// floor does, then applies everything.
class DiskLowSink : public ApplySink {
 public:
  explicit DiskLowSink(int refusals) : refusals_(refusals) {}
  net::awaitable<Result<Outcome>> apply(std::vector<crdt::Incoming> batch) override {
    ++calls;
    if (refusals_ > 0) {
      --refusals_;
      co_return make_error(Errc::storage_full, "disk space low: 1.0 MiB free");
    }
    Outcome out;
    out.novel.assign(batch.size(), true);
    for (const auto& in : batch) versions.push_back(in.changeset.version);
    co_return out;
  }
  void applied(std::vector<ApplyItem>& items, Outcome&) override { handed_back += items.size(); }

  int calls = 0;
  std::size_t handed_back = 0;
  std::vector<std::int64_t> versions;

 private:
  int refusals_;
};

TEST(ApplyPipeline, a_batch_refused_for_disk_space_is_held_whole_and_applied_in_order_later) {
  net::io_context ioc;
  core::Metrics metrics;
  DiskLowSink sink(2);
  ApplyPipeline pipeline(ioc.get_executor(), ApplyBatchOptions{}, metrics, sink);
  core::TaskGroup tasks(ioc.get_executor());
  pipeline.start(tasks);
  for (std::int64_t v = 1; v <= 5; ++v) {
    ApplyItem item;
    item.incoming.changeset.version = v;
    item.incoming.changeset.changes.resize(2);
    pipeline.push(std::move(item));
  }
  for (int i = 0; i < 200 && sink.versions.size() < 5; ++i) ioc.run_for(50ms);
  tasks.stop();
  ioc.run_for(100ms);
  EXPECT_EQ(sink.versions, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(sink.calls, 3) << "held whole: neither split nor retried at once";
  EXPECT_EQ(sink.handed_back, 5u);
  EXPECT_EQ(pipeline.depth(), 0u);
  auto text = metrics.render();
  EXPECT_NE(text.find("patina_apply_held_total 2"), std::string::npos) << text;
  EXPECT_NE(text.find("patina_apply_batch_failures_total 0"), std::string::npos) << text;
  EXPECT_EQ(text.find("reason=\"rejected\"} 1"), std::string::npos) << "nothing dropped";
}

}  // namespace
}  // namespace patina::io

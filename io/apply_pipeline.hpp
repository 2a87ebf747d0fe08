#pragma once
// The receive side's apply pipeline (SPEC.md §5.6 step 2, perf.apply_queue_*):
// changesets from broadcast and sync are queued with a cost (rows; an empty
// range costs min(versions, 20)) and merged through the writer in batches,
// one batch in flight at a time.
//
// ApplyBatching is the sans-IO policy: when a batch may start (at once when
// the pipeline was idle or its last batch was small — what queued during a
// batch goes next, so light traffic never waits for the timeout; under load,
// after a full batch, when queued cost >= threshold_ratio x batch size, or
// after apply_queue_timeout) and how big it is (clamp(min, step * 2^floor(log2(cost
// / step)), max), further capped after failures).
//
// ApplyPipeline is the reactor-side driver. Failure handling, where Corrosion
// loses the failed batch until a later sync (its issue #577):
//   * a transient failure (timeout, busy, out of memory) halves the batch cap
//     and puts the items back at the head of the queue: retried smaller, in
//     order, never dropped; the cap grows back by doubling after successes;
//   * a batch rejected for its content is split the same way until the one
//     bad changeset is alone; that one is dropped with a log line naming the
//     peer that sent it (sync will offer it again if it was ours to have);
//   * a batch refused for low disk space (Errc::storage_full) is put back
//     whole and tried again every hold_retry, neither shrunk nor dropped;
//   * a fatal storage error is left to the writer, which stops the node.
// The queue is bounded (processing_queue_len items); when full the oldest
// item is dropped and counted — sync repairs what broadcast dropped.
//
// Reactor thread only.

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/metrics.hpp"
#include "core/result.hpp"
#include "core/runtime.hpp"
#include "crdt/apply.hpp"

namespace spdlog {
class logger;
}

namespace patina::io {

struct ApplyBatchOptions {
  std::size_t min_batch = 100;
  std::size_t step_base = 500;
  std::size_t max_batch = 16000;
  double threshold_ratio = 0.9;
  std::chrono::milliseconds timeout{10};
  std::size_t queue_max = 20000;  // items
};

class ApplyBatching {
 public:
  explicit ApplyBatching(ApplyBatchOptions o) : o_(o) {}
  static std::size_t cost_of(const crdt::Incoming& in);
  // The batch size for |queued_cost|, within the current cap.
  std::size_t batch_size(std::size_t queued_cost) const;
  // Whether enough is queued to start a batch before the timeout.
  bool ready(std::size_t queued_cost) const;
  // Whether |queued_cost| waits (up to the timeout) for company after a
  // batch of |last_batch_cost|: only under load, when that batch was full
  // (at least min_batch); after a small one, waiting only adds latency.
  bool wait_for_company(std::size_t queued_cost, std::size_t last_batch_cost) const;
  // After a failed batch of |cost|: the next ones are at most half of it.
  void failed(std::size_t cost);
  // After a successful batch: the cap doubles back towards max_batch.
  void succeeded();
  std::size_t cap() const { return cap_; }
  const ApplyBatchOptions& options() const { return o_; }

 private:
  ApplyBatchOptions o_;
  std::size_t cap_ = static_cast<std::size_t>(-1);
};

struct ApplyItem {
  enum class Source { broadcast, sync };
  crdt::Incoming incoming;
  Source source = Source::broadcast;
  std::string from;               // the peer's gossip address, for logs
  std::vector<std::byte> frame;   // broadcast only: forwarded verbatim if new
};

// What the composition root does with batches: merge them (on the writer),
// and act on the result (forward new broadcasts, notify subscriptions).
class ApplySink {
 public:
  struct Outcome {
    crdt::ApplyReport report;
    std::vector<bool> novel;  // per item: it brought (part of) a version we lacked
  };
  virtual ~ApplySink() = default;
  virtual boost::asio::awaitable<Result<Outcome>> apply(std::vector<crdt::Incoming> batch) = 0;
  virtual void applied(std::vector<ApplyItem>& items, Outcome& outcome) = 0;
};

class ApplyPipeline {
 public:
  static constexpr std::chrono::seconds hold_retry{1};

  ApplyPipeline(boost::asio::any_io_executor ex, ApplyBatchOptions options, core::Metrics& metrics,
                ApplySink& sink);
  void start(core::TaskGroup& tasks);
  void push(ApplyItem item);
  std::size_t depth() const { return queue_.size(); }
  std::size_t queued_cost() const { return queued_cost_; }
  // Whether the last batch was refused for disk space (and is held).
  bool holding_for_space() const { return held_for_space_; }

 private:
  boost::asio::awaitable<void> run();
  std::vector<ApplyItem> take_batch();
  void requeue_front(std::vector<ApplyItem>& items);
  void update_gauges();

  ApplySink& sink_;
  ApplyBatching batching_;
  std::deque<ApplyItem> queue_;
  std::size_t queued_cost_ = 0;
  std::shared_ptr<boost::asio::steady_timer> wake_;
  bool waiting_for_items_ = false;
  bool notified_ = false;  // the timer was cancelled by push(), not by a stop
  std::shared_ptr<spdlog::logger> log_;
  core::Gauge& depth_gauge_;
  core::Gauge& cost_gauge_;
  core::Counter& batches_;
  core::Counter& failures_;
  core::Counter& dropped_full_;
  core::Counter& dropped_bad_;
  core::Counter& held_;
  bool held_for_space_ = false;
  core::Histogram& batch_cost_;
};

}  // namespace patina::io

#include "io/apply_pipeline.hpp"

#include <algorithm>
#include <bit>

#include "core/log.hpp"

namespace patina::io {

namespace net = boost::asio;
using core::use_nothrow;

std::size_t ApplyBatching::cost_of(const crdt::Incoming& in) {
  if (in.empty_versions) return static_cast<std::size_t>(std::clamp<std::int64_t>(in.empty_versions->size(), 1, 20));
  return std::max<std::size_t>(1, in.changeset.changes.size());
}

std::size_t ApplyBatching::batch_size(std::size_t queued_cost) const {
  std::size_t size = o_.min_batch;
  if (o_.step_base > 0 && queued_cost >= o_.step_base) {
    // step * 2^floor(log2(cost / step))
    std::size_t ratio = queued_cost / o_.step_base;
    size = o_.step_base * std::bit_floor(ratio);
  }
  size = std::clamp(size, o_.min_batch, std::max(o_.min_batch, o_.max_batch));
  return std::max<std::size_t>(1, std::min(size, cap_));
}

bool ApplyBatching::ready(std::size_t queued_cost) const {
  return static_cast<double>(queued_cost) >= o_.threshold_ratio * static_cast<double>(batch_size(queued_cost));
}

bool ApplyBatching::wait_for_company(std::size_t queued_cost, std::size_t last_batch_cost) const {
  return last_batch_cost >= o_.min_batch && !ready(queued_cost);
}

void ApplyBatching::failed(std::size_t cost) { cap_ = std::max<std::size_t>(1, cost / 2); }

void ApplyBatching::succeeded() {
  if (cap_ == static_cast<std::size_t>(-1)) return;
  cap_ = cap_ >= o_.max_batch / 2 ? static_cast<std::size_t>(-1) : cap_ * 2;
}

ApplyPipeline::ApplyPipeline(net::any_io_executor ex, ApplyBatchOptions options, core::Metrics& metrics,
                             ApplySink& sink)
    : sink_(sink),
      batching_(options),
      wake_(std::make_shared<net::steady_timer>(ex)),
      log_(core::log::get("apply")),
      depth_gauge_(metrics.gauge("patina_apply_queue_depth", "Changesets waiting in the apply queue")),
      cost_gauge_(metrics.gauge("patina_apply_queue_cost", "Rows waiting in the apply queue")),
      batches_(metrics.counter("patina_apply_batches_total", "Batches merged through the writer")),
      failures_(metrics.counter("patina_apply_batch_failures_total", "Batches that failed and were retried smaller")),
      dropped_full_(metrics.counter("patina_apply_dropped_total", "Changesets dropped from the apply queue",
                                    {{"reason", "queue_full"}})),
      dropped_bad_(metrics.counter("patina_apply_dropped_total", "Changesets dropped from the apply queue",
                                   {{"reason", "rejected"}})),
      held_(metrics.counter("patina_apply_held_total",
                            "Apply attempts put off because the disk is below db.min_free_space_mb")),
      batch_cost_(metrics.histogram("patina_apply_batch_rows", "Rows per applied batch", {},
                                    {1, 10, 100, 500, 1000, 4000, 16000, 64000})) {}

void ApplyPipeline::start(core::TaskGroup& tasks) { tasks.spawn("apply-pipeline", run()); }

void ApplyPipeline::push(ApplyItem item) {
  if (queue_.size() >= batching_.options().queue_max) {
    // Oldest first: it has waited longest, and sync will bring it again.
    queued_cost_ -= ApplyBatching::cost_of(queue_.front().incoming);
    queue_.pop_front();
    dropped_full_.inc();
  }
  queued_cost_ += ApplyBatching::cost_of(item.incoming);
  queue_.push_back(std::move(item));
  update_gauges();
  if (waiting_for_items_ && (queue_.size() == 1 || batching_.ready(queued_cost_))) {
    waiting_for_items_ = false;
    notified_ = true;
    wake_->cancel();
  }
}

void ApplyPipeline::update_gauges() {
  depth_gauge_.set(static_cast<double>(queue_.size()));
  cost_gauge_.set(static_cast<double>(queued_cost_));
}

std::vector<ApplyItem> ApplyPipeline::take_batch() {
  std::size_t target = batching_.batch_size(queued_cost_);
  std::vector<ApplyItem> out;
  std::size_t cost = 0;
  while (!queue_.empty() && (out.empty() || cost + ApplyBatching::cost_of(queue_.front().incoming) <= target)) {
    std::size_t c = ApplyBatching::cost_of(queue_.front().incoming);
    cost += c;
    queued_cost_ -= c;
    out.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  update_gauges();
  return out;
}

void ApplyPipeline::requeue_front(std::vector<ApplyItem>& items) {
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    queued_cost_ += ApplyBatching::cost_of(it->incoming);
    queue_.push_front(std::move(*it));
  }
  items.clear();
  update_gauges();
}

namespace {

bool transient(Errc code) { return code == Errc::timeout || code == Errc::busy || code == Errc::interrupted; }

}  // namespace

net::awaitable<void> ApplyPipeline::run() {
  int transient_streak = 0;
  std::size_t last_cost = 0;
  for (;;) {
    // Wait for work. An idle pipeline applies the first item at once, so
    // batching adds no latency to a quiet node; under load, items queue
    // while a batch is in flight and go next; after a full batch, a small
    // remainder waits up to apply_queue_timeout for company (push() wakes us
    // when enough is here).
    if (queue_.empty()) {
      wake_->expires_at(net::steady_timer::time_point::max());
      waiting_for_items_ = true;
      notified_ = false;
      auto [ec] = co_await wake_->async_wait(use_nothrow);
      waiting_for_items_ = false;
      if (ec && !notified_) co_return;  // cancelled: the agent is stopping
      if (queue_.empty()) continue;
    } else if (batching_.wait_for_company(queued_cost_, last_cost)) {
      wake_->expires_after(batching_.options().timeout);
      waiting_for_items_ = true;
      notified_ = false;
      auto [ec] = co_await wake_->async_wait(use_nothrow);
      waiting_for_items_ = false;
      if (ec && !notified_) co_return;
      if (queue_.empty()) continue;
    }
    auto items = take_batch();
    if (items.empty()) continue;
    std::size_t cost = 0;
    std::vector<crdt::Incoming> batch;
    batch.reserve(items.size());
    for (const auto& item : items) {
      cost += ApplyBatching::cost_of(item.incoming);
      batch.push_back(item.incoming);
    }
    last_cost = cost;
    auto outcome = co_await sink_.apply(std::move(batch));
    if (outcome) {
      if (held_for_space_) {
        held_for_space_ = false;
        log_->info("disk space is back: applying peers' changes again ({} changesets queued)", queue_.size());
      }
      transient_streak = 0;
      batches_.inc();
      batch_cost_.observe(static_cast<double>(cost));
      batching_.succeeded();
      sink_.applied(items, *outcome);
      continue;
    }
    const Error& e = outcome.error();
    if (e.code == Errc::storage_fatal || e.code == Errc::shutting_down) {
      log_->error("apply pipeline stopped: {} ({} changesets left queued)", e.message, queue_.size() + items.size());
      co_return;
    }
    if (e.code == Errc::storage_full) {
      // Not this batch's fault, and a smaller one would not fit either:
      // hold everything and look again later. Meanwhile the bounded queue
      // drops its oldest items, which sync brings back once there is room.
      if (!held_for_space_) {
        log_->warn("holding peers' changes ({} changesets queued): {}", queue_.size() + items.size(), e.message);
      }
      held_for_space_ = true;
      held_.inc();
      requeue_front(items);
      wake_->expires_after(hold_retry);
      notified_ = false;
      auto [ec] = co_await wake_->async_wait(use_nothrow);
      if (ec) co_return;
      continue;
    }
    failures_.inc();
    batching_.failed(cost);
    if (items.size() == 1 && !transient(e.code)) {
      // Alone and still refused: this changeset itself is bad.
      dropped_bad_.inc();
      const auto& cs = items.front().incoming.changeset;
      log_->warn("dropped a changeset from {} (actor {} version {}): {}", items.front().from,
                 crdt::to_hex(cs.actor), cs.version, e.message);
      continue;
    }
    log_->warn("a batch of {} changesets ({} rows) failed: {}; retrying with batches of at most {} rows",
               items.size(), cost, e.message, batching_.cap());
    requeue_front(items);
    if (transient(e.code) && ++transient_streak > 1) {
      // The writer is struggling: give it room before the next attempt.
      wake_->expires_after(std::chrono::milliseconds(std::min(2000, 50 << std::min(transient_streak, 6))));
      notified_ = false;
      auto [ec] = co_await wake_->async_wait(use_nothrow);
      if (ec) co_return;
    }
  }
}

}  // namespace patina::io

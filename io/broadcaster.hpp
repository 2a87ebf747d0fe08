#pragma once
// Broadcaster: spreads changeset frames (io/wire.hpp) over QUIC
// unidirectional streams, one frame per stream, by one of two methods.
//
// "tree" (the default; swim/broadcast_tree.hpp): a local commit's frames go
// at once to one member of each group of the ring, each with the ring range
// it is to forward to; a receiver whose apply found the frame new forwards
// it to the groups of its range (a version already applied is never
// forwarded again, as with the gossip rounds). Every member receives a
// change once, within two hops when views agree. A failed send is re-planned
// to another member of the same range (at most tree_retries times); members
// left out (views disagree, a forwarder dies) are repaired by sync.
//
// "gossip" (Corrosion's rounds, SPEC.md §5.3):
//   * a local commit's frames go at once to every ring-0 (nearest) member,
//     then in rounds to k random members not yet sent to, for
//     max_transmissions rounds, 100 ms x round apart (swim::BroadcastPlanner
//     decides who and when);
//   * a frame received from a peer that brought something new is forwarded
//     the same way, once (the apply pipeline decides "new": a version already
//     applied is never forwarded again), to members other than its sender,
//     in two rounds of k members, with its hop count decremented; a frame
//     whose hops are spent stops
//     (the origin sends hops 0 when its nearest members are all members);
//   * outbound bytes pass a token bucket (perf.broadcast_bytes_per_sec);
//     while it is empty the rounds slow down (500 ms x round);
//   * at most max_pending broadcasts wait; beyond that the most-transmitted
//     one is dropped (sync repairs it), and sends run at most
//     max_concurrent_sends at a time through a bounded send queue;
//   * with gossip.compression, local frames are zstd-compressed when that
//     makes them smaller; forwarded frames go out verbatim.
// Receiving hands every frame to a callback (the apply pipeline).
//
// Reactor thread only.

#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/metrics.hpp"
#include "core/runtime.hpp"
#include "io/membership_driver.hpp"
#include "io/quic_endpoint.hpp"
#include "io/token_bucket.hpp"
#include "io/zstd_dictionaries.hpp"
#include "swim/broadcast_tree.hpp"
#include "swim/dissemination.hpp"
#include "swim/prng.hpp"

namespace patina::io {

struct BroadcastOptions {
  double bytes_per_sec = 10.0 * 1024 * 1024;
  std::size_t max_pending = 20000;         // broadcasts in rounds (perf.processing_queue_len)
  std::size_t send_queue_max = 20000;      // (peer, frame) sends waiting
  std::size_t max_concurrent_sends = 500;
  bool compress = false;
  int compression_level = 3;
  bool tree = true;  // gossip.broadcast: tree, or the gossip rounds
  std::uint64_t seed = 0;
};

class Broadcaster {
 public:
  // |from| is the sender's gossip address ("ip:port").
  using OnFrame = std::function<void(std::string from, std::vector<std::byte> frame)>;
  // Bidirectional streams (sync sessions) are handed over as they come.
  using OnBiStream = std::function<void(std::shared_ptr<QuicStream> stream)>;

  Broadcaster(boost::asio::any_io_executor ex, std::shared_ptr<QuicEndpoint> quic, MembershipDriver& members,
              BroadcastOptions options, core::Metrics& metrics);
  void start(core::TaskGroup& tasks, OnFrame on_frame, OnBiStream on_bi_stream = {});
  // This node's new version, as encoded frames.
  void broadcast_local(std::vector<std::vector<std::byte>> frames);
  // A peer's frame that brought something new: forwarded once (gossip
  // method; frames of the tree method carry no hops).
  void rebroadcast(std::vector<std::byte> frame, const std::string& from);
  // A peer's frame that brought something new: forwarded to the groups of
  // the tree range it carries (none when empty).
  void forward_tree(const std::vector<std::byte>& frame, const std::string& from);

  std::size_t pending() const { return pending_.size(); }
  std::size_t send_queue_depth() const { return sends_.size(); }

  static constexpr std::size_t frame_size_max = 16 * 1024 * 1024;
  static constexpr int tree_retries = 2;

  // gossip.compression dictionaries: local frames are compressed with the
  // dict_file among them (reload-dicts swaps the set in).
  void set_dictionaries(std::shared_ptr<const ZstdDictionaries> dicts) { dicts_ = std::move(dicts); }

 private:
  // gossip.compression: |frame| zstd-compressed in place when that makes it smaller.
  void compress_local(std::vector<std::byte>& frame);
  std::shared_ptr<const ZstdDictionaries> dicts_;
  struct Pending {
    std::vector<std::shared_ptr<const std::vector<std::byte>>> frames;
    swim::BroadcastBatch batch;
    std::uint32_t max_rounds = std::numeric_limits<std::uint32_t>::max();  // besides the planner's bound
    std::chrono::steady_clock::time_point due;
  };
  struct Send {
    std::string to;
    std::shared_ptr<const std::vector<std::byte>> frame;
    // Tree method: the range |to| forwards to, and the heads that failed.
    std::optional<swim::TreeRange> tree;
    std::vector<std::string> failed;
  };

  void add(Pending p);
  void enqueue_send(const std::string& to, const std::shared_ptr<const std::vector<std::byte>>& frame);
  void enqueue(Send s);
  void send_tree(std::span<const std::shared_ptr<const std::vector<std::byte>>> frames, swim::TreeRange range,
                 std::span<const std::string> exclude);
  void retry_tree(Send s);
  void wake(const std::shared_ptr<boost::asio::steady_timer>& timer, bool& flag);
  std::uint32_t max_transmissions() const;
  boost::asio::awaitable<void> schedule_loop();
  boost::asio::awaitable<void> send_loop();
  boost::asio::awaitable<void> send_one(UdpEndpoint peer, Send s);
  boost::asio::awaitable<void> receive(std::shared_ptr<QuicStream> stream);
  void update_gauges();

  boost::asio::any_io_executor ex_;
  std::shared_ptr<QuicEndpoint> quic_;
  MembershipDriver& members_;
  BroadcastOptions options_;
  core::TaskGroup* tasks_ = nullptr;
  OnFrame on_frame_;
  OnBiStream on_bi_stream_;
  swim::Prng prng_;
  TokenBucket bucket_;
  std::list<Pending> pending_;
  std::deque<Send> sends_;
  std::size_t sends_in_flight_ = 0;
  std::shared_ptr<boost::asio::steady_timer> schedule_timer_;
  std::shared_ptr<boost::asio::steady_timer> send_timer_;
  bool schedule_woken_ = false;
  bool send_woken_ = false;
  core::Counter& sent_;
  core::Counter& sent_bytes_;
  core::Counter& send_failures_;
  core::Counter& received_;
  core::Counter& dropped_pending_;
  core::Counter& dropped_sends_;
  core::Counter& rate_limited_;
  core::Counter& hops_exhausted_;
  core::Counter& tree_forwarded_;
  core::Counter& tree_rerouted_;
  core::Counter& compressed_plain_;
  core::Counter& compressed_dict_;
  core::Gauge& pending_gauge_;
  core::Gauge& send_queue_gauge_;
};

}  // namespace patina::io

// io/udp_ring.hpp — one UDP socket driven by its own io_uring.
//
// Receive path: a provided-buffer ring (liburing 2.3: mmap +
// io_uring_register_buf_ring) feeds one multishot recvmsg. Each datagram is
// handed to the callback as a span *into the kernel-filled buffer*; the buffer
// goes back to the ring as soon as the callback returns, so the callback must
// copy whatever it keeps (ngtcp2 does: it decrypts into its own memory).
// Without buffer rings or multishot receive (older kernels), a fixed set of
// plain recvmsg SQEs is used instead, logged once.
//
// Send path: send() copies the payload into one of a fixed number of send
// slots and submits a sendmsg; a payload made of several equal-size segments
// goes out as one UDP GSO sendmsg (UDP_SEGMENT), or as one sendmsg per
// segment when GSO is disabled (gossip.disable_gso) or unsupported. Sends
// beyond the free slots wait in a bounded queue; beyond that they are dropped
// and counted (UDP is lossy anyway; QUIC retransmits).
//
// Bridge: the ring's eventfd (io_uring_register_eventfd) is awaited from the
// Asio loop with stream_descriptor::async_wait, then completions are drained
// in a batch, so every callback runs on the reactor thread.
//
// Invariants:
//  (1) A receive buffer is owned by user code only during the callback.
//  (2) A send slot's memory stays untouched until its completion arrives.
//  (3) Queued sends never exceed Options::send_queue_max; drops are counted.
//  (4) ENOBUFS (buffer ring empty) re-arms the receive and MSG_TRUNC drops
//      the datagram: both are counted, neither is fatal.
//  (5) All methods are called on the executor's thread (not thread-safe).
//  (6) Peers are named by plain IPv4 endpoints even on a dual-stack [::]
//      socket: v4-mapped sources are unmapped on receive, mapped on send.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/metrics.hpp"
#include "core/result.hpp"

struct io_uring;
struct io_uring_buf_ring;

namespace patina::io {

using UdpEndpoint = boost::asio::ip::udp::endpoint;

// Parses "ip:port" or "[v6]:port" (no DNS).
Result<UdpEndpoint> parse_endpoint(const std::string& text);

struct UdpRingOptions {
  std::string bind_addr = "127.0.0.1:0";
  bool disable_gso = false;
  // Receive buffers: count is a power of two; size bounds one datagram plus
  // the recvmsg header. Larger datagrams are truncated, dropped and counted.
  unsigned buffer_count = 512;
  unsigned buffer_size = 4096;
  unsigned send_slots = 64;
  std::size_t send_queue_max = 4096;
  int socket_buffer_bytes = 4 << 20;
  // Testing: use plain recvmsg even when the kernel has multishot receive.
  bool force_plain_receive = false;
  // Metric names are prefixed "patina_udp_"; labels tell rings apart.
  core::Labels metric_labels;
};

class UdpRing : public std::enable_shared_from_this<UdpRing> {
 public:
  // Called once per datagram; |payload| is valid only during the call.
  using OnDatagram = std::function<void(const UdpEndpoint& from, std::span<const std::byte> payload)>;

  // Opens and binds the socket and sets up the ring. |metrics| must outlive
  // the ring. Fails with Errc::io naming the failing step.
  static Result<std::shared_ptr<UdpRing>> open(boost::asio::any_io_executor ex, UdpRingOptions options,
                                               core::Metrics& metrics);
  ~UdpRing();
  UdpRing(const UdpRing&) = delete;
  UdpRing& operator=(const UdpRing&) = delete;

  // Arms the receive and starts draining completions on the executor.
  void start(OnDatagram on_datagram);
  // Stops receiving; pending sends are abandoned. Idempotent.
  void close();

  // Queues |payload| to |to|. If |segment_size| > 0 and smaller than the
  // payload, the payload is that many-byte datagrams (the last may be
  // shorter), sent with GSO when enabled. Returns false if dropped.
  bool send(const UdpEndpoint& to, std::span<const std::byte> payload, std::size_t segment_size = 0);

  UdpEndpoint local_endpoint() const { return local_; }
  bool multishot() const { return multishot_; }
  bool gso() const { return gso_; }
  std::size_t send_queue_depth() const { return pending_.size(); }

 private:
  struct SendSlot;
  struct PlainRecvSlot;
  struct PendingSend {
    UdpEndpoint to;
    std::vector<std::byte> data;
    std::uint16_t segment = 0;
  };

  UdpRing(boost::asio::any_io_executor ex, UdpRingOptions options, core::Metrics& metrics);
  Result<void> setup();
  Result<void> setup_buffer_ring();
  void arm_multishot();
  void arm_plain(std::size_t slot);
  void fall_back_to_plain(const char* why);
  void pump_sends();
  void submit();
  void drain();
  void handle_recv_cqe(int res, unsigned flags);
  void handle_plain_cqe(std::size_t slot, int res);
  void handle_send_cqe(std::size_t slot, int res);
  void deliver(const void* name, unsigned namelen, std::span<const std::byte> payload);
  static boost::asio::awaitable<void> run(std::shared_ptr<UdpRing> self);

  boost::asio::any_io_executor ex_;
  UdpRingOptions options_;
  int fd_ = -1;
  int event_fd_ = -1;
  std::unique_ptr<io_uring> ring_;
  bool ring_ready_ = false;
  std::unique_ptr<boost::asio::posix::stream_descriptor> event_sd_;
  UdpEndpoint local_;
  OnDatagram on_datagram_;
  bool started_ = false;
  bool closed_ = false;
  bool draining_ = false;
  bool submit_pending_ = false;

  // Provided-buffer ring (multishot path).
  bool multishot_ = false;
  io_uring_buf_ring* buf_ring_ = nullptr;
  std::size_t buf_ring_bytes_ = 0;
  std::byte* buffers_ = nullptr;  // buffer_count * buffer_size, mmap'd
  std::size_t buffers_bytes_ = 0;
  void* recv_msg_ = nullptr;  // struct msghdr template, owned

  // Plain-receive fallback.
  std::vector<std::unique_ptr<PlainRecvSlot>> plain_slots_;

  bool gso_ = false;
  std::vector<std::unique_ptr<SendSlot>> send_slots_;
  std::vector<std::size_t> free_send_slots_;
  std::deque<PendingSend> pending_;

  core::Counter& rx_datagrams_;
  core::Counter& rx_bytes_;
  core::Counter& rx_enobufs_;
  core::Counter& rx_truncated_;
  core::Counter& rx_errors_;
  core::Counter& tx_datagrams_;
  core::Counter& tx_bytes_;
  core::Counter& tx_dropped_;
  core::Counter& tx_errors_;
  core::Gauge& tx_queue_depth_;
  core::Gauge& tx_slots_busy_;
};

}  // namespace patina::io

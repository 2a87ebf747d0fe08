// io/quic_endpoint.hpp — the QUIC endpoint of a node: ngtcp2 0.12 + GnuTLS on
// one UdpRing, client and server roles on the same UDP port.
//
// Channels (SPEC.md §5.1): DATAGRAM frames (SWIM), unidirectional streams
// (broadcasts) and bidirectional streams (sync sessions).
//
// Roles. Outgoing traffic uses our client connection to the peer, cached per
// peer address, or — with QuicConfig::reuse_inbound, when we have none — the
// connection the peer dialed to us, so a pair of nodes normally shares one
// connection (half the keep-alives, and replies carry the ACKs of what they
// answer). send_datagram/open_uni/open_bi dial when neither exists (5 s
// connect timeout) and re-dial when it has failed or closed; a Stateless
// Reset hint from a restarted dialer drops its stale inbound connection.
// Incoming streams and datagrams reach the on_datagram/on_stream handlers
// whichever side dialed, and a handler answers a bidirectional stream on
// that same stream. Because both roles share the port, a peer's source
// address is its gossip address.
//
// Packet dispatch is by destination connection ID (all ours are 16 bytes).
// An unknown ID in a long-header Initial packet makes a server connection;
// anything else unknown (garbage, unknown versions, stale connections) is
// dropped, counted in patina_quic_bad_packets_total{reason} and logged at
// most once a second naming the peer. Unknown versions in full-size
// datagrams get a Version Negotiation answer and short-header packets for an
// unknown connection a Stateless Reset (both rate-limited), so a peer whose
// connection state we lost (restart) learns it at once.
//
// Timers. Each connection has one timer, re-armed from ngtcp2_conn_get_expiry
// after every read or write. Idle timeout is gossip.idle_timeout_secs; client
// connections send a keep-alive PING after 5/6 of the timeout without traffic
// so idle caches stay warm.
//
// Flow control. Stream data handed to write() is kept until acknowledged;
// write() resumes only once the unacknowledged backlog of its stream is below
// a high-water mark. Receive credit is returned to the peer as the reader
// consumes data, so a slow reader slows its sender instead of growing memory.
//
// ngtcp2 0.12 never frees a peer's finished unidirectional streams (fixed
// upstream in 0.14): we return their stream credit ourselves and replace a
// client connection after QuicConfig::uni_streams_per_connection streams.
// PATINA_NGTCP2_DEBUG=1 in the environment prints ngtcp2's own trace.
//
// Use from a driver (all on the reactor):
//   auto ep = QuicEndpoint::open(ex, *quic_config_from(cfg.gossip), metrics);
//   (*ep)->set_on_datagram([&](const UdpEndpoint& from, std::span<const std::byte> b) {
//     membership.handle_datagram(now, b, effects);   // copy what you keep
//   });
//   (*ep)->set_on_stream([ex](std::shared_ptr<QuicStream> s) {
//     co_spawn(ex, s->unidirectional() ? read_broadcast(s) : serve_sync(s), detached);
//   });
//   (*ep)->start();
//   if (!ep->try_send_datagram(peer, bytes))         // fast path, no dial
//     co_spawn(ex, send_datagram_task(ep, peer, bytes), detached);
//   co_await ep->send_uni(peer, frames);              // broadcast
//   auto s = co_await ep->open_bi(peer);              // sync session
//
// Invariants:
//  (1) Everything runs on the endpoint's executor (one reactor thread); no
//      user callback runs inside an ngtcp2 callback except on_datagram, whose
//      span is valid only during the call.
//  (2) Decisions on ngtcp2 return codes are made only in quic_error.cpp.
//  (3) A closed connection is removed from every map at once; later calls
//      re-dial. Streams of a closed connection fail reads and writes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "core/config.hpp"
#include "core/metrics.hpp"
#include "core/result.hpp"
#include "io/quic_tls.hpp"
#include "io/udp_ring.hpp"

struct ngtcp2_cid;
struct ngtcp2_version_cid;

namespace patina::io {

struct QuicConfig {
  std::string bind_addr = "127.0.0.1:0";
  QuicTlsConfig tls;
  std::chrono::milliseconds idle_timeout{30000};
  bool keep_alive = true;
  std::chrono::milliseconds connect_timeout{5000};
  // Fixed UDP payload size (>= 1200) and no path MTU discovery when set.
  std::optional<int> max_mtu;
  bool disable_gso = false;
  std::uint64_t stream_window = 256 * 1024;
  std::uint64_t connection_window = 1024 * 1024;
  std::uint64_t max_streams_bidi = 32;
  std::uint64_t max_streams_uni = 256;
  std::size_t stream_send_high_water = 256 * 1024;
  // A client connection is replaced after this many uni streams, because
  // ngtcp2 0.12 never frees a peer's finished uni streams (fixed in 0.14).
  std::uint64_t uni_streams_per_connection = 4096;
  // Key for stateless reset tokens. Give the same key across restarts
  // (persist it) and peers drop their stale connections to a restarted node
  // at its first reply instead of after the idle timeout. Empty: a random
  // key per process, which only helps within one process lifetime.
  std::string stateless_reset_key;
  std::size_t connections_max = 4096;
  // Send to a peer over the connection it dialed to us when we have none of
  // our own, so a pair of nodes shares one connection: replies carry the
  // ACKs of what they answer, and only one side sends keep-alives. Only
  // where the dialer is as trusted as a server we would verify (plaintext,
  // `insecure`, or mutual TLS); with server-only TLS we always dial.
  bool reuse_inbound = true;
  // After a lone received packet with nothing of ours to send, the ACK waits
  // up to this long for a reply or a send of ours to ride on instead of
  // going out alone (ngtcp2 would send it after smoothed_rtt/8, i.e. at once
  // on a LAN). Stays below the 25 ms max_ack_delay we advertise, so the
  // peer's RTT and loss timers are unaffected; two packets are acknowledged
  // at once, as RFC 9000 §13.2.2 advises for bulk transfers. 0: off.
  std::chrono::milliseconds ack_hold{20};
  core::Labels metric_labels;
};

// Builds a QuicConfig from [gossip] (bind_addr, plaintext, tls, max_mtu,
// idle_timeout_secs, disable_gso). Errc::invalid_argument when TLS is
// neither plaintext nor configured, or max_mtu < 1200.
Result<QuicConfig> quic_config_from(const core::GossipConfig& gossip);

// At most one log line per |interval|; counts what it swallowed.
class LogRateLimit {
 public:
  bool allow(std::chrono::steady_clock::time_point now) {
    if (now < next_) {
      ++suppressed_;
      return false;
    }
    next_ = now + interval_;
    return true;
  }
  std::uint64_t take_suppressed() { return std::exchange(suppressed_, 0); }

 private:
  std::chrono::steady_clock::duration interval_ = std::chrono::seconds(1);
  std::chrono::steady_clock::time_point next_{};
  std::uint64_t suppressed_ = 0;
};

class QuicConnection;
class QuicNotifier;
struct QuicCallbacks;

// One QUIC stream. Obtained from open_uni/open_bi (local) or on_stream
// (remote). Kept alive by shared ownership; outlives its connection safely.
class QuicStream : public std::enable_shared_from_this<QuicStream> {
 public:
  std::int64_t id() const { return id_; }
  bool unidirectional() const { return (id_ & 0x2) != 0; }
  bool local() const { return local_; }
  const UdpEndpoint& peer() const { return peer_; }

  // Queues |data| (then FIN when |fin|) and resumes once the stream's
  // unacknowledged backlog is below the high-water mark. Errors: Errc::io
  // when the connection closed or the peer stopped the stream,
  // Errc::invalid_argument after FIN or on a receive-only stream,
  // Errc::timeout when no progress for the idle timeout.
  boost::asio::awaitable<Result<void>> write(std::vector<std::byte> data, bool fin = false);
  // write() of nothing with FIN (spares callers a braced list in co_await).
  boost::asio::awaitable<Result<void>> finish();
  // Resumes when everything written so far was acknowledged.
  boost::asio::awaitable<Result<void>> flush(std::chrono::milliseconds timeout);
  // The next received bytes; an empty vector means FIN (end of stream).
  // Errors: Errc::io (connection closed, stream reset), Errc::timeout.
  boost::asio::awaitable<Result<std::vector<std::byte>>> read_some(std::chrono::milliseconds timeout);
  // Reads until FIN. Errc::invalid_argument when more than |limit| bytes.
  boost::asio::awaitable<Result<std::vector<std::byte>>> read_all(std::size_t limit,
                                                                  std::chrono::milliseconds timeout);
  // Abandons the stream in both directions with |app_error|.
  void reset(std::uint64_t app_error = 0);

 private:
  friend class QuicConnection;
  friend struct QuicCallbacks;
  QuicStream(std::weak_ptr<QuicConnection> conn, std::int64_t id, bool local, UdpEndpoint peer);

  struct Chunk {
    std::uint64_t offset;
    std::vector<std::byte> data;
  };

  std::weak_ptr<QuicConnection> conn_;
  std::int64_t id_;
  bool local_;
  UdpEndpoint peer_;
  // Send side: chunks kept from the acknowledged offset on.
  std::deque<Chunk> tx_;
  std::uint64_t tx_end_ = 0;
  std::uint64_t tx_sent_ = 0;
  std::uint64_t tx_acked_ = 0;
  bool fin_requested_ = false;
  bool fin_sent_ = false;
  bool write_closed_ = false;
  // Receive side.
  std::deque<std::vector<std::byte>> rx_;
  bool fin_received_ = false;
  bool reset_received_ = false;
  bool closed_ = false;
  std::shared_ptr<QuicNotifier> events_;
};

class QuicEndpoint : public std::enable_shared_from_this<QuicEndpoint> {
 public:
  using OnDatagram = std::function<void(const UdpEndpoint& peer, std::span<const std::byte> payload)>;
  using OnStream = std::function<void(std::shared_ptr<QuicStream> stream)>;

  // Binds the UDP socket and loads TLS material. |metrics| outlives the
  // endpoint. Nothing is received until start().
  static Result<std::shared_ptr<QuicEndpoint>> open(boost::asio::any_io_executor ex, QuicConfig config,
                                                    core::Metrics& metrics);
  ~QuicEndpoint();
  QuicEndpoint(const QuicEndpoint&) = delete;
  QuicEndpoint& operator=(const QuicEndpoint&) = delete;

  void set_on_datagram(OnDatagram handler) { on_datagram_ = std::move(handler); }
  void set_on_stream(OnStream handler) { on_stream_ = std::move(handler); }
  void start();
  // Stops receiving and closes every connection. With |notify_peers| (the
  // normal case) each peer gets a CONNECTION_CLOSE and re-dials at once;
  // without it peers notice only by idle timeout, as after a crash.
  void close(bool notify_peers = true);

  // Ensures a handshaken client connection to |peer| (dialing if needed).
  // Errors: Errc::timeout (5 s), Errc::protocol (TLS refused, with the
  // peer's close code), Errc::shutting_down.
  boost::asio::awaitable<Result<void>> connect(UdpEndpoint peer);
  // Unreliable, unordered; at most max_datagram_size() bytes.
  boost::asio::awaitable<Result<void>> send_datagram(UdpEndpoint peer, std::vector<std::byte> payload);
  // The synchronous fast path for drivers: queues |payload| on an already
  // established connection to |peer| and returns true; returns false (and
  // sends nothing) when there is none yet, or the payload is too large or
  // the queue full. Safe to call from on_datagram.
  bool try_send_datagram(const UdpEndpoint& peer, std::span<const std::byte> payload);
  boost::asio::awaitable<Result<std::shared_ptr<QuicStream>>> open_uni(UdpEndpoint peer);
  boost::asio::awaitable<Result<std::shared_ptr<QuicStream>>> open_bi(UdpEndpoint peer);
  // open_uni + write + FIN + wait until acknowledged.
  boost::asio::awaitable<Result<void>> send_uni(UdpEndpoint peer, std::vector<std::byte> payload);
  // open_bi, send |request| with FIN, read the whole response (<= |limit|).
  boost::asio::awaitable<Result<std::vector<std::byte>>> request(UdpEndpoint peer, std::vector<std::byte> request,
                                                                 std::size_t limit);

  // Closes our cached connections with |peer| (CONNECTION_CLOSE), e.g.
  // when membership declares it down; the next send re-dials.
  void disconnect(const UdpEndpoint& peer);

  UdpEndpoint local_endpoint() const;
  std::size_t max_datagram_size() const;
  std::size_t connection_count() const { return conns_.size(); }
  // Whether sends to |peer| would go out at once: our own handshaken client
  // connection, or (reuse_inbound) the one |peer| dialed to us.
  bool has_client_connection(const UdpEndpoint& peer) const;
  // Smoothed RTT of that connection, if one is up.
  std::optional<std::chrono::microseconds> rtt(const UdpEndpoint& peer) const;
  const QuicConfig& config() const { return config_; }

 private:
  friend class QuicConnection;
  friend struct QuicCallbacks;
  QuicEndpoint(boost::asio::any_io_executor ex, QuicConfig config, core::Metrics& metrics);
  void handle_datagram(const UdpEndpoint& from, std::span<const std::byte> data);
  boost::asio::awaitable<Result<std::shared_ptr<QuicConnection>>> client_connection(UdpEndpoint peer);
  // The connection sends to |peer| use without dialing, or null.
  QuicConnection* ready_connection(const UdpEndpoint& peer) const;
  boost::asio::awaitable<Result<std::shared_ptr<QuicStream>>> open_stream(UdpEndpoint peer, bool bidi);
  void register_cid(const std::string& cid, QuicConnection* conn);
  void unregister_cid(const std::string& cid);
  // A random connection ID of |len| bytes that none of ours uses.
  ngtcp2_cid fresh_cid(std::size_t len) const;
  void forget(QuicConnection* conn);
  void bad_packet(const char* reason, const UdpEndpoint& from);
  void send_version_negotiation(const UdpEndpoint& to, const ngtcp2_version_cid& vc, std::size_t datagram_size);
  void send_stateless_reset(const UdpEndpoint& to, const ngtcp2_version_cid& vc, std::size_t datagram_size);
  void reset_token(std::uint8_t* token, const std::uint8_t* cid, std::size_t cidlen) const;

  boost::asio::any_io_executor ex_;
  QuicConfig config_;
  core::Metrics& metrics_;
  std::shared_ptr<TlsContext> tls_;
  std::shared_ptr<UdpRing> ring_;
  OnDatagram on_datagram_;
  OnStream on_stream_;
  bool closed_ = false;
  std::map<QuicConnection*, std::shared_ptr<QuicConnection>> conns_;
  std::unordered_map<std::string, QuicConnection*> cids_;
  std::map<UdpEndpoint, std::shared_ptr<QuicConnection>> clients_;
  // Handshaken connections peers dialed to us, latest per address; used for
  // sending only when reuse_inbound_ and we have no client connection.
  std::map<UdpEndpoint, std::shared_ptr<QuicConnection>> inbound_;
  bool reuse_inbound_ = false;
  LogRateLimit bad_log_limit_;
  LogRateLimit tls_log_limit_;
  std::chrono::steady_clock::time_point vn_window_start_{};
  int vn_sent_in_window_ = 0;
  std::chrono::steady_clock::time_point reset_window_start_{};
  int resets_in_window_ = 0;
  std::string reset_key_;
  // Every connection's write() builds its packets here (the reactor runs one
  // at a time, and the ring copies what it is given): one buffer of 16
  // packets, not one per connection (~23 KB each, kept for the connection's
  // life: 0.7 MB at 32 members, 11 MB at 500).
  std::vector<std::uint8_t> txbuf_;

  core::Gauge& connections_;
  core::Counter& handshakes_client_;
  core::Counter& handshakes_server_;
  core::Counter& connect_failures_;
  core::Counter& datagrams_sent_;
  core::Counter& datagrams_received_;
  core::Counter& datagrams_dropped_;
  core::Counter& streams_opened_;
  core::Counter& tls_failures_;
  core::Histogram& handshake_seconds_;
};

}  // namespace patina::io

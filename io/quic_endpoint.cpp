#include "io/quic_endpoint.hpp"

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <gnutls/crypto.h>

#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <list>
#include <sstream>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <fmt/format.h>

#include "core/log.hpp"
#include "core/runtime.hpp"
#include "io/quic_error.hpp"

namespace patina::io {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// 8 bytes: ample for the few connections a node holds, and every packet
// carries one (a broadcast of a small change is ~130 bytes on the wire).
// Our connection IDs, which peers put in every short-header packet: 4 bytes
// (half of what we used before) save 4 bytes on each datagram, a twelfth of an
// ACK-only packet. Endpoints hold a few hundred at most, and a new one is
// drawn again if it is taken (QuicEndpoint::fresh_cid). Short headers are
// parsed with our own length, so peers with other lengths interoperate.
constexpr std::size_t cid_len = 4;
// RFC 9000 §7.2: a client's first Destination Connection ID has 8 bytes or more.
constexpr std::size_t initial_dcid_len = 8;
constexpr std::size_t gso_batch_max = 16;
constexpr int packets_per_write_max = 512;
constexpr std::size_t datagram_queue_max = 1024;
// Short header (1 + 16-byte DCID + 4-byte packet number), AEAD tag (16),
// DATAGRAM frame type and length (3), rounded up: what a datagram may not use.
constexpr std::size_t datagram_overhead = 48;
// A receive buffer holds the recvmsg header (io_uring_recvmsg_out and the
// peer's address) and one datagram.
constexpr std::size_t recv_header = 16 + sizeof(sockaddr_storage);

// Receive buffers just big enough for the largest datagram we accept: the
// larger of gossip.max_mtu and ngtcp2's path MTU probe ceiling (1452). Half of
// the former 4 KiB, so an idle member's touched buffers cost 1 MiB, not 2.
unsigned receive_buffer_size(const QuicConfig& c) {
  std::size_t largest = std::max<std::size_t>(static_cast<std::size_t>(c.max_mtu.value_or(1452)), 1452);
  return static_cast<unsigned>(std::bit_ceil(largest + recv_header));
}

ngtcp2_tstamp now_ts() {
  return static_cast<ngtcp2_tstamp>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

std::string to_string(const UdpEndpoint& ep) {
  if (ep.address().is_v6()) return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

void random_bytes(std::uint8_t* dest, std::size_t len) { gnutls_rnd(GNUTLS_RND_RANDOM, dest, len); }

ngtcp2_cid random_cid(std::size_t len) {
  ngtcp2_cid cid{};
  cid.datalen = len;
  random_bytes(cid.data, len);
  return cid;
}

// ngtcp2's own trace, on stderr when PATINA_NGTCP2_DEBUG is set.
void debug_printf(void*, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "%.3f ", static_cast<double>(now_ts() % 100000000000ULL) / 1e6);
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
}

std::string cid_key(const std::uint8_t* data, std::size_t len) {
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace

// Wakes every coroutine waiting on a connection's events (handshake, data,
// acknowledgements, credit, close). Waiters re-check their own condition.
class QuicNotifier {
 public:
  void notify() {
    for (net::steady_timer* t : waiters_) t->cancel();
  }
  std::list<net::steady_timer*> waiters_;
};

namespace {

// True when woken (or cancelled), false when |deadline| passed.
net::awaitable<bool> wait_event(std::shared_ptr<QuicNotifier> events, Clock::time_point deadline) {
  net::steady_timer timer(co_await net::this_coro::executor, deadline);
  auto it = events->waiters_.insert(events->waiters_.end(), &timer);
  auto [ec] = co_await timer.async_wait(core::use_nothrow);
  events->waiters_.erase(it);
  co_return static_cast<bool>(ec);
}

}  // namespace

// One ngtcp2 connection, either role. Internal to the endpoint; all members
// are used by the ngtcp2 callbacks below.
class QuicConnection : public std::enable_shared_from_this<QuicConnection> {
 public:
  QuicConnection(QuicEndpoint* ep, bool server, UdpEndpoint peer)
      : ep_(ep),
        server_(server),
        peer_(std::move(peer)),
        local_(ep->ring_->local_endpoint()),
        peer_host_(peer_.address().to_string()),
        timer_(ep->ex_),
        events_(std::make_shared<QuicNotifier>()),
        started_(Clock::now()),
        idle_timeout_(ep->config_.idle_timeout),
        high_water_(ep->config_.stream_send_high_water),
        ack_hold_(static_cast<ngtcp2_duration>(std::chrono::nanoseconds(ep->config_.ack_hold).count())),
        stream_credit_urgent_(static_cast<std::size_t>(ep->config_.stream_window / 4)),
        uni_per_connection_(ep->config_.uni_streams_per_connection) {
    conn_ref_.get_conn = [](ngtcp2_crypto_conn_ref* ref) {
      return static_cast<QuicConnection*>(ref->user_data)->conn_;
    };
    conn_ref_.user_data = this;
  }

  ~QuicConnection() {
    if (conn_ != nullptr) ngtcp2_conn_del(conn_);
    if (session_ != nullptr) gnutls_deinit(session_);
  }

  Result<void> init_client();
  Result<void> init_server(const ngtcp2_pkt_hd& hd);
  void on_read(const UdpEndpoint& from, std::span<const std::byte> data);
  void on_timer();
  void schedule_write();
  // Whether the ACK for what was just read may wait (QuicConfig::ack_hold).
  bool hold_ack();
  bool nothing_to_send() const;
  void write();
  void handle_error(int rv);
  void close(std::uint64_t app_error);
  void finalize(Error error);
  void arm_timer();
  void send_close(const ngtcp2_connection_close_error& ccerr);
  Error describe_close(int rv, Errc code);
  void extend_credit(std::int64_t stream_id, std::size_t n);
  void maybe_recycle();
  std::shared_ptr<QuicStream> add_stream(std::int64_t id, bool local);
  ngtcp2_path path_to(const UdpEndpoint& remote);
  void fill_settings(ngtcp2_settings& settings, ngtcp2_transport_params& params) const;
  static ngtcp2_callbacks callbacks(bool server);

  QuicEndpoint* ep_;  // the owner; never used once closed_
  bool server_;
  UdpEndpoint peer_;
  UdpEndpoint local_;
  UdpEndpoint path_remote_;  // storage ngtcp2_path points into
  std::string peer_host_;    // GnuTLS keeps a pointer to the name it verifies
  ngtcp2_conn* conn_ = nullptr;
  gnutls_session_t session_ = nullptr;
  ngtcp2_crypto_conn_ref conn_ref_{};
  net::steady_timer timer_;
  ngtcp2_tstamp armed_expiry_ = UINT64_MAX;
  std::shared_ptr<QuicNotifier> events_;
  Clock::time_point started_;
  std::chrono::milliseconds idle_timeout_;
  std::size_t high_water_;
  bool handshake_confirmed_ = false;
  bool closed_ = false;
  bool write_scheduled_ = false;
  ngtcp2_duration ack_hold_;
  ngtcp2_tstamp ack_hold_until_ = 0;  // 0: no ACK held
  int rx_since_write_ = 0;
  std::size_t credit_since_write_ = 0;
  std::size_t stream_credit_urgent_;
  Error close_error_{Errc::io, "connection closed"};
  std::map<std::int64_t, std::shared_ptr<QuicStream>> streams_;
  std::deque<std::vector<std::byte>> datagrams_out_;
  std::vector<std::string> cids_;
  std::uint64_t remote_uni_leaked_ = 0;
  std::uint64_t unsent_uni_credit_ = 0;

  // One MAX_STREAMS per quarter of the window instead of one per stream: a
  // broadcast is one stream, and a MAX_STREAMS frame makes the peer's ACK
  // ack-eliciting, which doubled the packets per broadcast.
  void return_uni_credit() {
    const std::uint64_t batch = std::max<std::uint64_t>(1, ep_->config_.max_streams_uni / 4);
    if (++unsent_uni_credit_ < batch) return;
    ngtcp2_conn_extend_max_streams_uni(conn_, unsent_uni_credit_);
    unsent_uni_credit_ = 0;
  }
  std::uint64_t uni_opened_ = 0;
  std::uint64_t uni_per_connection_;
  bool retiring_ = false;  // no new streams; closes when its streams end
};

// ---------------------------------------------------------------------------
// ngtcp2 callbacks: cast user_data and forward. A struct so that it can be
// a friend of the endpoint and stream classes.

struct QuicCallbacks {

  static QuicConnection* self_of(void* user_data) { return static_cast<QuicConnection*>(user_data); }

  static void rand_cb(std::uint8_t* dest, std::size_t destlen, const ngtcp2_rand_ctx*) { random_bytes(dest, destlen); }

  static int get_new_connection_id_cb(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token, std::size_t cidlen, void* user_data) {
    QuicConnection* c = self_of(user_data);
    *cid = c->ep_->fresh_cid(cidlen);
    c->ep_->reset_token(token, cid->data, cidlen);
    std::string key = cid_key(cid->data, cidlen);
    c->cids_.push_back(key);
    c->ep_->register_cid(key, c);
    return 0;
  }

  static int remove_connection_id_cb(ngtcp2_conn*, const ngtcp2_cid* cid, void* user_data) {
    QuicConnection* c = self_of(user_data);
    std::string key = cid_key(cid->data, cid->datalen);
    c->ep_->unregister_cid(key);
    std::erase(c->cids_, key);
    return 0;
  }

  static int handshake_completed_cb(ngtcp2_conn*, void* user_data) {
    QuicConnection* c = self_of(user_data);
    // A client waits for confirmation: under mutual TLS the server may still
    // refuse after the client's handshake completed (pitfall 7).
    if (c->server_) {
      c->handshake_confirmed_ = true;
      c->ep_->handshakes_server_.inc();
      if (c->ep_->reuse_inbound_) c->ep_->inbound_[c->peer_] = c->shared_from_this();
      c->events_->notify();
    }
    return 0;
  }

  static int handshake_confirmed_cb(ngtcp2_conn*, void* user_data) {
    QuicConnection* c = self_of(user_data);
    if (!c->server_ && !c->handshake_confirmed_) {
      c->handshake_confirmed_ = true;
      c->ep_->handshakes_client_.inc();
      c->ep_->handshake_seconds_.observe(std::chrono::duration<double>(Clock::now() - c->started_).count());
      c->events_->notify();
    }
    return 0;
  }

  static int recv_stream_data_cb(ngtcp2_conn*, std::uint32_t flags, std::int64_t stream_id, std::uint64_t, const std::uint8_t* data,
                          std::size_t datalen, void* user_data, void*) {
    QuicConnection* c = self_of(user_data);
    auto it = c->streams_.find(stream_id);
    std::shared_ptr<QuicStream> s;
    if (it != c->streams_.end()) {
      s = it->second;
    } else if (!ngtcp2_conn_is_local_stream(c->conn_, stream_id)) {
      s = c->add_stream(stream_id, false);
    } else {
      return 0;  // a local stream we already forgot
    }
    if (datalen > 0) {
      const auto* p = reinterpret_cast<const std::byte*>(data);
      s->rx_.emplace_back(p, p + datalen);
    }
    if ((flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0) {
      s->fin_received_ = true;
  #if NGTCP2_VERSION_NUM < 0x000e00
      if (s->unidirectional()) {
        // ngtcp2 < 0.14 never closes a remote unidirectional stream (fixed
        // upstream in 1d591bde): no stream_close, no credit back. Return the
        // credit here; the stream object stays inside ngtcp2, which is why
        // maybe_recycle() eventually replaces the connection.
        c->return_uni_credit();
        ++c->remote_uni_leaked_;
        s->closed_ = true;
        c->streams_.erase(stream_id);
      }
  #endif
    }
    c->events_->notify();
    return 0;
  }

  static int stream_open_cb(ngtcp2_conn*, std::int64_t stream_id, void* user_data) {
    QuicConnection* c = self_of(user_data);
    if (c->streams_.find(stream_id) == c->streams_.end()) c->add_stream(stream_id, false);
    return 0;
  }

  static int acked_stream_data_offset_cb(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t offset, std::uint64_t datalen,
                                  void* user_data, void*) {
    QuicConnection* c = self_of(user_data);
    auto it = c->streams_.find(stream_id);
    if (it == c->streams_.end()) return 0;
    QuicStream& s = *it->second;
    s.tx_acked_ = std::max(s.tx_acked_, offset + datalen);
    // Acknowledged data is never retransmitted: release it.
    while (!s.tx_.empty() && s.tx_.front().offset + s.tx_.front().data.size() <= s.tx_acked_) s.tx_.pop_front();
    c->events_->notify();
    return 0;
  }

  static int stream_close_cb(ngtcp2_conn*, std::uint32_t, std::int64_t stream_id, std::uint64_t, void* user_data, void*) {
    QuicConnection* c = self_of(user_data);
    // ngtcp2 returns stream credit only for streams it never announced: give
    // the peer one more stream for each of its streams that closed.
    if (!ngtcp2_conn_is_local_stream(c->conn_, stream_id)) {
      if ((stream_id & 0x2) != 0) {
  #if NGTCP2_VERSION_NUM >= 0x000e00
        c->return_uni_credit();
  #endif
      } else {
        ngtcp2_conn_extend_max_streams_bidi(c->conn_, 1);
      }
    }
    auto it = c->streams_.find(stream_id);
    if (it == c->streams_.end()) return 0;
    QuicStream& s = *it->second;
    s.closed_ = true;
    if (s.fin_sent_) s.tx_acked_ = s.tx_end_;
    s.tx_.clear();
    c->streams_.erase(it);
    c->events_->notify();
    return 0;
  }

  static int stream_reset_cb(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, std::uint64_t, void* user_data, void*) {
    QuicConnection* c = self_of(user_data);
    if (auto it = c->streams_.find(stream_id); it != c->streams_.end()) it->second->reset_received_ = true;
    c->events_->notify();
    return 0;
  }

  static int stream_stop_sending_cb(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, void* user_data, void*) {
    QuicConnection* c = self_of(user_data);
    if (auto it = c->streams_.find(stream_id); it != c->streams_.end()) {
      it->second->write_closed_ = true;
      it->second->tx_.clear();
    }
    c->events_->notify();
    return 0;
  }

  static int extend_max_streams_cb(ngtcp2_conn*, std::uint64_t, void* user_data) {
    self_of(user_data)->events_->notify();
    return 0;
  }

  static int extend_max_stream_data_cb(ngtcp2_conn*, std::int64_t, std::uint64_t, void* user_data, void*) {
    self_of(user_data)->events_->notify();
    return 0;
  }

  static int recv_datagram_cb(ngtcp2_conn*, std::uint32_t, const std::uint8_t* data, std::size_t datalen, void* user_data) {
    QuicConnection* c = self_of(user_data);
    c->ep_->datagrams_received_.inc();
    if (c->ep_->on_datagram_) {
      c->ep_->on_datagram_(c->peer_, std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), datalen));
    }
    return 0;
  }

};

ngtcp2_callbacks QuicConnection::callbacks(bool server) {
  ngtcp2_callbacks cb{};
  if (server) {
    cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb.client_initial = ngtcp2_crypto_client_initial_cb;
    cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.rand = QuicCallbacks::rand_cb;
  cb.get_new_connection_id = QuicCallbacks::get_new_connection_id_cb;
  cb.remove_connection_id = QuicCallbacks::remove_connection_id_cb;
  cb.handshake_completed = QuicCallbacks::handshake_completed_cb;
  cb.handshake_confirmed = QuicCallbacks::handshake_confirmed_cb;
  cb.recv_stream_data = QuicCallbacks::recv_stream_data_cb;
  cb.stream_open = QuicCallbacks::stream_open_cb;
  cb.acked_stream_data_offset = QuicCallbacks::acked_stream_data_offset_cb;
  cb.stream_close = QuicCallbacks::stream_close_cb;
  cb.stream_reset = QuicCallbacks::stream_reset_cb;
  cb.stream_stop_sending = QuicCallbacks::stream_stop_sending_cb;
  cb.extend_max_local_streams_bidi = QuicCallbacks::extend_max_streams_cb;
  cb.extend_max_local_streams_uni = QuicCallbacks::extend_max_streams_cb;
  cb.extend_max_stream_data = QuicCallbacks::extend_max_stream_data_cb;
  cb.recv_datagram = QuicCallbacks::recv_datagram_cb;
  return cb;
}

// ---------------------------------------------------------------------------
// QuicConnection

ngtcp2_path QuicConnection::path_to(const UdpEndpoint& remote) {
  path_remote_ = remote;
  ngtcp2_path path{};
  path.local.addr = local_.data();
  path.local.addrlen = static_cast<ngtcp2_socklen>(local_.size());
  path.remote.addr = path_remote_.data();
  path.remote.addrlen = static_cast<ngtcp2_socklen>(path_remote_.size());
  return path;
}

void QuicConnection::fill_settings(ngtcp2_settings& settings, ngtcp2_transport_params& params) const {
  const QuicConfig& cfg = ep_->config_;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now_ts();
  if (std::getenv("PATINA_NGTCP2_DEBUG") != nullptr) {
    settings.log_printf = debug_printf;
  }
  settings.handshake_timeout =
      static_cast<ngtcp2_duration>(std::chrono::duration_cast<std::chrono::nanoseconds>(cfg.connect_timeout).count());
  if (cfg.max_mtu) {
    settings.max_tx_udp_payload_size = static_cast<std::size_t>(*cfg.max_mtu);
    settings.no_pmtud = 1;
  }
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = cfg.stream_window;
  params.initial_max_stream_data_bidi_remote = cfg.stream_window;
  params.initial_max_stream_data_uni = cfg.stream_window;
  params.initial_max_data = cfg.connection_window;
  params.initial_max_streams_bidi = cfg.max_streams_bidi;
  params.initial_max_streams_uni = cfg.max_streams_uni;
  params.max_idle_timeout =
      static_cast<ngtcp2_duration>(std::chrono::duration_cast<std::chrono::nanoseconds>(cfg.idle_timeout).count());
  params.max_datagram_frame_size = 65535;
  // What our receive buffers hold: a peer never sends us more (RFC 9000 §18.2).
  params.max_udp_payload_size = receive_buffer_size(cfg) - recv_header;
}

Result<void> QuicConnection::init_client() {
  ngtcp2_cid dcid = random_cid(initial_dcid_len);
  ngtcp2_cid scid = ep_->fresh_cid(cid_len);
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  fill_settings(settings, params);
  ngtcp2_callbacks cb = callbacks(false);
  ngtcp2_path path = path_to(peer_);
  int rv = ngtcp2_conn_client_new(&conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params, nullptr,
                                  this);
  if (rv != 0) return make_error(Errc::internal, fmt::format("ngtcp2_conn_client_new: {}", ngtcp2_strerror(rv)));
  auto session = ep_->tls_->new_client_session(&conn_ref_, peer_host_);
  if (!session) return tl::unexpected(session.error());
  session_ = *session;
  // Before the first write or read, or the GnuTLS helper crashes (pitfall 2).
  ngtcp2_conn_set_tls_native_handle(conn_, session_);
  if (ep_->config_.keep_alive) {
    // A PING after five sixths of the idle timeout (25 s of 30): a lost one
    // is sent again after a PTO (milliseconds here, about a second on a
    // 300 ms path), so the last sixth still leaves room for several losses.
    // Any packet received restarts the wait, and SWIM visits each member
    // only every N probe periods, so most connections of an idle member live
    // on these PINGs: at 2/3 of the timeout, PINGs and their ACKs were most
    // of the 26-29-byte packets that made a third of an idle member's 85 B/s
    // at N = 16, and at half the timeout 4 of its ~10 wakeups/s at N = 32.
    auto ping_after = std::chrono::duration_cast<std::chrono::nanoseconds>(ep_->config_.idle_timeout * 5 / 6);
    ngtcp2_conn_set_keep_alive_timeout(conn_, static_cast<ngtcp2_duration>(ping_after.count()));
  }
  std::string key = cid_key(scid.data, scid.datalen);
  cids_.push_back(key);
  ep_->register_cid(key, this);
  return {};
}

Result<void> QuicConnection::init_server(const ngtcp2_pkt_hd& hd) {
  ngtcp2_cid scid = ep_->fresh_cid(cid_len);
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  fill_settings(settings, params);
  // Without original_dcid the client fails with ERR_TRANSPORT_PARAM (pitfall 3).
  params.original_dcid = hd.dcid;
  params.stateless_reset_token_present = 1;
  ep_->reset_token(params.stateless_reset_token, scid.data, scid.datalen);
  ngtcp2_callbacks cb = callbacks(true);
  ngtcp2_path path = path_to(peer_);
  int rv = ngtcp2_conn_server_new(&conn_, &hd.scid, &scid, &path, hd.version, &cb, &settings, &params, nullptr, this);
  if (rv != 0) return make_error(Errc::internal, fmt::format("ngtcp2_conn_server_new: {}", ngtcp2_strerror(rv)));
  auto session = ep_->tls_->new_server_session(&conn_ref_);
  if (!session) return tl::unexpected(session.error());
  session_ = *session;
  ngtcp2_conn_set_tls_native_handle(conn_, session_);
  // The client keeps addressing its first Initials to the DCID it chose.
  const std::array<const ngtcp2_cid*, 2> own{&scid, &hd.dcid};
  for (const ngtcp2_cid* cid : own) {
    std::string key = cid_key(cid->data, cid->datalen);
    cids_.push_back(key);
    ep_->register_cid(key, this);
  }
  return {};
}

std::shared_ptr<QuicStream> QuicConnection::add_stream(std::int64_t id, bool local) {
  std::shared_ptr<QuicStream> s(new QuicStream(weak_from_this(), id, local, peer_));
  s->events_ = events_;
  streams_[id] = s;
  if (!local) {
    // Never run user code inside an ngtcp2 callback (invariant 1).
    net::post(ep_->ex_, [weak = ep_->weak_from_this(), s] {
      auto ep = weak.lock();
      if (ep && !ep->closed_ && ep->on_stream_) {
        ep->on_stream_(s);
      } else {
        s->reset(0);  // nobody would read it: refuse rather than stall the peer
      }
    });
  }
  return s;
}

void QuicConnection::on_read(const UdpEndpoint& from, std::span<const std::byte> data) {
  auto self = shared_from_this();
  if (closed_) return;
  ngtcp2_path path = path_to(from);
  ngtcp2_pkt_info pi{};
  int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, reinterpret_cast<const std::uint8_t*>(data.data()), data.size(),
                                now_ts());
  if (rv != 0) {
    handle_error(rv);
    return;
  }
  maybe_recycle();
  if (closed_) return;
  ++rx_since_write_;
  if (hold_ack()) {
    arm_timer();
    return;
  }
  // Replies are written after the whole receive batch was processed.
  schedule_write();
}

bool QuicConnection::nothing_to_send() const {
  if (!datagrams_out_.empty()) return false;
  for (const auto& [id, s] : streams_) {
    if (!s->write_closed_ && (s->tx_sent_ < s->tx_end_ || (s->fin_requested_ && !s->fin_sent_))) return false;
  }
  return true;
}

bool QuicConnection::hold_ack() {
  if (ack_hold_ == ngtcp2_duration{0} || !handshake_confirmed_ || write_scheduled_ || rx_since_write_ >= 2 ||
      !nothing_to_send()) {
    return false;
  }
  if (ack_hold_until_ == 0) ack_hold_until_ = now_ts() + ack_hold_;
  return true;
}

void QuicConnection::on_timer() {
  auto self = shared_from_this();
  if (closed_) return;
  int rv = ngtcp2_conn_handle_expiry(conn_, now_ts());
  if (rv != 0) {
    handle_error(rv);
    return;
  }
  maybe_recycle();
  if (closed_) return;
  write();
}

void QuicConnection::schedule_write() {
  if (write_scheduled_ || closed_) return;
  write_scheduled_ = true;
  net::post(ep_->ex_, [weak = weak_from_this()] {
    if (auto c = weak.lock()) c->write();
  });
}

void QuicConnection::arm_timer() {
  if (closed_) return;
  ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(conn_);
  // While an ACK is held, ngtcp2's (imminent) ACK timer waits for the hold;
  // a loss timer due in that window waits too, by at most ack_hold.
  if (ack_hold_until_ != 0 && expiry < ack_hold_until_) expiry = ack_hold_until_;
  if (expiry == armed_expiry_) return;
  armed_expiry_ = expiry;
  if (expiry == UINT64_MAX) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(Clock::time_point(std::chrono::nanoseconds(expiry)));
  timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;  // re-armed or cancelled
    auto c = weak.lock();
    if (!c) return;
    c->armed_expiry_ = UINT64_MAX;
    c->on_timer();
  });
}

void QuicConnection::write() {
  auto self = shared_from_this();
  write_scheduled_ = false;
  if (closed_) return;
  const ngtcp2_tstamp ts = now_ts();
  // An ACK may be owed for what we read since the last write.
  const bool ack_owed = rx_since_write_ > 0 || ack_hold_until_ != 0;
  const ngtcp2_tstamp hold_deadline = ack_hold_until_ != 0 ? ack_hold_until_ : ts + ack_hold_;
  ack_hold_until_ = 0;
  rx_since_write_ = 0;
  credit_since_write_ = 0;
  const std::size_t pkt_max = ngtcp2_conn_get_path_max_tx_udp_payload_size(conn_);
  // The endpoint's buffer: write() is only ever entered from the reactor
  // (timer, posted schedule_write, connect), never from inside another
  // write(), and the ring copies what it is given.
  std::vector<std::uint8_t>& txbuf = ep_->txbuf_;
  if (txbuf.size() < pkt_max * gso_batch_max) txbuf.resize(pkt_max * gso_batch_max);
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  std::size_t batch_len = 0;
  std::size_t seg = 0;
  std::size_t npkts = 0;
  auto flush = [&] {
    if (batch_len > 0) {
      ep_->ring_->send(peer_, std::span<const std::byte>(reinterpret_cast<const std::byte*>(txbuf.data()), batch_len),
                       seg);
    }
    batch_len = 0;
    seg = 0;
    npkts = 0;
  };

  std::vector<std::shared_ptr<QuicStream>> ready;
  for (auto& [id, s] : streams_) {
    if (!s->write_closed_ && (s->tx_sent_ < s->tx_end_ || (s->fin_requested_ && !s->fin_sent_))) ready.push_back(s);
  }
  std::size_t next = 0;
  int produced = 0;
  while (produced < packets_per_write_max) {
    std::uint8_t* dest = txbuf.data() + batch_len;
    ngtcp2_ssize nwrite = 0;
    while (next < ready.size()) {
      QuicStream& s = *ready[next];
      if (!s.write_closed_ && (s.tx_sent_ < s.tx_end_ || (s.fin_requested_ && !s.fin_sent_))) break;
      ++next;
    }
    if (!datagrams_out_.empty()) {
      auto& d = datagrams_out_.front();
      ngtcp2_vec v{reinterpret_cast<std::uint8_t*>(d.data()), d.size()};
      int accepted = 0;
      nwrite = ngtcp2_conn_writev_datagram(conn_, &ps.path, &pi, dest, pkt_max, &accepted,
                                           NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v, 1, ts);
      if (accepted != 0) {
        datagrams_out_.pop_front();
        ep_->datagrams_sent_.inc();
      }
      if (nwrite < 0) {
        QuicDecision dec = translate_ngtcp2_datagram(static_cast<int>(nwrite));
        if (dec.action == QuicAction::write_more) continue;
        if (dec.action == QuicAction::drop_datagram) {
          if (!datagrams_out_.empty() && accepted == 0) datagrams_out_.pop_front();
          ep_->datagrams_dropped_.inc();
          continue;
        }
        handle_error(static_cast<int>(nwrite));
        return;
      }
    } else if (next < ready.size()) {
      QuicStream& s = *ready[next];
      std::array<ngtcp2_vec, 16> vecs{};
      std::size_t nvec = 0;
      std::uint64_t covered = 0;
      for (auto& chunk : s.tx_) {
        std::uint64_t end = chunk.offset + chunk.data.size();
        if (end <= s.tx_sent_) continue;
        std::size_t start = s.tx_sent_ > chunk.offset ? static_cast<std::size_t>(s.tx_sent_ - chunk.offset) : 0;
        vecs[nvec].base = reinterpret_cast<std::uint8_t*>(chunk.data.data()) + start;
        vecs[nvec].len = chunk.data.size() - start;
        covered += vecs[nvec].len;
        if (++nvec == vecs.size()) break;
      }
      std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
      const bool with_fin = s.fin_requested_ && covered == s.tx_end_ - s.tx_sent_;
      if (with_fin) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
      ngtcp2_ssize ndatalen = -1;
      nwrite = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, dest, pkt_max, &ndatalen, flags, s.id_, vecs.data(),
                                         nvec, ts);
      if (ndatalen >= 0) {
        s.tx_sent_ += static_cast<std::uint64_t>(ndatalen);
        if (with_fin && s.tx_sent_ == s.tx_end_) s.fin_sent_ = true;
      }
      if (nwrite < 0) {
        QuicDecision dec = translate_ngtcp2(static_cast<int>(nwrite));
        if (dec.action == QuicAction::write_more) continue;
        if (dec.action == QuicAction::stream_blocked) {
          ++next;  // flow control: this stream waits for credit
          continue;
        }
        if (dec.action == QuicAction::stream_gone) {
          s.write_closed_ = true;
          s.tx_.clear();
          ++next;
          continue;
        }
        handle_error(static_cast<int>(nwrite));
        return;
      }
    } else {
      nwrite = ngtcp2_conn_write_pkt(conn_, &ps.path, &pi, dest, pkt_max, ts);
      if (nwrite < 0) {
        handle_error(static_cast<int>(nwrite));
        return;
      }
    }
    if (nwrite == 0) break;  // congestion-limited, or nothing left
    ++produced;
    const auto n = static_cast<std::size_t>(nwrite);
    // GSO batches equal-size packets; a shorter packet ends a batch.
    if (npkts == 0) {
      seg = n;
      batch_len = n;
      npkts = 1;
    } else if (n == seg) {
      batch_len += n;
      ++npkts;
    } else if (n < seg) {
      batch_len += n;
      ++npkts;
      flush();
      continue;
    } else {
      const std::size_t prev = batch_len;
      const std::size_t prev_seg = seg;
      ep_->ring_->send(peer_, std::span<const std::byte>(reinterpret_cast<const std::byte*>(txbuf.data()), prev),
                       prev_seg);
      std::memmove(txbuf.data(), txbuf.data() + prev, n);
      batch_len = n;
      seg = n;
      npkts = 1;
    }
    if (npkts >= gso_batch_max) flush();
  }
  flush();
  // Pacing before the first RTT sample uses the 333 ms initial RTT and would
  // hold the client's Finished back by ~25 ms; the handshake is small and
  // bounded by the congestion window and the amplification limit anyway.
  if (ngtcp2_conn_get_handshake_completed(conn_) != 0) ngtcp2_conn_update_pkt_tx_time(conn_, ts);
  if (produced >= packets_per_write_max) {
    schedule_write();  // yield to the reactor, then go on
  } else if (ack_owed && ack_hold_ != ngtcp2_duration{0} && handshake_confirmed_ && hold_deadline > ts &&
             nothing_to_send() && ngtcp2_conn_get_expiry(conn_) < hold_deadline) {
    // ngtcp2 leaves an ACK out of a packet until smoothed_rtt/8 has passed,
    // so a quick reply goes without it and the ACK would follow alone
    // moments later: keep holding it for the next packet instead. (An
    // expiry this close with nothing to send is the ACK timer; the loss
    // timer is at least the peer's 25 ms max_ack_delay away.)
    ack_hold_until_ = hold_deadline;
  }
  arm_timer();
}

Error QuicConnection::describe_close(int rv, Errc code) {
  ngtcp2_connection_close_error cc{};
  ngtcp2_conn_get_connection_close_error(conn_, &cc);
  if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
    std::string reason(reinterpret_cast<const char*>(cc.reason), cc.reasonlen);
    // A non-zero code before the handshake finished means the peer refused us.
    if (cc.error_code != 0 && !handshake_confirmed_) code = Errc::protocol;
    return Error{code, fmt::format("{} closed the connection: {} error 0x{:x}{}{}", to_string(peer_),
                                   cc.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION ? "application"
                                                                                                    : "transport",
                                   cc.error_code, reason.empty() ? "" : ": ", reason)};
  }
  return Error{code, fmt::format("connection to {}: {}", to_string(peer_), ngtcp2_strerror(rv))};
}

void QuicConnection::send_close(const ngtcp2_connection_close_error& ccerr) {
  if (ngtcp2_conn_is_in_closing_period(conn_) || ngtcp2_conn_is_in_draining_period(conn_)) return;
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  std::array<std::uint8_t, 1500> buf{};
  ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, buf.data(), buf.size(), &ccerr, now_ts());
  if (n > 0) {
    ep_->ring_->send(peer_,
                     std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf.data()), static_cast<std::size_t>(n)));
  }
}

void QuicConnection::handle_error(int rv) {
  auto self = shared_from_this();
  QuicDecision d = translate_ngtcp2(rv);
  switch (d.action) {
    case QuicAction::ok:
    case QuicAction::drop_packet:
    case QuicAction::write_more:
    case QuicAction::stream_blocked:
    case QuicAction::stream_gone:
    case QuicAction::drop_datagram:
      return;
    case QuicAction::close_silent:
      finalize(describe_close(rv, d.code));
      return;
    case QuicAction::close_tls: {
      ngtcp2_connection_close_error cc{};
      ngtcp2_connection_close_error_set_transport_error_tls_alert(&cc, ngtcp2_conn_get_tls_alert(conn_), nullptr, 0);
      send_close(cc);
      Error e{Errc::protocol, fmt::format("TLS handshake {} {} failed (alert {})", server_ ? "from" : "with",
                                          to_string(peer_), ngtcp2_conn_get_tls_alert(conn_))};
      ep_->tls_failures_.inc();
      // Operators need to see refused peers (wrong CA, missing client
      // certificate), but a scanner must not flood the log.
      if (ep_->tls_log_limit_.allow(Clock::now())) {
        core::log::get("quic")->warn("{} ({} similar suppressed)", e.message, ep_->tls_log_limit_.take_suppressed());
      }
      finalize(std::move(e));
      return;
    }
    case QuicAction::close_error: {
      ngtcp2_connection_close_error cc{};
      ngtcp2_connection_close_error_set_transport_error_liberr(&cc, rv, nullptr, 0);
      send_close(cc);
      finalize(describe_close(rv, d.code));
      return;
    }
  }
}

void QuicConnection::close(std::uint64_t app_error) {
  auto self = shared_from_this();
  if (closed_) return;
  ngtcp2_connection_close_error cc{};
  ngtcp2_connection_close_error_set_application_error(&cc, app_error, nullptr, 0);
  send_close(cc);
  finalize(Error{Errc::io, fmt::format("connection to {} closed locally", to_string(peer_))});
}

void QuicConnection::finalize(Error error) {
  if (closed_) return;
  closed_ = true;
  close_error_ = std::move(error);
  core::log::get("quic")->debug("{} connection with {} closed: {}", server_ ? "server" : "client", to_string(peer_),
                                close_error_.message);
  timer_.cancel();
  for (auto& [id, s] : streams_) s->closed_ = true;
  streams_.clear();
  datagrams_out_.clear();
  events_->notify();
  ep_->forget(this);  // may drop the endpoint's reference; callers hold |self|
}

void QuicConnection::maybe_recycle() {
  if (closed_) return;
  // ngtcp2 < 0.14 keeps every finished remote uni stream until the
  // connection ends. The client retires its connection after
  // uni_streams_per_connection streams (see open_stream) and closes it once
  // idle of streams; the server enforces twice that as a safety net.
  if (retiring_ && streams_.empty()) {
    core::log::get("quic")->debug("retiring connection to {} after {} uni streams", to_string(peer_), uni_opened_);
    close(0);
    return;
  }
  if (server_ && remote_uni_leaked_ >= 2 * uni_per_connection_ && streams_.empty()) {
    core::log::get("quic")->debug("recycling connection from {} after {} uni streams", to_string(peer_),
                                  remote_uni_leaked_);
    close(0);
  }
}

void QuicConnection::extend_credit(std::int64_t stream_id, std::size_t n) {
  if (closed_ || n == 0) return;
  // Fails harmlessly when the stream is already closed; the connection-level
  // credit is what matters then.
  ngtcp2_conn_extend_max_stream_offset(conn_, stream_id, n);
  ngtcp2_conn_extend_max_offset(conn_, n);
  // While an ACK is held, small amounts of credit (a broadcast read to its
  // end) wait for the held write instead of sending that ACK on its own;
  // a quarter window's worth goes at once so bulk senders never stall.
  credit_since_write_ += n;
  if (ack_hold_until_ != 0 && credit_since_write_ < stream_credit_urgent_) return;
  schedule_write();
}

// ---------------------------------------------------------------------------
// QuicStream

QuicStream::QuicStream(std::weak_ptr<QuicConnection> conn, std::int64_t id, bool local, UdpEndpoint peer)
    : conn_(std::move(conn)), id_(id), local_(local), peer_(std::move(peer)) {}

net::awaitable<Result<void>> QuicStream::write(std::vector<std::byte> data, bool fin) {
  auto self = shared_from_this();
  auto conn = conn_.lock();
  if (!conn || conn->closed_ || closed_) {
    co_return make_error(Errc::io, conn ? conn->close_error_.message : "connection closed");
  }
  if (unidirectional() && !local_) co_return make_error(Errc::invalid_argument, "stream is receive-only");
  if (fin_requested_) co_return make_error(Errc::invalid_argument, "stream already finished");
  if (write_closed_) co_return make_error(Errc::io, "peer stopped the stream");
  if (!data.empty()) {
    const std::size_t n = data.size();
    Chunk chunk{tx_end_, std::move(data)};
    tx_.push_back(std::move(chunk));
    tx_end_ += n;
  }
  if (fin) fin_requested_ = true;
  conn->schedule_write();
  const auto idle = conn->idle_timeout_;
  const std::size_t high = conn->high_water_;
  conn.reset();
  auto deadline = Clock::now() + idle;
  for (;;) {
    if (tx_end_ - tx_acked_ <= high) co_return Result<void>{};
    if (write_closed_) co_return make_error(Errc::io, "peer stopped the stream");
    auto c = conn_.lock();
    if (!c || c->closed_) co_return make_error(Errc::io, c ? c->close_error_.message : "connection closed");
    c.reset();
    if (Clock::now() >= deadline) co_return make_error(Errc::timeout, "stream write made no progress");
    const std::uint64_t before = tx_acked_;
    co_await wait_event(events_, deadline);
    if (tx_acked_ > before) deadline = Clock::now() + idle;
  }
}

net::awaitable<Result<void>> QuicStream::finish() {
  auto self = shared_from_this();
  std::vector<std::byte> nothing;
  co_return co_await write(std::move(nothing), true);
}

net::awaitable<Result<void>> QuicStream::flush(std::chrono::milliseconds timeout) {
  auto self = shared_from_this();
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (tx_acked_ >= tx_end_ && (!fin_requested_ || fin_sent_)) co_return Result<void>{};
    if (write_closed_) co_return make_error(Errc::io, "peer stopped the stream");
    auto c = conn_.lock();
    if (!c || c->closed_) co_return make_error(Errc::io, c ? c->close_error_.message : "connection closed");
    c.reset();
    if (Clock::now() >= deadline) co_return make_error(Errc::timeout, "stream data not acknowledged in time");
    co_await wait_event(events_, deadline);
  }
}

net::awaitable<Result<std::vector<std::byte>>> QuicStream::read_some(std::chrono::milliseconds timeout) {
  auto self = shared_from_this();
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!rx_.empty()) {
      std::vector<std::byte> chunk = std::move(rx_.front());
      rx_.pop_front();
      // Credit goes back only as the reader consumes: backpressure.
      if (auto c = conn_.lock()) c->extend_credit(id_, chunk.size());
      co_return chunk;
    }
    if (fin_received_) {
      std::vector<std::byte> eof;
      co_return eof;
    }
    if (reset_received_) co_return make_error(Errc::io, "stream reset by peer");
    auto c = conn_.lock();
    if (!c || c->closed_) co_return make_error(Errc::io, c ? c->close_error_.message : "connection closed");
    c.reset();
    if (Clock::now() >= deadline) co_return make_error(Errc::timeout, "no stream data in time");
    co_await wait_event(events_, deadline);
  }
}

net::awaitable<Result<std::vector<std::byte>>> QuicStream::read_all(std::size_t limit,
                                                                    std::chrono::milliseconds timeout) {
  auto self = shared_from_this();
  std::vector<std::byte> all;
  for (;;) {
    auto chunk = co_await read_some(timeout);
    if (!chunk) co_return tl::unexpected(chunk.error());
    if (chunk->empty()) co_return all;
    if (all.size() + chunk->size() > limit) {
      reset(1);
      co_return make_error(Errc::invalid_argument, fmt::format("stream exceeds {} bytes", limit));
    }
    all.insert(all.end(), chunk->begin(), chunk->end());
  }
}

void QuicStream::reset(std::uint64_t app_error) {
  write_closed_ = true;
  tx_.clear();
  auto c = conn_.lock();
  if (!c || c->closed_ || closed_) return;
  ngtcp2_conn_shutdown_stream(c->conn_, id_, app_error);
  c->schedule_write();
}

// ---------------------------------------------------------------------------
// QuicEndpoint

Result<QuicConfig> quic_config_from(const core::GossipConfig& gossip) {
  QuicConfig c;
  c.bind_addr = gossip.bind_addr;
  c.idle_timeout = std::chrono::seconds(std::max(1, gossip.idle_timeout_secs));
  c.disable_gso = gossip.disable_gso;
  if (gossip.max_mtu) {
    if (*gossip.max_mtu < 1200) return make_error(Errc::invalid_argument, "gossip.max_mtu must be at least 1200");
    c.max_mtu = gossip.max_mtu;
  }
  // A stateless-reset key that survives restarts (see QuicConfig). With TLS
  // it derives from the node's private key; in plaintext mode, which
  // authenticates nothing anyway, from the address.
  auto derive_key = [](const std::string& material) {
    std::string digest(32, '\0');
    const std::string labelled = "patina stateless reset v1|" + material;
    gnutls_hash_fast(GNUTLS_DIG_SHA256, labelled.data(), labelled.size(), digest.data());
    return digest;
  };
  if (gossip.plaintext) {
    c.tls.plaintext = true;
    c.stateless_reset_key = derive_key(gossip.bind_addr);
  } else if (gossip.tls) {
    std::ifstream key_file(gossip.tls->key_file, std::ios::binary);
    std::ostringstream key_bytes;
    key_bytes << key_file.rdbuf();
    if (key_file) c.stateless_reset_key = derive_key(key_bytes.str());
    c.tls.plaintext = false;
    c.tls.cert_file = gossip.tls->cert_file;
    c.tls.key_file = gossip.tls->key_file;
    c.tls.ca_file = gossip.tls->ca_file;
    c.tls.insecure = gossip.tls->insecure;
    if (gossip.tls->client) {
      c.tls.client_cert_file = gossip.tls->client->cert_file;
      c.tls.client_key_file = gossip.tls->client->key_file;
    }
  } else {
    return make_error(Errc::invalid_argument, "gossip needs plaintext = true or a [gossip.tls] section");
  }
  return c;
}

QuicEndpoint::QuicEndpoint(net::any_io_executor ex, QuicConfig config, core::Metrics& m)
    : ex_(std::move(ex)),
      config_(std::move(config)),
      metrics_(m),
      connections_(m.gauge("patina_quic_connections", "Open QUIC connections", config_.metric_labels)),
      handshakes_client_(m.counter("patina_quic_handshakes_client_total", "Handshakes completed as client",
                                   config_.metric_labels)),
      handshakes_server_(m.counter("patina_quic_handshakes_server_total", "Handshakes completed as server",
                                   config_.metric_labels)),
      connect_failures_(m.counter("patina_quic_connect_failures_total", "Dials that failed or timed out",
                                  config_.metric_labels)),
      datagrams_sent_(m.counter("patina_quic_datagrams_sent_total", "DATAGRAM frames sent", config_.metric_labels)),
      datagrams_received_(m.counter("patina_quic_datagrams_received_total", "DATAGRAM frames received",
                                    config_.metric_labels)),
      datagrams_dropped_(m.counter("patina_quic_datagrams_dropped_total",
                                   "Datagrams not sent (queue full, too large, peer refuses)", config_.metric_labels)),
      streams_opened_(m.counter("patina_quic_streams_opened_total", "Streams opened by us", config_.metric_labels)),
      tls_failures_(m.counter("patina_quic_tls_failures_total", "TLS handshakes that failed on our side",
                              config_.metric_labels)),
      handshake_seconds_(m.histogram("patina_quic_handshake_seconds", "Client handshake duration",
                                     config_.metric_labels)) {}

Result<std::shared_ptr<QuicEndpoint>> QuicEndpoint::open(net::any_io_executor ex, QuicConfig config,
                                                         core::Metrics& metrics) {
  if (config.max_mtu && *config.max_mtu < 1200) return make_error(Errc::invalid_argument, "max_mtu must be >= 1200");
  std::shared_ptr<QuicEndpoint> ep(new QuicEndpoint(ex, std::move(config), metrics));
  auto tls = TlsContext::create(ep->config_.tls);
  if (!tls) return tl::unexpected(tls.error());
  ep->tls_ = std::move(*tls);
  const auto& t = ep->config_.tls;
  ep->reuse_inbound_ = ep->config_.reuse_inbound && (t.plaintext || t.insecure || t.client_cert_file.has_value());
  ep->reset_key_ = ep->config_.stateless_reset_key;
  if (ep->reset_key_.empty()) {
    ep->reset_key_.resize(32);
    random_bytes(reinterpret_cast<std::uint8_t*>(ep->reset_key_.data()), ep->reset_key_.size());
  }
  UdpRingOptions ropts;
  ropts.bind_addr = ep->config_.bind_addr;
  ropts.disable_gso = ep->config_.disable_gso;
  ropts.buffer_size = receive_buffer_size(ep->config_);
  ropts.metric_labels = ep->config_.metric_labels;
  auto ring = UdpRing::open(ex, ropts, metrics);
  if (!ring) return tl::unexpected(ring.error());
  ep->ring_ = std::move(*ring);
  return ep;
}

QuicEndpoint::~QuicEndpoint() { close(); }

void QuicEndpoint::start() {
  ring_->start([weak = weak_from_this()](const UdpEndpoint& from, std::span<const std::byte> data) {
    if (auto ep = weak.lock()) ep->handle_datagram(from, data);
  });
}

void QuicEndpoint::close(bool notify_peers) {
  if (closed_) return;
  closed_ = true;
  std::vector<std::shared_ptr<QuicConnection>> all;
  for (auto& [p, c] : conns_) all.push_back(c);
  for (auto& c : all) {
    if (notify_peers) {
      c->close(0);
    } else {
      c->finalize(Error{Errc::shutting_down, "endpoint closed"});
    }
  }
  conns_.clear();
  clients_.clear();
  inbound_.clear();
  cids_.clear();
  connections_.set(0);
  if (ring_) ring_->close();
}

void QuicEndpoint::disconnect(const UdpEndpoint& peer) {
  for (auto* map : {&clients_, &inbound_}) {
    auto it = map->find(peer);
    if (it == map->end()) continue;
    std::shared_ptr<QuicConnection> c = it->second;  // close() removes it from the map
    c->close(0);
  }
}

QuicConnection* QuicEndpoint::ready_connection(const UdpEndpoint& peer) const {
  if (auto it = clients_.find(peer); it != clients_.end()) {
    if (!it->second->closed_ && it->second->handshake_confirmed_) return it->second.get();
    return nullptr;  // ours is still dialing: wait for it rather than mix
  }
  if (auto it = inbound_.find(peer); it != inbound_.end() && !it->second->closed_ && !it->second->retiring_) {
    return it->second.get();
  }
  return nullptr;
}

UdpEndpoint QuicEndpoint::local_endpoint() const { return ring_->local_endpoint(); }

std::size_t QuicEndpoint::max_datagram_size() const {
  return static_cast<std::size_t>(config_.max_mtu.value_or(1200)) - datagram_overhead;
}

bool QuicEndpoint::has_client_connection(const UdpEndpoint& peer) const { return ready_connection(peer) != nullptr; }

std::optional<std::chrono::microseconds> QuicEndpoint::rtt(const UdpEndpoint& peer) const {
  QuicConnection* c = ready_connection(peer);
  if (c == nullptr) return std::nullopt;
  ngtcp2_conn_stat stat{};
  ngtcp2_conn_get_conn_stat(c->conn_, &stat);
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::nanoseconds(stat.smoothed_rtt));
}

void QuicEndpoint::register_cid(const std::string& cid, QuicConnection* conn) { cids_[cid] = conn; }

ngtcp2_cid QuicEndpoint::fresh_cid(std::size_t len) const {
  ngtcp2_cid cid = random_cid(len);
  // Bounded: with a few hundred IDs in 2^32, a second draw is already rare.
  for (int i = 0; i < 16 && cids_.count(cid_key(cid.data, cid.datalen)) != 0; ++i) cid = random_cid(len);
  return cid;
}

void QuicEndpoint::unregister_cid(const std::string& cid) { cids_.erase(cid); }

void QuicEndpoint::forget(QuicConnection* conn) {
  for (const auto& cid : conn->cids_) {
    auto it = cids_.find(cid);
    if (it != cids_.end() && it->second == conn) cids_.erase(it);
  }
  auto& map = conn->server_ ? inbound_ : clients_;
  if (auto it = map.find(conn->peer_); it != map.end() && it->second.get() == conn) map.erase(it);
  conns_.erase(conn);
  connections_.set(static_cast<double>(conns_.size()));
}

void QuicEndpoint::bad_packet(const char* reason, const UdpEndpoint& from) {
  core::Labels labels = config_.metric_labels;
  labels.emplace_back("reason", reason);
  metrics_.counter("patina_quic_bad_packets_total", "Packets dropped before reaching a connection", labels).inc();
  // Rate-limited: a flood of garbage must not become a flood of logs.
  // Stray packets of a connection we just closed are routine: debug only.
  const bool routine = std::strcmp(reason, "unknown_connection") == 0;
  if (routine && !core::log::get("quic")->should_log(spdlog::level::debug)) return;
  if (!bad_log_limit_.allow(Clock::now())) return;
  core::log::get("quic")->log(routine ? spdlog::level::debug : spdlog::level::warn,
                              "dropped a QUIC packet from {}: {} ({} similar suppressed)", to_string(from), reason,
                              bad_log_limit_.take_suppressed());
}

void QuicEndpoint::send_version_negotiation(const UdpEndpoint& to, const ngtcp2_version_cid& vc,
                                            std::size_t datagram_size) {
  // RFC 9000 §6.1: answer only datagrams big enough to be a client's first
  // flight (no amplification), and at most a few per second, since the
  // source address of garbage may be forged.
  constexpr std::size_t initial_size_min = 1200;
  if (datagram_size < initial_size_min) return;
  const auto now = Clock::now();
  if (now - vn_window_start_ >= std::chrono::seconds(1)) {
    vn_window_start_ = now;
    vn_sent_in_window_ = 0;
  }
  if (++vn_sent_in_window_ > 10) return;
  std::array<std::uint8_t, 256> buf{};
  std::uint8_t unused = 0;
  random_bytes(&unused, 1);
  const std::uint32_t supported = NGTCP2_PROTO_VER_V1;
  ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(buf.data(), buf.size(), unused, vc.scid, vc.scidlen, vc.dcid,
                                                        vc.dcidlen, &supported, 1);
  if (n > 0) {
    ring_->send(to, std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf.data()), static_cast<std::size_t>(n)));
  }
}

void QuicEndpoint::reset_token(std::uint8_t* token, const std::uint8_t* cid, std::size_t cidlen) const {
  ngtcp2_cid c{};
  c.datalen = std::min<std::size_t>(cidlen, NGTCP2_MAX_CIDLEN);
  std::memcpy(c.data, cid, c.datalen);
  if (ngtcp2_crypto_generate_stateless_reset_token(token, reinterpret_cast<const std::uint8_t*>(reset_key_.data()),
                                                   reset_key_.size(), &c) != 0) {
    random_bytes(token, NGTCP2_STATELESS_RESET_TOKENLEN);  // a token nobody can match
  }
}

void QuicEndpoint::send_stateless_reset(const UdpEndpoint& to, const ngtcp2_version_cid& vc,
                                        std::size_t datagram_size) {
  // RFC 9000 §10.3: smaller than the packet that triggered it, and only
  // for packets larger than any reset we send, so two endpoints that both
  // lost state never bounce resets; rate-limited since sources can be forged.
  constexpr std::size_t reset_size = 43;
  constexpr std::size_t trigger_size_min = 65;
  if (datagram_size < trigger_size_min || vc.dcidlen != cid_len) return;
  const auto now = Clock::now();
  if (now - reset_window_start_ >= std::chrono::seconds(1)) {
    reset_window_start_ = now;
    resets_in_window_ = 0;
  }
  if (++resets_in_window_ > 100) return;
  std::array<std::uint8_t, NGTCP2_STATELESS_RESET_TOKENLEN> token{};
  reset_token(token.data(), vc.dcid, vc.dcidlen);
  std::array<std::uint8_t, 64> rand{};
  const std::size_t randlen = reset_size - NGTCP2_STATELESS_RESET_TOKENLEN;
  random_bytes(rand.data(), randlen);
  std::array<std::uint8_t, 128> buf{};
  ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf.data(), buf.size(), token.data(), rand.data(), randlen);
  if (n > 0) {
    ring_->send(to, std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf.data()), static_cast<std::size_t>(n)));
  }
}

void QuicEndpoint::handle_datagram(const UdpEndpoint& from, std::span<const std::byte> data) {
  if (closed_) return;
  if (data.empty()) {  // ngtcp2 asserts on empty input
    bad_packet("malformed", from);
    return;
  }
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(data.data());
  ngtcp2_version_cid vc{};
  int rv = ngtcp2_pkt_decode_version_cid(&vc, bytes, data.size(), cid_len);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    bad_packet("unknown_version", from);
    send_version_negotiation(from, vc, data.size());
    return;
  }
  if (rv != 0) {
    bad_packet("malformed", from);
    return;
  }
  if (auto it = cids_.find(cid_key(vc.dcid, vc.dcidlen)); it != cids_.end()) {
    it->second->on_read(from, data);
    return;
  }
  if (vc.version == 0) {
    bad_packet("unknown_connection", from);
    // Possibly a Stateless Reset from a restarted peer answering what we
    // sent on the connection it had dialed to us. That connection's reset
    // token was never given to us (the client's first connection ID has
    // none), so we cannot check it: treat it as a hint and dial our own
    // connection from now on, which validates resets. Harmless if forged.
    inbound_.erase(from);
    // A Stateless Reset looks like a short-header packet with a random
    // DCID: let our client connection to that address check its token.
    if (auto it = clients_.find(from); it != clients_.end() && !it->second->closed_) {
      std::shared_ptr<QuicConnection> c = it->second;
      c->on_read(from, data);
    }
    send_stateless_reset(from, vc, data.size());
    return;
  }
  ngtcp2_pkt_hd hd{};
  if (ngtcp2_accept(&hd, bytes, data.size()) != 0) {
    bad_packet("not_initial", from);
    return;
  }
  if (conns_.size() >= config_.connections_max) {
    bad_packet("too_many_connections", from);
    return;
  }
  auto conn = std::make_shared<QuicConnection>(this, true, from);
  if (auto r = conn->init_server(hd); !r) {
    for (const auto& cid : conn->cids_) cids_.erase(cid);
    core::log::get("quic")->warn("cannot accept a connection from {}: {}", to_string(from), r.error());
    bad_packet("accept_failed", from);
    return;
  }
  conns_[conn.get()] = conn;
  connections_.set(static_cast<double>(conns_.size()));
  conn->on_read(from, data);
}

net::awaitable<Result<std::shared_ptr<QuicConnection>>> QuicEndpoint::client_connection(UdpEndpoint peer) {
  auto self = shared_from_this();
  if (closed_) co_return make_error(Errc::shutting_down, "QUIC endpoint closed");
  std::shared_ptr<QuicConnection> conn;
  if (auto it = clients_.find(peer); it != clients_.end() && !it->second->closed_) {
    conn = it->second;
  } else if (auto in = inbound_.find(peer); in != inbound_.end() && !in->second->closed_ && !in->second->retiring_) {
    co_return in->second;  // handshaken when it was registered
  } else {
    if (conns_.size() >= config_.connections_max) co_return make_error(Errc::busy, "too many QUIC connections");
    conn = std::make_shared<QuicConnection>(this, false, peer);
    if (auto r = conn->init_client(); !r) {
      for (const auto& cid : conn->cids_) cids_.erase(cid);
      connect_failures_.inc();
      co_return tl::unexpected(r.error());
    }
    conns_[conn.get()] = conn;
    clients_[peer] = conn;
    connections_.set(static_cast<double>(conns_.size()));
    conn->write();
  }
  const auto deadline = conn->started_ + config_.connect_timeout;
  auto events = conn->events_;
  while (!conn->handshake_confirmed_) {
    if (conn->closed_) {
      connect_failures_.inc();
      co_return tl::unexpected(conn->close_error_);
    }
    if (Clock::now() >= deadline) {
      conn->close(0);
      connect_failures_.inc();
      co_return make_error(Errc::timeout, fmt::format("QUIC handshake with {} timed out", to_string(peer)));
    }
    co_await wait_event(events, deadline);
  }
  if (conn->closed_) co_return tl::unexpected(conn->close_error_);
  co_return conn;
}

net::awaitable<Result<void>> QuicEndpoint::connect(UdpEndpoint peer) {
  auto self = shared_from_this();
  auto conn = co_await client_connection(peer);
  if (!conn) co_return tl::unexpected(conn.error());
  co_return Result<void>{};
}

net::awaitable<Result<void>> QuicEndpoint::send_datagram(UdpEndpoint peer, std::vector<std::byte> payload) {
  auto self = shared_from_this();
  if (payload.size() > max_datagram_size()) {
    datagrams_dropped_.inc();
    co_return make_error(Errc::invalid_argument,
                         fmt::format("datagram of {} bytes exceeds {}", payload.size(), max_datagram_size()));
  }
  auto conn = co_await client_connection(peer);
  if (!conn) co_return tl::unexpected(conn.error());
  auto& c = **conn;
  if (c.datagrams_out_.size() >= datagram_queue_max) {
    datagrams_dropped_.inc();
    co_return make_error(Errc::busy, "datagram queue full");
  }
  c.datagrams_out_.push_back(std::move(payload));
  c.schedule_write();
  co_return Result<void>{};
}

bool QuicEndpoint::try_send_datagram(const UdpEndpoint& peer, std::span<const std::byte> payload) {
  if (closed_ || payload.size() > max_datagram_size()) return false;
  QuicConnection* ready = ready_connection(peer);
  if (ready == nullptr) return false;
  QuicConnection& c = *ready;
  if (c.datagrams_out_.size() >= datagram_queue_max) {
    datagrams_dropped_.inc();
    return false;
  }
  c.datagrams_out_.emplace_back(payload.begin(), payload.end());
  c.schedule_write();  // posted: never re-enters ngtcp2 from a callback
  return true;
}

net::awaitable<Result<std::shared_ptr<QuicStream>>> QuicEndpoint::open_stream(UdpEndpoint peer, bool bidi) {
  auto self = shared_from_this();
  auto conn = co_await client_connection(peer);
  if (!conn) co_return tl::unexpected(conn.error());
  std::shared_ptr<QuicConnection> c = *conn;
  const auto deadline = Clock::now() + config_.connect_timeout;
  for (;;) {
    if (c->closed_) co_return tl::unexpected(c->close_error_);
    std::int64_t id = -1;
    int rv = bidi ? ngtcp2_conn_open_bidi_stream(c->conn_, &id, nullptr)
                  : ngtcp2_conn_open_uni_stream(c->conn_, &id, nullptr);
    if (rv == 0) {
      streams_opened_.inc();
      // Streams either side opened count: ngtcp2 0.12 keeps the peer's
      // finished ones on both ends, and a shared connection has both.
      if (!bidi && ++c->uni_opened_ + c->remote_uni_leaked_ >= config_.uni_streams_per_connection) {
        // Retire: later calls dial a fresh connection; this one closes
        // when its streams are done (QuicConnection::maybe_recycle).
        c->retiring_ = true;
        auto& map = c->server_ ? inbound_ : clients_;
        if (auto it = map.find(peer); it != map.end() && it->second == c) map.erase(it);
      }
      co_return c->add_stream(id, true);
    }
    QuicDecision d = translate_ngtcp2(rv);
    if (d.action != QuicAction::stream_blocked) {
      co_return make_error(d.code, fmt::format("cannot open a stream to {}: {}", to_string(peer), ngtcp2_strerror(rv)));
    }
    // The peer's stream limit is reached: wait for MAX_STREAMS.
    if (Clock::now() >= deadline) co_return make_error(Errc::busy, "peer stream limit reached");
    co_await wait_event(c->events_, deadline);
  }
}

net::awaitable<Result<std::shared_ptr<QuicStream>>> QuicEndpoint::open_uni(UdpEndpoint peer) {
  return open_stream(std::move(peer), false);
}

net::awaitable<Result<std::shared_ptr<QuicStream>>> QuicEndpoint::open_bi(UdpEndpoint peer) {
  return open_stream(std::move(peer), true);
}

net::awaitable<Result<void>> QuicEndpoint::send_uni(UdpEndpoint peer, std::vector<std::byte> payload) {
  auto self = shared_from_this();
  auto stream = co_await open_uni(peer);
  if (!stream) co_return tl::unexpected(stream.error());
  std::shared_ptr<QuicStream> s = *stream;
  auto w = co_await s->write(std::move(payload), true);
  if (!w) co_return w;
  co_return co_await s->flush(config_.idle_timeout);
}

net::awaitable<Result<std::vector<std::byte>>> QuicEndpoint::request(UdpEndpoint peer, std::vector<std::byte> request,
                                                                     std::size_t limit) {
  auto self = shared_from_this();
  auto stream = co_await open_bi(peer);
  if (!stream) co_return tl::unexpected(stream.error());
  std::shared_ptr<QuicStream> s = *stream;
  auto w = co_await s->write(std::move(request), true);
  if (!w) co_return tl::unexpected(w.error());
  co_return co_await s->read_all(limit, config_.idle_timeout);
}

}  // namespace patina::io

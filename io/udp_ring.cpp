#include "io/udp_ring.hpp"

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <fmt/format.h>

#include "core/log.hpp"
#include "core/runtime.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

namespace patina::io {

namespace net = boost::asio;

namespace {

// user_data of an SQE: the operation kind in the top byte, a slot below.
constexpr std::uint64_t kind_shift = 56;
constexpr std::uint64_t kind_recv_multi = 1;
constexpr std::uint64_t kind_recv_plain = 2;
constexpr std::uint64_t kind_send = 3;
constexpr std::uint64_t kind_cancel = 4;
constexpr std::uint16_t buffer_group = 7;
constexpr unsigned ring_entries = 256;
constexpr unsigned cq_entries = 4096;
constexpr std::size_t plain_slot_count = 64;
// The kernel refuses more segments per GSO send (UDP_MAX_SEGMENTS).
constexpr std::size_t gso_segments_max = 64;

std::uint64_t tag(std::uint64_t kind, std::uint64_t slot) { return (kind << kind_shift) | slot; }

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

struct UdpRing::SendSlot {
  msghdr msg{};
  iovec iov{};
  sockaddr_storage addr{};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(std::uint16_t))]{};
  std::vector<std::byte> data;
};

struct UdpRing::PlainRecvSlot {
  msghdr msg{};
  iovec iov{};
  sockaddr_storage addr{};
  std::vector<std::byte> data;
};

Result<UdpEndpoint> parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 >= text.size()) {
    return make_error(Errc::invalid_argument, fmt::format("'{}' is not ip:port", text));
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec) return make_error(Errc::invalid_argument, fmt::format("'{}': bad address: {}", text, ec.message()));
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    return make_error(Errc::invalid_argument, fmt::format("'{}': bad port", text));
  }
  return UdpEndpoint(addr, static_cast<unsigned short>(port));
}

UdpRing::UdpRing(net::any_io_executor ex, UdpRingOptions options, core::Metrics& m)
    : ex_(std::move(ex)),
      options_(std::move(options)),
      rx_datagrams_(m.counter("patina_udp_rx_datagrams_total", "UDP datagrams received", options_.metric_labels)),
      rx_bytes_(m.counter("patina_udp_rx_bytes_total", "UDP payload bytes received", options_.metric_labels)),
      rx_enobufs_(m.counter("patina_udp_rx_enobufs_total",
                            "Multishot receive re-armed because the buffer ring ran empty", options_.metric_labels)),
      rx_truncated_(m.counter("patina_udp_rx_truncated_total", "Datagrams dropped because they exceeded a buffer",
                              options_.metric_labels)),
      rx_errors_(m.counter("patina_udp_rx_errors_total", "Receive completions with an error", options_.metric_labels)),
      tx_datagrams_(m.counter("patina_udp_tx_datagrams_total", "UDP datagrams sent (GSO segments counted one by one)",
                              options_.metric_labels)),
      tx_bytes_(m.counter("patina_udp_tx_bytes_total", "UDP payload bytes sent", options_.metric_labels)),
      tx_dropped_(m.counter("patina_udp_tx_dropped_total", "Sends dropped because the send queue was full",
                            options_.metric_labels)),
      tx_errors_(m.counter("patina_udp_tx_errors_total", "Send completions with an error", options_.metric_labels)),
      tx_queue_depth_(m.gauge("patina_udp_tx_queue_depth", "Sends waiting for a free slot", options_.metric_labels)),
      tx_slots_busy_(m.gauge("patina_udp_tx_slots_busy", "Send slots in flight", options_.metric_labels)) {}

Result<std::shared_ptr<UdpRing>> UdpRing::open(net::any_io_executor ex, UdpRingOptions options,
                                               core::Metrics& metrics) {
  std::shared_ptr<UdpRing> ring(new UdpRing(std::move(ex), std::move(options), metrics));
  if (auto r = ring->setup(); !r) return tl::unexpected(r.error());
  return ring;
}

Result<void> UdpRing::setup() {
  auto bind_ep = parse_endpoint(options_.bind_addr);
  if (!bind_ep) return tl::unexpected(bind_ep.error());
  if (options_.buffer_count == 0 || (options_.buffer_count & (options_.buffer_count - 1)) != 0 ||
      options_.buffer_count > 32768) {
    return make_error(Errc::invalid_argument, "buffer_count must be a power of two up to 32768");
  }
  if (options_.buffer_size < 2048) return make_error(Errc::invalid_argument, "buffer_size must be at least 2048");

  fd_ = ::socket(bind_ep->protocol().family(), SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
  if (fd_ < 0) return make_error(Errc::io, "socket: " + errno_text(errno));
  int sz = options_.socket_buffer_bytes;
  // Best effort: the kernel caps these at rmem_max/wmem_max.
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  if (bind_ep->protocol() == net::ip::udp::v6()) {
    int off = 0;
    ::setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  if (::bind(fd_, bind_ep->data(), static_cast<socklen_t>(bind_ep->size())) != 0) {
    return make_error(Errc::io, fmt::format("bind {}: {}", options_.bind_addr, errno_text(errno)));
  }
  UdpEndpoint local = *bind_ep;
  socklen_t len = static_cast<socklen_t>(local.capacity());
  if (::getsockname(fd_, local.data(), &len) != 0) return make_error(Errc::io, "getsockname: " + errno_text(errno));
  local.resize(len);
  local_ = local;

  if (!options_.disable_gso) {
    // Probe once: a kernel without UDP_SEGMENT refuses the option.
    int seg = 1200;
    if (::setsockopt(fd_, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg) == 0) {
      seg = 0;
      ::setsockopt(fd_, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg);
      gso_ = true;
    } else {
      core::log::get("quic")->info("UDP GSO unavailable ({}); sending one datagram per syscall entry",
                                   errno_text(errno));
    }
  }

  ring_ = std::make_unique<io_uring>();
  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE;
  params.cq_entries = cq_entries;
  int rc = io_uring_queue_init_params(ring_entries, ring_.get(), &params);
  if (rc < 0) return make_error(Errc::io, "io_uring_queue_init: " + errno_text(-rc));
  ring_ready_ = true;

  event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) return make_error(Errc::io, "eventfd: " + errno_text(errno));
  rc = io_uring_register_eventfd(ring_.get(), event_fd_);
  if (rc < 0) return make_error(Errc::io, "io_uring_register_eventfd: " + errno_text(-rc));
  event_sd_ = std::make_unique<net::posix::stream_descriptor>(ex_, event_fd_);

  if (options_.force_plain_receive) {
    multishot_ = false;
  } else if (auto r = setup_buffer_ring(); r) {
    multishot_ = true;
  } else {
    core::log::get("quic")->warn("UDP receive falls back to plain recvmsg: {}", r.error());
  }

  send_slots_.reserve(options_.send_slots);
  for (std::size_t i = 0; i < options_.send_slots; ++i) {
    send_slots_.push_back(std::make_unique<SendSlot>());
    free_send_slots_.push_back(options_.send_slots - 1 - i);
  }
  return {};
}

Result<void> UdpRing::setup_buffer_ring() {
  const unsigned n = options_.buffer_count;
  buf_ring_bytes_ = n * sizeof(io_uring_buf);
  void* ring_mem = ::mmap(nullptr, buf_ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (ring_mem == MAP_FAILED) return make_error(Errc::io, "mmap buffer ring: " + errno_text(errno));
  buf_ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
  buffers_bytes_ = static_cast<std::size_t>(n) * options_.buffer_size;
  void* bufs = ::mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (bufs == MAP_FAILED) return make_error(Errc::io, "mmap buffers: " + errno_text(errno));
  buffers_ = static_cast<std::byte*>(bufs);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(buf_ring_);
  reg.ring_entries = n;
  reg.bgid = buffer_group;
  int rc = io_uring_register_buf_ring(ring_.get(), &reg, 0);
  if (rc < 0) return make_error(Errc::io, "io_uring_register_buf_ring: " + errno_text(-rc));
  io_uring_buf_ring_init(buf_ring_);
  const int mask = io_uring_buf_ring_mask(n);
  for (unsigned i = 0; i < n; ++i) {
    io_uring_buf_ring_add(buf_ring_, buffers_ + static_cast<std::size_t>(i) * options_.buffer_size,
                          options_.buffer_size, static_cast<unsigned short>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(buf_ring_, static_cast<int>(n));

  auto* msg = new msghdr{};
  msg->msg_namelen = sizeof(sockaddr_storage);
  msg->msg_controllen = 0;
  recv_msg_ = msg;
  return {};
}

UdpRing::~UdpRing() {
  close();
  if (ring_ready_) io_uring_queue_exit(ring_.get());
  if (event_sd_) {
    boost::system::error_code ignored;
    event_sd_->close(ignored);  // closes event_fd_
  } else if (event_fd_ >= 0) {
    ::close(event_fd_);
  }
  if (fd_ >= 0) ::close(fd_);
  if (buffers_ != nullptr) ::munmap(buffers_, buffers_bytes_);
  if (buf_ring_ != nullptr) ::munmap(buf_ring_, buf_ring_bytes_);
  delete static_cast<msghdr*>(recv_msg_);
}

void UdpRing::start(OnDatagram on_datagram) {
  if (started_ || closed_) return;
  started_ = true;
  on_datagram_ = std::move(on_datagram);
  if (multishot_) {
    arm_multishot();
  } else {
    for (std::size_t i = 0; i < plain_slot_count; ++i) {
      auto slot = std::make_unique<PlainRecvSlot>();
      slot->data.resize(options_.buffer_size);
      plain_slots_.push_back(std::move(slot));
      arm_plain(i);
    }
  }
  submit();
  // The coroutine co-owns the ring, so it may outlive the last user handle
  // until it observes close().
  net::co_spawn(ex_, run(shared_from_this()), net::detached);
}

void UdpRing::close() {
  if (closed_) return;
  closed_ = true;
  on_datagram_ = nullptr;
  pending_.clear();
  tx_queue_depth_.set(0);
  if (ring_ready_) {
    // Cancel every receive so the kernel stops writing into our buffers.
    if (io_uring_sqe* sqe = io_uring_get_sqe(ring_.get()); sqe != nullptr) {
      io_uring_prep_cancel64(sqe, tag(kind_recv_multi, 0), 0);
      io_uring_sqe_set_data64(sqe, tag(kind_cancel, 0));
      io_uring_submit(ring_.get());
    }
  }
  // Release the port now (a restart may bind it again at once); in-flight
  // kernel operations hold their own reference to the socket.
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (event_sd_) {
    boost::system::error_code ignored;
    event_sd_->cancel(ignored);
  }
}

void UdpRing::arm_multishot() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) {
    io_uring_submit(ring_.get());
    sqe = io_uring_get_sqe(ring_.get());
  }
  if (sqe == nullptr) return;  // SQ cannot be full after a submit; defensive only
  io_uring_prep_recvmsg_multishot(sqe, fd_, static_cast<msghdr*>(recv_msg_), 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = buffer_group;
  io_uring_sqe_set_data64(sqe, tag(kind_recv_multi, 0));
  submit_pending_ = true;
}

void UdpRing::arm_plain(std::size_t slot_index) {
  PlainRecvSlot& slot = *plain_slots_[slot_index];
  slot.iov.iov_base = slot.data.data();
  slot.iov.iov_len = slot.data.size();
  slot.msg = msghdr{};
  slot.msg.msg_name = &slot.addr;
  slot.msg.msg_namelen = sizeof slot.addr;
  slot.msg.msg_iov = &slot.iov;
  slot.msg.msg_iovlen = 1;
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) {
    io_uring_submit(ring_.get());
    sqe = io_uring_get_sqe(ring_.get());
  }
  if (sqe == nullptr) return;
  io_uring_prep_recvmsg(sqe, fd_, &slot.msg, 0);
  io_uring_sqe_set_data64(sqe, tag(kind_recv_plain, slot_index));
  submit_pending_ = true;
}

void UdpRing::fall_back_to_plain(const char* why) {
  core::log::get("quic")->warn("multishot UDP receive unavailable ({}); using plain recvmsg", why);
  multishot_ = false;
  for (std::size_t i = 0; i < plain_slot_count; ++i) {
    auto slot = std::make_unique<PlainRecvSlot>();
    slot->data.resize(options_.buffer_size);
    plain_slots_.push_back(std::move(slot));
    arm_plain(i);
  }
}

bool UdpRing::send(const UdpEndpoint& to, std::span<const std::byte> payload, std::size_t segment_size) {
  if (closed_) return false;
  constexpr std::size_t entry_bytes_max = 65000;  // below the 65507-byte UDP payload limit
  if (segment_size == 0 || segment_size >= payload.size()) segment_size = payload.size();
  if (segment_size > entry_bytes_max) {
    tx_dropped_.inc();
    return false;
  }
  // One queue entry per GSO batch, or per datagram without GSO.
  std::size_t per_entry = segment_size;
  if (gso_ && segment_size > 0) {
    per_entry = std::min(gso_segments_max, entry_bytes_max / segment_size) * segment_size;
  }
  // A dual-stack socket ([::] with V6ONLY off) reaches IPv4 peers through
  // v4-mapped addresses; callers keep using plain IPv4 endpoints.
  UdpEndpoint dest = to;
  if (local_.address().is_v6() && to.address().is_v4()) {
    dest = UdpEndpoint(net::ip::make_address_v6(net::ip::v4_mapped, to.address().to_v4()), to.port());
  }
  bool all_queued = true;
  std::size_t off = 0;
  do {
    if (pending_.size() >= options_.send_queue_max) {
      tx_dropped_.inc();
      all_queued = false;
      break;
    }
    std::size_t n = std::min(per_entry, payload.size() - off);
    PendingSend p;
    p.to = dest;
    p.data.assign(payload.begin() + static_cast<std::ptrdiff_t>(off),
                  payload.begin() + static_cast<std::ptrdiff_t>(off + n));
    p.segment = (gso_ && n > segment_size) ? static_cast<std::uint16_t>(segment_size) : 0;
    pending_.push_back(std::move(p));
    off += n;
  } while (off < payload.size());
  pump_sends();
  if (!draining_) submit();
  return all_queued;
}

void UdpRing::pump_sends() {
  while (!pending_.empty() && !free_send_slots_.empty()) {
    std::size_t index = free_send_slots_.back();
    SendSlot& slot = *send_slots_[index];
    PendingSend& p = pending_.front();
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    if (sqe == nullptr) {
      io_uring_submit(ring_.get());
      sqe = io_uring_get_sqe(ring_.get());
      if (sqe == nullptr) break;
    }
    free_send_slots_.pop_back();
    slot.data.swap(p.data);
    std::memcpy(&slot.addr, p.to.data(), p.to.size());
    slot.iov.iov_base = slot.data.data();
    slot.iov.iov_len = slot.data.size();
    slot.msg = msghdr{};
    slot.msg.msg_name = &slot.addr;
    slot.msg.msg_namelen = static_cast<socklen_t>(p.to.size());
    slot.msg.msg_iov = &slot.iov;
    slot.msg.msg_iovlen = 1;
    if (p.segment != 0) {
      slot.msg.msg_control = slot.control;
      slot.msg.msg_controllen = sizeof slot.control;
      cmsghdr* cm = CMSG_FIRSTHDR(&slot.msg);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
      std::memcpy(CMSG_DATA(cm), &p.segment, sizeof p.segment);
    }
    io_uring_prep_sendmsg(sqe, fd_, &slot.msg, 0);
    io_uring_sqe_set_data64(sqe, tag(kind_send, index));
    std::size_t segments = p.segment != 0 ? (slot.data.size() + p.segment - 1) / p.segment : 1;
    tx_datagrams_.inc(segments);
    tx_bytes_.inc(slot.data.size());
    pending_.pop_front();
    submit_pending_ = true;
  }
  tx_queue_depth_.set(static_cast<double>(pending_.size()));
  tx_slots_busy_.set(static_cast<double>(send_slots_.size() - free_send_slots_.size()));
}

void UdpRing::submit() {
  if (!submit_pending_ || !ring_ready_) return;
  submit_pending_ = false;
  int rc = io_uring_submit(ring_.get());
  if (rc < 0) core::log::get("quic")->warn("io_uring_submit: {}", errno_text(-rc));
}

net::awaitable<void> UdpRing::run(std::shared_ptr<UdpRing> self) {
  for (;;) {
    auto [ec] = co_await self->event_sd_->async_wait(net::posix::stream_descriptor::wait_read, core::use_nothrow);
    if (self->closed_) co_return;
    if (ec && ec != net::error::operation_aborted) {
      core::log::get("quic")->error("UDP ring eventfd wait failed: {}", ec.message());
      co_return;
    }
    self->drain();
  }
}

void UdpRing::drain() {
  // Reset the eventfd before reading completions, so a completion posted
  // while we drain signals again instead of being missed.
  std::uint64_t counter = 0;
  [[maybe_unused]] auto n = ::read(event_fd_, &counter, sizeof counter);
  draining_ = true;
  // Bounded per wake-up so a flood cannot starve the rest of the reactor;
  // the leftovers re-signal nothing, so loop until empty but re-check close.
  for (int round = 0; round < 64 && !closed_; ++round) {
    io_uring_cqe* cqes[256];
    unsigned count = io_uring_peek_batch_cqe(ring_.get(), cqes, 256);
    if (count == 0) break;
    for (unsigned i = 0; i < count; ++i) {
      std::uint64_t ud = io_uring_cqe_get_data64(cqes[i]);
      int res = cqes[i]->res;
      unsigned flags = cqes[i]->flags;
      std::uint64_t kind = ud >> kind_shift;
      std::size_t slot = static_cast<std::size_t>(ud & ((std::uint64_t{1} << kind_shift) - 1));
      // Advance first: handlers may arm new SQEs but never read the CQ.
      io_uring_cq_advance(ring_.get(), 1);
      if (closed_) continue;
      switch (kind) {
        case kind_recv_multi: handle_recv_cqe(res, flags); break;
        case kind_recv_plain: handle_plain_cqe(slot, res); break;
        case kind_send: handle_send_cqe(slot, res); break;
        default: break;
      }
    }
  }
  draining_ = false;
  if (closed_) return;
  pump_sends();
  submit();
  // Completions may remain if we stopped at the round limit: make sure we
  // come back for them.
  if (io_uring_cq_ready(ring_.get()) > 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(event_fd_, &one, sizeof one);
  }
}

void UdpRing::handle_recv_cqe(int res, unsigned flags) {
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (res < 0) {
    if (res == -ENOBUFS) {
      rx_enobufs_.inc();
    } else if (res == -EINVAL || res == -EOPNOTSUPP) {
      fall_back_to_plain(std::strerror(-res));
      return;
    } else if (res != -ECANCELED) {
      rx_errors_.inc();
      core::log::get("quic")->warn("UDP multishot receive: {}", errno_text(-res));
    }
    if (!more && res != -ECANCELED) arm_multishot();
    return;
  }
  if ((flags & IORING_CQE_F_BUFFER) == 0) {
    rx_errors_.inc();
    if (!more) arm_multishot();
    return;
  }
  const unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
  std::byte* buf = buffers_ + static_cast<std::size_t>(bid) * options_.buffer_size;
  auto* msg = static_cast<msghdr*>(recv_msg_);
  io_uring_recvmsg_out* out = io_uring_recvmsg_validate(buf, res, msg);
  if (out == nullptr) {
    rx_errors_.inc();
  } else if ((out->flags & MSG_TRUNC) != 0) {
    rx_truncated_.inc();
  } else {
    auto* payload = static_cast<std::byte*>(io_uring_recvmsg_payload(out, msg));
    std::size_t len = io_uring_recvmsg_payload_length(out, res, msg);
    deliver(io_uring_recvmsg_name(out), out->namelen, std::span<const std::byte>(payload, len));
  }
  // Recycle only now: the callback has returned and kept nothing (inv. 1).
  if (buf_ring_ != nullptr) {
    io_uring_buf_ring_add(buf_ring_, buf, options_.buffer_size, static_cast<unsigned short>(bid),
                          io_uring_buf_ring_mask(options_.buffer_count), 0);
    io_uring_buf_ring_advance(buf_ring_, 1);
  }
  if (!more && !closed_) arm_multishot();
}

void UdpRing::handle_plain_cqe(std::size_t slot_index, int res) {
  if (slot_index >= plain_slots_.size()) return;
  PlainRecvSlot& slot = *plain_slots_[slot_index];
  if (res < 0) {
    if (res == -ECANCELED) return;
    rx_errors_.inc();
    core::log::get("quic")->warn("UDP receive: {}", errno_text(-res));
  } else if ((slot.msg.msg_flags & MSG_TRUNC) != 0) {
    rx_truncated_.inc();
  } else {
    deliver(&slot.addr, slot.msg.msg_namelen,
            std::span<const std::byte>(slot.data.data(), static_cast<std::size_t>(res)));
  }
  if (!closed_) arm_plain(slot_index);
}

void UdpRing::handle_send_cqe(std::size_t slot_index, int res) {
  if (slot_index >= send_slots_.size()) return;
  if (res < 0) {
    tx_errors_.inc();
    SendSlot& slot = *send_slots_[slot_index];
    if (res == -EIO && slot.msg.msg_controllen != 0 && gso_) {
      // A device without checksum offload refuses GSO with EIO: stop using it.
      gso_ = false;
      core::log::get("quic")->warn("UDP GSO send failed with EIO; GSO disabled");
    } else {
      core::log::get("quic")->debug("UDP send: {}", errno_text(-res));
    }
  }
  free_send_slots_.push_back(slot_index);
}

void UdpRing::deliver(const void* name, unsigned namelen, std::span<const std::byte> payload) {
  rx_datagrams_.inc();
  rx_bytes_.inc(payload.size());
  if (!on_datagram_) return;
  UdpEndpoint from;
  if (namelen > from.capacity()) return;
  std::memcpy(from.data(), name, namelen);
  from.resize(namelen);
  if (from.address().is_v6() && from.address().to_v6().is_v4_mapped()) {
    from = UdpEndpoint(net::ip::make_address_v4(net::ip::v4_mapped, from.address().to_v6()), from.port());
  }
  on_datagram_(from, payload);
}

}  // namespace patina::io

#include "io/broadcaster.hpp"

#include <fmt/format.h>

#include "core/log.hpp"

namespace patina::io {

namespace net = boost::asio;

Broadcaster::Broadcaster(std::shared_ptr<QuicEndpoint> quic, MembershipDriver& members, core::Metrics& metrics)
    : quic_(std::move(quic)),
      members_(members),
      sent_(metrics.counter("patina_broadcast_frames_sent_total", "Changeset frames sent to members")),
      send_failures_(metrics.counter("patina_broadcast_send_failures_total", "Changeset frames that failed to send")),
      received_(metrics.counter("patina_broadcast_frames_received_total", "Changeset frames received")) {}

void Broadcaster::start(core::TaskGroup& tasks, OnFrame on_frame, OnBiStream on_bi_stream) {
  tasks_ = &tasks;
  on_frame_ = std::move(on_frame);
  on_bi_stream_ = std::move(on_bi_stream);
  quic_->set_on_stream([this](std::shared_ptr<QuicStream> stream) {
    if (tasks_ == nullptr) return;
    if (stream->unidirectional()) {
      tasks_->spawn("broadcast-receive", receive(std::move(stream)));
    } else if (on_bi_stream_) {
      on_bi_stream_(std::move(stream));
    } else {
      stream->reset();
    }
  });
}

void Broadcaster::send(const std::vector<std::vector<std::byte>>& frames, const std::optional<std::string>& except) {
  const swim::Membership* m = members_.membership();
  if (m == nullptr || tasks_ == nullptr) return;
  for (const auto& peer : m->active_peers()) {
    if (except && peer.addr == *except) continue;
    auto ep = parse_endpoint(peer.addr);
    if (!ep) continue;
    for (const auto& frame : frames) tasks_->spawn("broadcast-send", send_to(*ep, frame));
  }
}

net::awaitable<void> Broadcaster::send_to(UdpEndpoint peer, std::vector<std::byte> frame) {
  auto r = co_await quic_->send_uni(peer, std::move(frame));
  if (r) {
    sent_.inc();
  } else {
    send_failures_.inc();
    core::log::get("broadcast")->debug("send to {}:{} failed: {}", peer.address().to_string(), peer.port(),
                                       r.error().message);
  }
}

net::awaitable<void> Broadcaster::receive(std::shared_ptr<QuicStream> stream) {
  auto bytes = co_await stream->read_all(frame_size_max, std::chrono::seconds(30));
  if (!bytes) {
    core::log::get("broadcast")->debug("receive from {} failed: {}", stream->peer().address().to_string(),
                                       bytes.error().message);
    co_return;
  }
  received_.inc();
  // Peers are identified by the gossip address they announce; a stream's
  // source address is that same socket (one UDP port per node).
  const auto& p = stream->peer();
  std::string from = p.address().is_v6() ? fmt::format("[{}]:{}", p.address().to_string(), p.port())
                                          : fmt::format("{}:{}", p.address().to_string(), p.port());
  if (on_frame_) on_frame_(std::move(from), std::move(*bytes));
}

}  // namespace patina::io

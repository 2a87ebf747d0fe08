#include "io/membership_driver.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "core/log.hpp"

namespace patina::io {

namespace net = boost::asio;
using core::use_nothrow;

namespace {

std::string hex(const swim::ActorId& id) {
  std::string out;
  for (auto b : id) out += fmt::format("{:02x}", b);
  return out;
}

}  // namespace

MembershipDriver::MembershipDriver(net::any_io_executor ex, std::shared_ptr<QuicEndpoint> quic,
                                   core::Metrics& metrics)
    : ex_(std::move(ex)),
      quic_(std::move(quic)),
      members_gauge_(metrics.gauge("patina_gossip_members", "Active cluster members besides this node")),
      bad_packets_(metrics.counter("patina_gossip_bad_packets_total", "SWIM datagrams rejected")),
      notifications_up_(metrics.counter("patina_swim_notifications_total", "SWIM notifications", {{"type", "up"}})),
      notifications_down_(
          metrics.counter("patina_swim_notifications_total", "SWIM notifications", {{"type", "down"}})) {}

swim::Instant MembershipDriver::now() {
  return swim::Instant{std::chrono::duration_cast<swim::Duration>(std::chrono::steady_clock::now().time_since_epoch())};
}

Result<void> MembershipDriver::start(core::TaskGroup& tasks, swim::Identity self, swim::Config config,
                                     std::uint64_t seed, std::vector<std::string> bootstrap) {
  auto m = swim::Membership::create(std::move(self), config, seed);
  if (!m) return make_error(Errc::invalid_argument, fmt::format("swim: {}", swim::to_string(m.error().code)));
  membership_ = std::make_unique<swim::Membership>(std::move(*m));
  tasks_ = &tasks;
  quic_->set_on_datagram([this](const UdpEndpoint& peer, std::span<const std::byte> payload) {
    on_datagram(peer, payload);
  });
  tasks.spawn("swim-announce", announce_loop(std::move(bootstrap)));
  return {};
}

void MembershipDriver::on_datagram(const UdpEndpoint& peer, std::span<const std::byte> payload) {
  if (!membership_ || left_) return;
  swim::Effects fx;
  if (auto r = membership_->handle_datagram(now(), payload, fx); !r) {
    bad_packets_.inc();
    if (bad_packets_log_.allow(std::chrono::steady_clock::now())) {
      core::log::get("swim")->debug("datagram from {} rejected: {}", peer.address().to_string(),
                                    swim::to_string(r.error().code));
    }
  }
  apply(fx);
}

void MembershipDriver::apply(swim::Effects& effects) {
  auto log = core::log::get("swim");
  for (auto& effect : effects) {
    if (auto* s = std::get_if<swim::SendTo>(&effect)) {
      send(s->to, std::move(s->payload));
    } else if (auto* t = std::get_if<swim::ArmTimer>(&effect)) {
      if (tasks_ != nullptr) tasks_->spawn("swim-timer", fire_after(t->after, t->timer));
    } else if (auto* n = std::get_if<swim::Notify>(&effect)) {
      if (auto* up = std::get_if<swim::notification::MemberUp>(&n->what)) {
        notifications_up_.inc();
        log->info("member up: {} at {}", hex(up->who.id), up->who.addr);
      } else if (auto* down = std::get_if<swim::notification::MemberDown>(&n->what)) {
        notifications_down_.inc();
        log->info("member down: {} at {}", hex(down->who.id), down->who.addr);
      } else {
        log->debug("notification: {}", swim::to_string(n->what));
      }
    }
  }
  if (membership_) members_gauge_.set(static_cast<double>(membership_->num_active()));
}

void MembershipDriver::send(const std::string& to, std::vector<std::byte> payload) {
  auto peer = parse_endpoint(to);
  if (!peer) return;
  if (quic_->try_send_datagram(*peer, payload)) return;
  // No connection yet: open one, then send. SWIM tolerates the loss of
  // datagrams sent meanwhile to the same peer.
  if (connecting_.count(to) != 0 || tasks_ == nullptr) return;
  connecting_.insert(to);
  tasks_->spawn("swim-connect", send_connecting(*peer, to, std::move(payload)));
}

net::awaitable<void> MembershipDriver::send_connecting(UdpEndpoint peer, std::string to, std::vector<std::byte> payload) {
  auto r = co_await quic_->send_datagram(peer, std::move(payload));
  connecting_.erase(to);
  if (!r) core::log::get("swim")->debug("cannot reach {}: {}", to, r.error().message);
}

net::awaitable<void> MembershipDriver::fire_after(swim::Duration after, swim::Timer timer) {
  net::steady_timer t(ex_);
  t.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(after));
  auto [ec] = co_await t.async_wait(use_nothrow);
  if (ec || !membership_ || left_) co_return;
  swim::Effects fx;
  (void)membership_->handle_timer(now(), timer, fx);
  apply(fx);
}

net::awaitable<void> MembershipDriver::announce_loop(std::vector<std::string> bootstrap) {
  net::steady_timer t(ex_);
  auto backoff = std::chrono::seconds(1);
  const std::string& self = membership_->identity().addr;
  for (;;) {
    if (!left_ && membership_->num_active() == 0) {
      swim::Effects fx;
      for (const auto& addr : bootstrap) {
        if (addr != self) (void)membership_->announce(now(), addr, fx);
      }
      apply(fx);
    }
    t.expires_after(backoff);
    auto [ec] = co_await t.async_wait(use_nothrow);
    if (ec) co_return;
    backoff = std::min<std::chrono::seconds>(backoff * 2, std::chrono::seconds(30));
  }
}

void MembershipDriver::leave() {
  if (!membership_ || left_) return;
  swim::Effects fx;
  (void)membership_->leave(now(), fx);
  // Only the goodbye datagrams: no timers after leaving.
  for (auto& e : fx) {
    if (auto* s = std::get_if<swim::SendTo>(&e)) send(s->to, std::move(s->payload));
  }
  left_ = true;
}

Result<void> MembershipDriver::rejoin(std::uint64_t new_ts) {
  if (!membership_) return make_error(Errc::internal, "membership is not running");
  swim::Effects fx;
  auto r = membership_->rejoin(now(), fx, new_ts);
  if (!r) return make_error(Errc::invalid_argument, fmt::format("rejoin: {}", swim::to_string(r.error().code)));
  left_ = false;
  apply(fx);
  return {};
}

}  // namespace patina::io

#include "io/membership_driver.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/ip/udp.hpp>
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
      alive_gauge_(metrics.gauge("patina_swim_members", "Members SWIM knows, by state", {{"state", "alive"}})),
      suspect_gauge_(metrics.gauge("patina_swim_members", "Members SWIM knows, by state", {{"state", "suspect"}})),
      down_gauge_(metrics.gauge("patina_swim_members", "Members SWIM knows, by state", {{"state", "down"}})),
      bad_packets_(metrics.counter("patina_gossip_bad_packets_total", "SWIM datagrams rejected")),
      notifications_up_(metrics.counter("patina_swim_notifications_total", "SWIM notifications", {{"type", "up"}})),
      notifications_down_(
          metrics.counter("patina_swim_notifications_total", "SWIM notifications", {{"type", "down"}})) {}

swim::Instant MembershipDriver::now() {
  return swim::Instant{std::chrono::duration_cast<swim::Duration>(std::chrono::steady_clock::now().time_since_epoch())};
}

Result<void> MembershipDriver::start(core::TaskGroup& tasks, swim::Identity self, swim::Config config,
                                     std::uint64_t seed, std::vector<std::string> bootstrap,
                                     std::vector<swim::MemberUpdate> persisted) {
  rng_.seed(static_cast<std::uint32_t>(seed ^ (seed >> 32)));
  auto m = swim::Membership::create(std::move(self), config, seed);
  if (!m) return make_error(Errc::invalid_argument, fmt::format("swim: {}", swim::to_string(m.error().code)));
  membership_ = std::make_unique<swim::Membership>(std::move(*m));
  tasks_ = &tasks;
  quic_->set_on_datagram([this](const UdpEndpoint& peer, std::span<const std::byte> payload) {
    on_datagram(peer, payload);
  });
  if (!persisted.empty()) {
    swim::Effects fx;
    if (auto r = membership_->apply_snapshot(now(), persisted, fx); r) {
      core::log::get("swim")->info("restored {} saved member states ({} active)", persisted.size(),
                                   membership_->num_active());
    }
    apply(fx);
    if (bootstrap.empty()) {
      // Corrosion's fallback: a few saved addresses stand in for bootstrap.
      for (std::size_t i = 0; i < persisted.size() && bootstrap.size() < 5; ++i) {
        if (persisted[i].state != swim::MemberState::down) bootstrap.push_back(persisted[i].id.addr);
      }
    }
  }
  bootstrap_ = std::move(bootstrap);
  announce_timer_ = std::make_shared<net::steady_timer>(ex_);
  tasks.spawn("swim-announce", announce_loop());
  tasks.spawn("swim-rtt", rtt_loop());
  return {};
}

// SPEC.md §5.2: RTTs sampled from the QUIC connections every second, so
// "nearest" (ring 0) is known for every member we talk to, not only the
// ones SWIM happened to probe lately.
net::awaitable<void> MembershipDriver::rtt_loop() {
  net::steady_timer t(ex_);
  for (;;) {
    // Aligned: shares its wakeup with the reactor heartbeat.
    t.expires_at(core::next_aligned(std::chrono::steady_clock::now(), std::chrono::seconds(1)));
    auto [ec] = co_await t.async_wait(use_nothrow);
    if (ec || !membership_) co_return;
    if (left_) continue;
    std::vector<std::pair<std::string, std::chrono::microseconds>> samples;
    for (const auto& m : membership_->members()) {
      if (!m.active()) continue;
      auto ep = parse_endpoint(m.id.addr);
      if (!ep) continue;
      if (auto rtt = quic_->rtt(*ep)) samples.emplace_back(m.id.addr, *rtt);
    }
    for (const auto& [addr, rtt] : samples) {
      (void)membership_->record_rtt(addr, std::chrono::duration_cast<swim::Duration>(rtt));
    }
  }
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
  if (membership_) {
    members_gauge_.set(static_cast<double>(membership_->num_active()));
    update_state_gauges();
  }
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

net::awaitable<std::vector<std::string>> MembershipDriver::resolve_bootstrap() {
  std::vector<std::string> out;
  auto log = core::log::get("swim");
  for (const auto& entry : bootstrap_) {
    if (parse_endpoint(entry)) {
      out.push_back(entry);
      continue;
    }
    // host[:port][@dns]: the system resolver (a per-entry DNS server is not
    // supported; the entry's host is still resolved the usual way).
    std::string spec = entry.substr(0, entry.find('@'));
    std::string host = spec, port = std::to_string(default_gossip_port);
    if (auto colon = spec.rfind(':'); colon != std::string::npos && spec.find(']') == std::string::npos) {
      host = spec.substr(0, colon);
      port = spec.substr(colon + 1);
    }
    net::ip::udp::resolver resolver(ex_);
    auto [ec, results] = co_await resolver.async_resolve(host, port, use_nothrow);
    if (ec) {
      log->warn("gossip.bootstrap entry '{}': cannot resolve {}: {}", entry, host, ec.message());
      continue;
    }
    for (const auto& r : results) {
      auto ep = r.endpoint();
      out.push_back(ep.address().is_v6() ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                                         : fmt::format("{}:{}", ep.address().to_string(), ep.port()));
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  co_return out;
}

void MembershipDriver::announce_to(const std::vector<std::string>& addrs) {
  if (left_ || !membership_) return;
  const std::string& self = membership_->identity().addr;
  swim::Effects fx;
  for (const auto& addr : addrs) {
    if (addr != self) (void)membership_->announce(now(), addr, fx);
  }
  apply(fx);
}

net::awaitable<void> MembershipDriver::announce_loop() {
  auto timer = announce_timer_;
  auto backoff = std::chrono::seconds(1);
  // Members that join at the same moment as we do are in no feed we get, and
  // the gossip of their joins can miss us (each update is retransmitted a
  // bounded number of times): at 32 agents started at once, one or two
  // members lacked one or two others for 10 s, until a probe found them. So,
  // about 1, 3 and 7 s after we became active, we announce once more to one
  // random member, whose feed leads with the members our digest lacks (as
  // Serf's push-pull at join).
  int settle_announces = 0;
  for (;;) {
    if (!left_ && membership_->num_active() == 0 && !bootstrap_.empty()) {
      resolved_ = co_await resolve_bootstrap();
      announce_to(resolved_);
      settle_announces = 3;
    } else if (!left_ && settle_announces > 0 && membership_->num_active() > 0) {
      --settle_announces;
      const auto peers = membership_->active_peers();
      announce_to({peers[std::uniform_int_distribution<std::size_t>(0, peers.size() - 1)(rng_)].addr});
    }
    timer->expires_after(backoff);
    auto [ec] = co_await timer->async_wait(use_nothrow);
    if (ec == net::error::operation_aborted && membership_ && !left_ && reset_backoff_) {
      reset_backoff_ = false;
      backoff = std::chrono::seconds(1);
      continue;
    }
    if (ec) co_return;
    backoff = std::min<std::chrono::seconds>(backoff * 2, std::chrono::seconds(30));
  }
}

Result<void> MembershipDriver::set_cluster_id(std::uint16_t cluster_id, std::uint64_t new_ts) {
  if (!membership_) return make_error(Errc::internal, "membership is not running");
  // Say goodbye to the old cluster first, so its members see us leave now
  // rather than after a suspicion timeout.
  if (!left_) {
    swim::Effects bye;
    (void)membership_->leave(now(), bye);
    for (auto& e : bye) {
      if (auto* s = std::get_if<swim::SendTo>(&e)) send(s->to, std::move(s->payload));
    }
  }
  swim::Effects fx;
  auto r = membership_->set_cluster_id(now(), cluster_id, fx, new_ts);
  if (!r) return make_error(Errc::invalid_argument, fmt::format("set-id: {}", swim::to_string(r.error().code)));
  left_ = false;
  apply(fx);
  announce_to(resolved_);
  // Restart the announce loop's backoff: the new cluster must be found fast.
  reset_backoff_ = true;
  if (announce_timer_) announce_timer_->cancel();
  return {};
}

void MembershipDriver::update_state_gauges() {
  std::size_t alive = 0, suspect = 0, down = 0;
  for (const auto& m : membership_->members()) {
    if (m.state == swim::MemberState::alive) ++alive;
    else if (m.state == swim::MemberState::suspect) ++suspect;
    else if (m.state == swim::MemberState::down) ++down;
  }
  alive_gauge_.set(static_cast<double>(alive));
  suspect_gauge_.set(static_cast<double>(suspect));
  down_gauge_.set(static_cast<double>(down));
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

#pragma once
// MembershipDriver: runs the sans-IO SWIM core (swim::Membership) on the
// reactor. SWIM packets travel as QUIC DATAGRAM frames; ArmTimer effects
// become coroutines on steady timers; notifications become logs and metrics.
// Joining: announce to every bootstrap entry ("ip:port", or "host[:port]"
// resolved through the system resolver each round, off the reactor), again
// with backoff while no member is active. Member states saved by the agent
// are fed back at start, so a restarted node knows its peers at once; with
// no bootstrap configured, a few of them serve as announce targets.
//
// Runs on the reactor thread only; not thread-safe.

#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/metrics.hpp"
#include "core/result.hpp"
#include "core/runtime.hpp"
#include "io/quic_endpoint.hpp"
#include "swim/membership.hpp"

namespace patina::io {

class MembershipDriver {
 public:
  MembershipDriver(boost::asio::any_io_executor ex, std::shared_ptr<QuicEndpoint> quic, core::Metrics& metrics);

  // Creates the SWIM core and starts announcing to |bootstrap| ("ip:port").
  // Coroutines run in |tasks|, which must outlive this driver's activity.
  Result<void> start(core::TaskGroup& tasks, swim::Identity self, swim::Config config, std::uint64_t seed,
                     std::vector<std::string> bootstrap, std::vector<swim::MemberUpdate> persisted = {});
  // Gossips our departure (best effort) and stops handling inputs.
  void leave();
  Result<void> rejoin(std::uint64_t new_ts);
  // `cluster set-id`: forget every member, renew the identity under
  // |cluster_id| and announce to the bootstrap entries again.
  Result<void> set_cluster_id(std::uint16_t cluster_id, std::uint64_t new_ts);

  static constexpr std::uint16_t default_gossip_port = 4001;

  const swim::Membership* membership() const { return membership_.get(); }

 private:
  static swim::Instant now();
  void apply(swim::Effects& effects);
  void send(const std::string& to, std::vector<std::byte> payload);
  boost::asio::awaitable<void> send_connecting(UdpEndpoint peer, std::string to, std::vector<std::byte> payload);
  boost::asio::awaitable<void> fire_after(swim::Duration after, swim::Timer timer);
  boost::asio::awaitable<void> announce_loop();
  boost::asio::awaitable<void> rtt_loop();
  // The bootstrap entries as "ip:port" (names resolved now; failures logged).
  boost::asio::awaitable<std::vector<std::string>> resolve_bootstrap();
  void announce_to(const std::vector<std::string>& addrs);
  void update_state_gauges();
  void on_datagram(const UdpEndpoint& peer, std::span<const std::byte> payload);

  boost::asio::any_io_executor ex_;
  std::shared_ptr<QuicEndpoint> quic_;
  core::TaskGroup* tasks_ = nullptr;
  std::unique_ptr<swim::Membership> membership_;
  std::set<std::string> connecting_;  // peers a connection is being opened to
  std::vector<std::string> bootstrap_;
  std::vector<std::string> resolved_;  // the last resolution of bootstrap_
  std::shared_ptr<boost::asio::steady_timer> announce_timer_;
  bool reset_backoff_ = false;
  bool left_ = false;
  std::minstd_rand rng_;  // picks the members of the settle announces
  LogRateLimit bad_packets_log_;
  core::Gauge& members_gauge_;
  core::Gauge& alive_gauge_;
  core::Gauge& suspect_gauge_;
  core::Gauge& down_gauge_;
  core::Counter& bad_packets_;
  core::Counter& notifications_up_;
  core::Counter& notifications_down_;
};

}  // namespace patina::io

#pragma once
// MembershipDriver: runs the sans-IO SWIM core (swim::Membership) on the
// reactor. SWIM packets travel as QUIC DATAGRAM frames; ArmTimer effects
// become coroutines on steady timers; notifications become logs and metrics.
// Joining: announce to every bootstrap address, again with backoff while no
// member is active.
//
// Runs on the reactor thread only; not thread-safe.

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

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
                     std::vector<std::string> bootstrap);
  // Gossips our departure (best effort) and stops handling inputs.
  void leave();
  Result<void> rejoin(std::uint64_t new_ts);

  const swim::Membership* membership() const { return membership_.get(); }

 private:
  static swim::Instant now();
  void apply(swim::Effects& effects);
  void send(const std::string& to, std::vector<std::byte> payload);
  boost::asio::awaitable<void> send_connecting(UdpEndpoint peer, std::string to, std::vector<std::byte> payload);
  boost::asio::awaitable<void> fire_after(swim::Duration after, swim::Timer timer);
  boost::asio::awaitable<void> announce_loop(std::vector<std::string> bootstrap);
  void on_datagram(const UdpEndpoint& peer, std::span<const std::byte> payload);

  boost::asio::any_io_executor ex_;
  std::shared_ptr<QuicEndpoint> quic_;
  core::TaskGroup* tasks_ = nullptr;
  std::unique_ptr<swim::Membership> membership_;
  std::set<std::string> connecting_;  // peers a connection is being opened to
  bool left_ = false;
  LogRateLimit bad_packets_log_;
  core::Gauge& members_gauge_;
  core::Counter& bad_packets_;
  core::Counter& notifications_up_;
  core::Counter& notifications_down_;
};

}  // namespace patina::io

#pragma once
// Broadcaster: moves changeset frames (io/wire.hpp) between members over
// QUIC unidirectional streams, one frame per stream. Sending goes to every
// active member but the one a frame came from; receiving hands each frame to
// a callback (the apply pipeline), which decides whether to forward it: a
// frame is forwarded only the first time its version is applied, so a change
// crosses each link at most a few times and never circulates (the
// broadcast-storm bug was endless re-broadcast of the same change).
//
// Reactor thread only.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "core/metrics.hpp"
#include "core/runtime.hpp"
#include "io/membership_driver.hpp"
#include "io/quic_endpoint.hpp"

namespace patina::io {

class Broadcaster {
 public:
  // |from| is the sender's gossip address ("ip:port").
  using OnFrame = std::function<void(std::string from, std::vector<std::byte> frame)>;
  // Bidirectional streams (sync sessions) are handed over as they come.
  using OnBiStream = std::function<void(std::shared_ptr<QuicStream> stream)>;

  Broadcaster(std::shared_ptr<QuicEndpoint> quic, MembershipDriver& members, core::Metrics& metrics);
  void start(core::TaskGroup& tasks, OnFrame on_frame, OnBiStream on_bi_stream = {});
  // Sends every frame to every active member except |except|.
  void send(const std::vector<std::vector<std::byte>>& frames, const std::optional<std::string>& except);

  static constexpr std::size_t frame_size_max = 16 * 1024 * 1024;

 private:
  boost::asio::awaitable<void> send_to(UdpEndpoint peer, std::vector<std::byte> frame);
  boost::asio::awaitable<void> receive(std::shared_ptr<QuicStream> stream);

  std::shared_ptr<QuicEndpoint> quic_;
  MembershipDriver& members_;
  core::TaskGroup* tasks_ = nullptr;
  OnFrame on_frame_;
  OnBiStream on_bi_stream_;
  core::Counter& sent_;
  core::Counter& send_failures_;
  core::Counter& received_;
};

}  // namespace patina::io

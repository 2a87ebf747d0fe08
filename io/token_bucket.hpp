#pragma once
// TokenBucket: the outbound bandwidth cap for broadcasts (SPEC.md §5.3,
// 10 MiB/s by default). Sans-IO: the caller passes the time. A send of n
// bytes may go when n tokens are there; bigger-than-burst sends are allowed
// to drive the bucket into debt rather than never going (a 16 MiB frame must
// still leave), and later sends wait the debt out.

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace patina::io {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  TokenBucket(double bytes_per_sec, double burst_bytes, Clock::time_point now)
      : rate_(bytes_per_sec), burst_(burst_bytes), tokens_(burst_bytes), last_(now) {}

  // How long to wait before |bytes| may go (zero: now).
  Clock::duration wait_for(std::size_t bytes, Clock::time_point now) {
    refill(now);
    double need = std::min(static_cast<double>(bytes), burst_);
    if (tokens_ >= need || rate_ <= 0) return Clock::duration::zero();
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>((need - tokens_) / rate_));
  }
  // Spends |bytes| (call once wait_for() said zero).
  void take(std::size_t bytes, Clock::time_point now) {
    refill(now);
    tokens_ -= static_cast<double>(bytes);
  }
  bool limited(Clock::time_point now) {
    refill(now);
    return tokens_ <= 0;
  }

 private:
  void refill(Clock::time_point now) {
    if (now <= last_) return;
    tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
    last_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace patina::io

// swim/error.hpp — the error values of the SWIM core.
//
// Expected failures are values (tl::expected), never exceptions; bugs are
// assertions (swim/assert.hpp). Every Errc says whether the call changed
// Membership state and who is at fault: the *input* (junk bytes), a *peer*
// (a well-formed packet we must not act on), the *caller* (driver misuse) or
// *us* (never expected; a bug).
#pragma once

#include <cstdint>
#include <tl/expected.hpp>

namespace patina::swim {

enum class Errc : std::uint8_t {
  /// Truncated, trailing or otherwise invalid bytes. State unchanged. Input.
  malformed_packet = 1,
  /// Leading protocol version byte is not one we speak. State unchanged. Peer.
  unsupported_version,
  /// Datagram larger than packet_size_accept_max (65507). State unchanged. Input.
  packet_too_large,
  /// Packet (or its sender) belongs to another cluster_id. State unchanged. Peer.
  wrong_cluster,
  /// Sender's member_id differs from ours. State unchanged. Peer.
  foreign_member_id,
  /// Packet claims to come from our own address. State unchanged. Input/peer.
  data_from_ourselves,
  /// Sender is Down in our view; we answered with TurnUndead but kept our
  /// member state. Effects may have been appended. Peer.
  sender_is_down,
  /// Stale identities; the message itself was ignored. Three cases:
  ///  - addressed to an older identity of ours: its piggy-backed updates were
  ///    applied, so state may have changed;
  ///  - from an older identity of a member that has since rejoined: dropped
  ///    (we may have answered turn_undead), member state unchanged;
  ///  - it names a *newer* identity of ours (our clock went back across a
  ///    restart): we renewed our identity above it (state changed, Rejoined).
  /// Peer (stale view or a restarted process).
  not_for_us,
  /// The instance has left the cluster (leave()) and only rejoin() is
  /// accepted. State unchanged. Caller.
  not_active,
  /// Argument rejected (e.g. announce to our own or an empty address, a
  /// config that fails validate()). State unchanged. Caller.
  invalid_argument,
  /// Persisted snapshot bytes are invalid. State unchanged. Input.
  malformed_snapshot,
};

/// `{code, context}`; |context| is a static string naming what failed.
struct Error {
  Errc code;
  const char* context;

  bool operator==(const Error& o) const { return code == o.code; }
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> fail(Errc code, const char* context) {
  return tl::unexpected<Error>(Error{code, context});
}

const char* to_string(Errc code);

}  // namespace patina::swim

// io/quic_error.hpp — the one place where ngtcp2's negative return codes
// become decisions (as feed_data does in ngtcp2's examples).
#pragma once

#include "core/result.hpp"

namespace patina::io {

enum class QuicAction {
  ok,             // carry on
  drop_packet,    // ignore this packet; the connection is fine
  write_more,     // the packet under construction has room for more frames
  stream_blocked, // flow control: skip this stream until credit arrives
  stream_gone,    // the stream can no longer be written; discard its data
  drop_datagram,  // this datagram can never be sent; the connection is fine
  close_silent,   // the connection is over (draining, idle, dropped): forget it
  close_tls,      // handshake failed: send CONNECTION_CLOSE with the TLS alert
  close_error,    // anything else: send CONNECTION_CLOSE with the library error
};

struct QuicDecision {
  QuicAction action = QuicAction::ok;
  Errc code = Errc::internal;  // for the Error reported to waiting callers
};

// Maps an ngtcp2 return value (0 or NGTCP2_ERR_*) to an action.
QuicDecision translate_ngtcp2(int rv);
// The same for ngtcp2_conn_writev_datagram, where a datagram the peer cannot
// take (too large, DATAGRAM not negotiated) drops that datagram only.
QuicDecision translate_ngtcp2_datagram(int rv);

}  // namespace patina::io

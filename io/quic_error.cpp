#include "io/quic_error.hpp"

#include <ngtcp2/ngtcp2.h>

namespace patina::io {

QuicDecision translate_ngtcp2(int rv) {
  switch (rv) {
    case 0:
      return {QuicAction::ok, Errc::internal};
    case NGTCP2_ERR_WRITE_MORE:
      return {QuicAction::write_more, Errc::internal};
    case NGTCP2_ERR_STREAM_DATA_BLOCKED:
    case NGTCP2_ERR_STREAM_ID_BLOCKED:
      return {QuicAction::stream_blocked, Errc::busy};
    case NGTCP2_ERR_STREAM_SHUT_WR:
    case NGTCP2_ERR_STREAM_NOT_FOUND:
    case NGTCP2_ERR_STREAM_STATE:
      return {QuicAction::stream_gone, Errc::io};
    // A packet that fails to decrypt or is meant to be discarded says
    // nothing about the connection (it may be forged or stale).
    case NGTCP2_ERR_DISCARD_PKT:
    case NGTCP2_ERR_DECRYPT:
    case NGTCP2_ERR_RETRY:  // we never send Retry, so a server ignores this
      return {QuicAction::drop_packet, Errc::protocol};
    case NGTCP2_ERR_DRAINING:
    case NGTCP2_ERR_CLOSING:
    case NGTCP2_ERR_DROP_CONN:
      return {QuicAction::close_silent, Errc::io};
    case NGTCP2_ERR_IDLE_CLOSE:
    case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
      return {QuicAction::close_silent, Errc::timeout};
    case NGTCP2_ERR_CRYPTO:
      return {QuicAction::close_tls, Errc::protocol};
    case NGTCP2_ERR_NOMEM:
      return {QuicAction::close_error, Errc::internal};
    default:
      return {QuicAction::close_error, Errc::protocol};
  }
}

QuicDecision translate_ngtcp2_datagram(int rv) {
  switch (rv) {
    case NGTCP2_ERR_INVALID_ARGUMENT:
    case NGTCP2_ERR_INVALID_STATE:
      return {QuicAction::drop_datagram, Errc::invalid_argument};
    default:
      return translate_ngtcp2(rv);
  }
}

}  // namespace patina::io

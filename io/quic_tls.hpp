// io/quic_tls.hpp — GnuTLS credentials and per-connection sessions for QUIC.
//
// Three modes (SPEC.md §2.3), chosen once per endpoint:
//  - plaintext: an ephemeral self-signed certificate made at start-up; the
//    client verifies nothing. (QUIC always encrypts; "plaintext" only means
//    "unauthenticated", as Corrosion's quinn-plaintext.)
//  - tls: the server presents cert_file/key_file; the client verifies the
//    server against ca_file and the peer IP (SAN), or verifies nothing when
//    `insecure` is set.
//  - tls + client: mutual TLS. The server requires a client certificate and
//    verifies its chain against ca_file; the client presents client_cert_file.
//
// Invariants:
//  (1) Sessions are TLS 1.3 only, without the compat-mode session id
//      (RFC 9001 forbids it), and require the ALPN |alpn| on both sides: a
//      ClientHello without ALPN is refused by a hook (GNUTLS_ALPN_MANDATORY
//      alone accepts it).
//  (2) A session's ptr is the connection's ngtcp2_crypto_conn_ref, which the
//      ngtcp2 GnuTLS helper dereferences.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <gnutls/gnutls.h>

#include "core/result.hpp"

struct ngtcp2_crypto_conn_ref;

namespace patina::io {

struct QuicTlsConfig {
  bool plaintext = true;
  std::string cert_file;
  std::string key_file;
  std::optional<std::string> ca_file;
  bool insecure = false;
  // Mutual TLS when both are set.
  std::optional<std::string> client_cert_file;
  std::optional<std::string> client_key_file;
  std::string alpn = "patina/1";
};

class TlsContext {
 public:
  // Loads files (".der" means DER, anything else PEM) or makes the ephemeral
  // certificate. Errors: Errc::invalid_argument for a missing or malformed
  // file or an inconsistent mode (mutual TLS without ca_file, a verifying
  // client without ca_file and without insecure).
  static Result<std::shared_ptr<TlsContext>> create(QuicTlsConfig config);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A new server (client) session bound to |ref|. The caller owns the
  // session (gnutls_deinit). |peer_ip| is what the server certificate must
  // name when the client verifies; GnuTLS keeps a pointer to it, so it must
  // outlive the session.
  Result<gnutls_session_t> new_server_session(ngtcp2_crypto_conn_ref* ref) const;
  Result<gnutls_session_t> new_client_session(ngtcp2_crypto_conn_ref* ref, const std::string& peer_ip) const;

  bool mutual() const { return mutual_; }
  const QuicTlsConfig& config() const { return config_; }

 private:
  TlsContext() = default;
  Result<void> init();
  Result<void> common_session_setup(gnutls_session_t s) const;

  QuicTlsConfig config_;
  gnutls_certificate_credentials_t server_cred_ = nullptr;
  gnutls_certificate_credentials_t client_cred_ = nullptr;
  bool verify_server_ = false;
  bool mutual_ = false;
};

}  // namespace patina::io

#include "io/quic_tls.hpp"

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <fmt/format.h>

#include "io/tls_generate.hpp"

namespace patina::io {

namespace {

// TLS 1.3 only, QUIC-capable AEADs, no compat-mode session id (pitfall 4).
constexpr const char* priority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM:"
    "%DISABLE_TLS13_COMPAT_MODE";

gnutls_x509_crt_fmt_t format_of(const std::string& path) {
  return path.size() >= 4 && path.compare(path.size() - 4, 4, ".der") == 0 ? GNUTLS_X509_FMT_DER
                                                                           : GNUTLS_X509_FMT_PEM;
}

// GNUTLS_ALPN_MANDATORY lets a ClientHello without ALPN through (pitfall 5).
int require_alpn_hook(gnutls_session_t session, unsigned int, unsigned, unsigned int, const gnutls_datum_t*) {
  gnutls_datum_t alpn{};
  if (gnutls_alpn_get_selected_protocol(session, &alpn) != 0) return GNUTLS_E_NO_APPLICATION_PROTOCOL;
  return 0;
}

tl::unexpected<Error> tls_error(const std::string& what, int rc) {
  return make_error(Errc::invalid_argument, fmt::format("{}: {}", what, gnutls_strerror(rc)));
}

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::create(QuicTlsConfig config) {
  std::shared_ptr<TlsContext> ctx(new TlsContext());
  ctx->config_ = std::move(config);
  if (auto r = ctx->init(); !r) return tl::unexpected(r.error());
  return ctx;
}

TlsContext::~TlsContext() {
  if (server_cred_ != nullptr) gnutls_certificate_free_credentials(server_cred_);
  if (client_cred_ != nullptr) gnutls_certificate_free_credentials(client_cred_);
}

Result<void> TlsContext::init() {
  if (int rc = gnutls_certificate_allocate_credentials(&server_cred_); rc < 0) return tls_error("credentials", rc);
  // The client needs certificate credentials even when it presents nothing.
  if (int rc = gnutls_certificate_allocate_credentials(&client_cred_); rc < 0) return tls_error("credentials", rc);

  if (config_.plaintext) {
    auto pair = tls::make_self_signed();
    if (!pair) return tl::unexpected(pair.error());
    gnutls_datum_t cert{reinterpret_cast<unsigned char*>(pair->cert_pem.data()),
                        static_cast<unsigned>(pair->cert_pem.size())};
    gnutls_datum_t key{reinterpret_cast<unsigned char*>(pair->key_pem.data()),
                       static_cast<unsigned>(pair->key_pem.size())};
    int rc = gnutls_certificate_set_x509_key_mem2(server_cred_, &cert, &key, GNUTLS_X509_FMT_PEM, nullptr, 0);
    if (rc < 0) return tls_error("ephemeral certificate", rc);
    return {};
  }

  if (config_.cert_file.empty() || config_.key_file.empty()) {
    return make_error(Errc::invalid_argument, "gossip.tls needs cert_file and key_file (or gossip.plaintext = true)");
  }
  int rc = gnutls_certificate_set_x509_key_file2(server_cred_, config_.cert_file.c_str(), config_.key_file.c_str(),
                                                 format_of(config_.cert_file), nullptr, 0);
  if (rc < 0) return tls_error(fmt::format("server certificate {} / {}", config_.cert_file, config_.key_file), rc);

  if (config_.ca_file) {
    rc = gnutls_certificate_set_x509_trust_file(client_cred_, config_.ca_file->c_str(), format_of(*config_.ca_file));
    if (rc <= 0) return tls_error(fmt::format("ca_file {}", *config_.ca_file), rc == 0 ? GNUTLS_E_NO_CERTIFICATE_FOUND : rc);
    verify_server_ = !config_.insecure;
  } else if (!config_.insecure) {
    return make_error(Errc::invalid_argument, "gossip.tls without ca_file requires insecure = true");
  }

  if (config_.client_cert_file || config_.client_key_file) {
    if (!config_.client_cert_file || !config_.client_key_file) {
      return make_error(Errc::invalid_argument, "gossip.tls.client needs cert_file and key_file");
    }
    if (!config_.ca_file) return make_error(Errc::invalid_argument, "mutual TLS (gossip.tls.client) needs ca_file");
    rc = gnutls_certificate_set_x509_key_file2(client_cred_, config_.client_cert_file->c_str(),
                                               config_.client_key_file->c_str(),
                                               format_of(*config_.client_cert_file), nullptr, 0);
    if (rc < 0) return tls_error(fmt::format("client certificate {}", *config_.client_cert_file), rc);
    rc = gnutls_certificate_set_x509_trust_file(server_cred_, config_.ca_file->c_str(), format_of(*config_.ca_file));
    if (rc <= 0) return tls_error(fmt::format("ca_file {}", *config_.ca_file), rc == 0 ? GNUTLS_E_NO_CERTIFICATE_FOUND : rc);
    mutual_ = true;
  }
  return {};
}

Result<void> TlsContext::common_session_setup(gnutls_session_t s) const {
  if (int rc = gnutls_priority_set_direct(s, priority, nullptr); rc < 0) return tls_error("priority", rc);
  gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>(config_.alpn.data())),
                      static_cast<unsigned>(config_.alpn.size())};
  if (int rc = gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY); rc < 0) return tls_error("alpn", rc);
  return {};
}

Result<gnutls_session_t> TlsContext::new_server_session(ngtcp2_crypto_conn_ref* ref) const {
  gnutls_session_t s = nullptr;
  if (int rc = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_END_OF_EARLY_DATA); rc < 0) return tls_error("init", rc);
  auto fail = [&](tl::unexpected<Error> e) -> Result<gnutls_session_t> {
    gnutls_deinit(s);
    return e;
  };
  if (ngtcp2_crypto_gnutls_configure_server_session(s) != 0) {
    return fail(make_error(Errc::internal, "ngtcp2_crypto_gnutls_configure_server_session failed"));
  }
  if (auto r = common_session_setup(s); !r) return fail(tl::unexpected(r.error()));
  if (int rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, server_cred_); rc < 0) {
    return fail(tls_error("credentials_set", rc));
  }
  gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_POST, require_alpn_hook);
  if (mutual_) {
    gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    // REQUIRE alone does not verify the chain (pitfall 6).
    gnutls_session_set_verify_cert(s, nullptr, 0);
  }
  gnutls_session_set_ptr(s, ref);
  return s;
}

Result<gnutls_session_t> TlsContext::new_client_session(ngtcp2_crypto_conn_ref* ref, const std::string& peer_ip) const {
  gnutls_session_t s = nullptr;
  if (int rc = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA); rc < 0) return tls_error("init", rc);
  auto fail = [&](tl::unexpected<Error> e) -> Result<gnutls_session_t> {
    gnutls_deinit(s);
    return e;
  };
  if (ngtcp2_crypto_gnutls_configure_client_session(s) != 0) {
    return fail(make_error(Errc::internal, "ngtcp2_crypto_gnutls_configure_client_session failed"));
  }
  if (auto r = common_session_setup(s); !r) return fail(tl::unexpected(r.error()));
  if (int rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, client_cred_); rc < 0) {
    return fail(tls_error("credentials_set", rc));
  }
  if (verify_server_) {
    // The hostname is the peer IP: GnuTLS matches it against IP SANs.
    gnutls_session_set_verify_cert(s, peer_ip.c_str(), 0);
  }
  gnutls_session_set_ptr(s, ref);
  return s;
}

}  // namespace patina::io

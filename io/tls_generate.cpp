#include "io/tls_generate.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

namespace patina::io::tls {

namespace {

struct CrtDeleter {
  void operator()(gnutls_x509_crt_int* c) const { gnutls_x509_crt_deinit(c); }
};
struct KeyDeleter {
  void operator()(gnutls_x509_privkey_int* k) const { gnutls_x509_privkey_deinit(k); }
};
using Crt = std::unique_ptr<gnutls_x509_crt_int, CrtDeleter>;
using Key = std::unique_ptr<gnutls_x509_privkey_int, KeyDeleter>;

tl::unexpected<Error> gnutls_failure(const char* what, int rc) {
  return make_error(Errc::internal, fmt::format("{}: {}", what, gnutls_strerror(rc)));
}

Result<Key> new_key() {
  gnutls_x509_privkey_t raw = nullptr;
  if (int rc = gnutls_x509_privkey_init(&raw); rc < 0) return gnutls_failure("privkey_init", rc);
  Key key(raw);
  int rc = gnutls_x509_privkey_generate(raw, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  if (rc < 0) return gnutls_failure("privkey_generate", rc);
  return key;
}

Result<Crt> new_crt() {
  gnutls_x509_crt_t raw = nullptr;
  if (int rc = gnutls_x509_crt_init(&raw); rc < 0) return gnutls_failure("crt_init", rc);
  return Crt(raw);
}

// Fields every certificate we make shares: version, serial, validity,
// subject CN, public key and subject key id.
Result<void> fill_common(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, const std::string& cn) {
  int rc = gnutls_x509_crt_set_version(crt, 3);
  if (rc < 0) return gnutls_failure("set_version", rc);
  unsigned char serial[16];
  gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial);
  serial[0] &= 0x7f;  // a positive INTEGER
  if ((rc = gnutls_x509_crt_set_serial(crt, serial, sizeof serial)) < 0) return gnutls_failure("set_serial", rc);
  std::time_t now = std::time(nullptr);
  // Back-dated an hour so a peer with a slightly slow clock accepts it.
  if ((rc = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0) return gnutls_failure("activation", rc);
  if ((rc = gnutls_x509_crt_set_expiration_time(crt, now + 10L * 365 * 24 * 3600)) < 0) {
    return gnutls_failure("expiration", rc);
  }
  rc = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn.data(), static_cast<unsigned>(cn.size()));
  if (rc < 0) return gnutls_failure("set_dn", rc);
  if ((rc = gnutls_x509_crt_set_key(crt, key)) < 0) return gnutls_failure("set_key", rc);
  unsigned char id[64];
  std::size_t id_size = sizeof id;
  if ((rc = gnutls_x509_crt_get_key_id(crt, 0, id, &id_size)) < 0) return gnutls_failure("get_key_id", rc);
  if ((rc = gnutls_x509_crt_set_subject_key_id(crt, id, id_size)) < 0) return gnutls_failure("subject_key_id", rc);
  return {};
}

Result<PemPair> export_pair(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key) {
  gnutls_datum_t d{};
  int rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d);
  if (rc < 0) return gnutls_failure("crt_export", rc);
  PemPair out;
  out.cert_pem.assign(reinterpret_cast<const char*>(d.data), d.size);
  gnutls_free(d.data);
  d = {};
  rc = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, nullptr, GNUTLS_PKCS_PLAIN, &d);
  if (rc < 0) return gnutls_failure("privkey_export", rc);
  out.key_pem.assign(reinterpret_cast<const char*>(d.data), d.size);
  gnutls_free(d.data);
  return out;
}

struct Issuer {
  Crt crt;
  Key key;
};

Result<Issuer> import_issuer(const PemPair& ca) {
  auto crt = new_crt();
  if (!crt) return tl::unexpected(crt.error());
  gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(ca.cert_pem.data())),
                   static_cast<unsigned>(ca.cert_pem.size())};
  if (int rc = gnutls_x509_crt_import(crt->get(), &d, GNUTLS_X509_FMT_PEM); rc < 0) {
    return make_error(Errc::invalid_argument, fmt::format("CA certificate: {}", gnutls_strerror(rc)));
  }
  gnutls_x509_privkey_t raw = nullptr;
  if (int rc = gnutls_x509_privkey_init(&raw); rc < 0) return gnutls_failure("privkey_init", rc);
  Key key(raw);
  gnutls_datum_t k{reinterpret_cast<unsigned char*>(const_cast<char*>(ca.key_pem.data())),
                   static_cast<unsigned>(ca.key_pem.size())};
  if (int rc = gnutls_x509_privkey_import2(raw, &k, GNUTLS_X509_FMT_PEM, nullptr, 0); rc < 0) {
    return make_error(Errc::invalid_argument, fmt::format("CA key: {}", gnutls_strerror(rc)));
  }
  return Issuer{std::move(*crt), std::move(key)};
}

Result<PemPair> make_leaf(const PemPair& ca, const std::string& cn, const std::string* address, const char* purpose) {
  auto issuer = import_issuer(ca);
  if (!issuer) return tl::unexpected(issuer.error());
  auto key = new_key();
  if (!key) return tl::unexpected(key.error());
  auto crt = new_crt();
  if (!crt) return tl::unexpected(crt.error());
  gnutls_x509_crt_t c = crt->get();
  if (auto r = fill_common(c, key->get(), cn); !r) return tl::unexpected(r.error());
  int rc = gnutls_x509_crt_set_basic_constraints(c, 0, -1);
  if (rc < 0) return gnutls_failure("basic_constraints", rc);
  if ((rc = gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0) return gnutls_failure("key_usage", rc);
  if ((rc = gnutls_x509_crt_set_key_purpose_oid(c, purpose, 0)) < 0) return gnutls_failure("key_purpose", rc);
  if (address != nullptr) {
    unsigned char raw[16];
    if (inet_pton(AF_INET, address->c_str(), raw) == 1) {
      rc = gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_IPADDRESS, raw, 4, GNUTLS_FSAN_SET);
    } else if (inet_pton(AF_INET6, address->c_str(), raw) == 1) {
      rc = gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_IPADDRESS, raw, 16, GNUTLS_FSAN_SET);
    } else {
      rc = gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_DNSNAME, address->data(),
                                                static_cast<unsigned>(address->size()), GNUTLS_FSAN_SET);
    }
    if (rc < 0) return gnutls_failure("subject_alt_name", rc);
  }
  unsigned char id[64];
  std::size_t id_size = sizeof id;
  if (gnutls_x509_crt_get_subject_key_id(issuer->crt.get(), id, &id_size, nullptr) >= 0) {
    gnutls_x509_crt_set_authority_key_id(c, id, id_size);
  }
  if ((rc = gnutls_x509_crt_sign2(c, issuer->crt.get(), issuer->key.get(), GNUTLS_DIG_SHA256, 0)) < 0) {
    return gnutls_failure("sign", rc);
  }
  return export_pair(c, key->get());
}

Result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::invalid_argument, fmt::format("cannot read {}", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<void> write_file(const std::filesystem::path& path, const std::string& text, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return make_error(Errc::io, fmt::format("cannot write {}: {}", path.string(), std::strerror(errno)));
  ::fchmod(fd, mode);  // O_CREAT's mode does not apply to an existing file
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return make_error(Errc::io, fmt::format("cannot write {}: {}", path.string(), std::strerror(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return {};
}

Result<std::vector<std::filesystem::path>> write_pair(const std::filesystem::path& dir, const PemPair& pair,
                                                      const char* cert_name, const char* key_name) {
  std::vector<std::filesystem::path> paths{dir / cert_name, dir / key_name};
  if (auto r = write_file(paths[0], pair.cert_pem, 0644); !r) return tl::unexpected(r.error());
  if (auto r = write_file(paths[1], pair.key_pem, 0600); !r) return tl::unexpected(r.error());
  return paths;
}

Result<PemPair> read_ca(const std::filesystem::path& cert_file, const std::filesystem::path& key_file) {
  auto cert = read_file(cert_file);
  if (!cert) return tl::unexpected(cert.error());
  auto key = read_file(key_file);
  if (!key) return tl::unexpected(key.error());
  return PemPair{std::move(*cert), std::move(*key)};
}

}  // namespace

Result<PemPair> make_ca(std::string common_name) {
  auto key = new_key();
  if (!key) return tl::unexpected(key.error());
  auto crt = new_crt();
  if (!crt) return tl::unexpected(crt.error());
  gnutls_x509_crt_t c = crt->get();
  if (auto r = fill_common(c, key->get(), common_name); !r) return tl::unexpected(r.error());
  int rc = gnutls_x509_crt_set_basic_constraints(c, 1, -1);
  if (rc < 0) return gnutls_failure("basic_constraints", rc);
  rc = gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN | GNUTLS_KEY_DIGITAL_SIGNATURE);
  if (rc < 0) return gnutls_failure("key_usage", rc);
  if ((rc = gnutls_x509_crt_sign2(c, c, key->get(), GNUTLS_DIG_SHA256, 0)) < 0) return gnutls_failure("sign", rc);
  return export_pair(c, key->get());
}

Result<PemPair> make_server_cert(const PemPair& ca, std::string address) {
  return make_leaf(ca, address, &address, GNUTLS_KP_TLS_WWW_SERVER);
}

Result<PemPair> make_client_cert(const PemPair& ca, std::string common_name) {
  return make_leaf(ca, common_name, nullptr, GNUTLS_KP_TLS_WWW_CLIENT);
}

Result<PemPair> make_self_signed(std::string common_name) {
  auto key = new_key();
  if (!key) return tl::unexpected(key.error());
  auto crt = new_crt();
  if (!crt) return tl::unexpected(crt.error());
  gnutls_x509_crt_t c = crt->get();
  if (auto r = fill_common(c, key->get(), common_name); !r) return tl::unexpected(r.error());
  int rc = gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE);
  if (rc < 0) return gnutls_failure("key_usage", rc);
  if ((rc = gnutls_x509_crt_sign2(c, c, key->get(), GNUTLS_DIG_SHA256, 0)) < 0) return gnutls_failure("sign", rc);
  return export_pair(c, key->get());
}

Result<std::vector<std::filesystem::path>> generate_ca_files(const std::filesystem::path& dir) {
  auto ca = make_ca();
  if (!ca) return tl::unexpected(ca.error());
  return write_pair(dir, *ca, "ca_cert.pem", "ca_key.pem");
}

Result<std::vector<std::filesystem::path>> generate_server_files(const std::filesystem::path& dir,
                                                                 std::string address,
                                                                 const std::filesystem::path& ca_cert_file,
                                                                 const std::filesystem::path& ca_key_file) {
  auto ca = read_ca(ca_cert_file, ca_key_file);
  if (!ca) return tl::unexpected(ca.error());
  auto pair = make_server_cert(*ca, std::move(address));
  if (!pair) return tl::unexpected(pair.error());
  return write_pair(dir, *pair, "server_cert.pem", "server_key.pem");
}

Result<std::vector<std::filesystem::path>> generate_client_files(const std::filesystem::path& dir,
                                                                 const std::filesystem::path& ca_cert_file,
                                                                 const std::filesystem::path& ca_key_file) {
  auto ca = read_ca(ca_cert_file, ca_key_file);
  if (!ca) return tl::unexpected(ca.error());
  auto pair = make_client_cert(*ca);
  if (!pair) return tl::unexpected(pair.error());
  return write_pair(dir, *pair, "client_cert.pem", "client_key.pem");
}

}  // namespace patina::io::tls

// io/tls_generate.hpp — certificates for gossip TLS, made with GnuTLS x509.
//
// Backs `patina tls ca|server|client generate` (SPEC.md §3.2) and the
// ephemeral certificate of `gossip.plaintext = true`. Keys are ECDSA P-256,
// written as unencrypted PKCS#8 PEM; certificates are X.509 v3 PEM, signed
// with SHA-256. File names match Corrosion's so existing configs keep working:
//   ca_cert.pem / ca_key.pem, server_cert.pem / server_key.pem,
//   client_cert.pem / client_key.pem.
//
// Invariants:
//  (1) A server certificate names its address as an IP SAN (or a DNS SAN when
//      given a name), which is what clients verify the peer IP against.
//  (2) Key files are created with mode 0600; an existing file is replaced.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace patina::io::tls {

struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed CA certificate (basicConstraints CA:TRUE, keyCertSign).
Result<PemPair> make_ca(std::string common_name = "Patina CA");
// A server certificate for |address| (an IP, or a DNS name) signed by |ca|.
Result<PemPair> make_server_cert(const PemPair& ca, std::string address);
// A client certificate (extendedKeyUsage clientAuth) signed by |ca|.
Result<PemPair> make_client_cert(const PemPair& ca, std::string common_name = "patina client");
// A self-signed leaf certificate, for plaintext mode where nobody verifies.
Result<PemPair> make_self_signed(std::string common_name = "patina");

// The CLI verbs. Each writes its two files into |dir| and returns their paths
// (certificate first). Errors: Errc::invalid_argument for unreadable or
// malformed CA files, Errc::io when a file cannot be written.
Result<std::vector<std::filesystem::path>> generate_ca_files(const std::filesystem::path& dir);
Result<std::vector<std::filesystem::path>> generate_server_files(const std::filesystem::path& dir,
                                                                 std::string address,
                                                                 const std::filesystem::path& ca_cert_file,
                                                                 const std::filesystem::path& ca_key_file);
Result<std::vector<std::filesystem::path>> generate_client_files(const std::filesystem::path& dir,
                                                                 const std::filesystem::path& ca_cert_file,
                                                                 const std::filesystem::path& ca_key_file);

}  // namespace patina::io::tls

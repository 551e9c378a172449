#include "server/tls.h"

#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace peftd::server {
namespace {

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("--", flag, ": cannot read \"", path, "\": ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", path, "\" is not a PEM file (no -----BEGIN line)"));
  }
  return ss.str();
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unreadable";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

BioPtr MemBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}

// The first certificate of `pem` (the leaf of a chain), after checking every one parses.
absl::StatusOr<X509Ptr> ParseCertificates(absl::string_view flag, const std::string& path,
                                          const std::string& pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr first(nullptr, &X509_free);
  int count = 0;
  while (true) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (cert == nullptr) break;
    ++count;
    if (first == nullptr) {
      first.reset(cert);
    } else {
      X509_free(cert);
    }
  }
  ERR_clear_error();  // the loop ends on "no start line"
  if (count == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", path, "\" holds no PEM certificate"));
  }
  return first;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options) {
  if (options.tls_cert.empty()) {
    if (!options.tls_key.empty() || !options.tls_client_ca.empty()) {
      return absl::InvalidArgumentError("--tls-cert: required with --tls-key and --tls-client-ca");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-key: required with --tls-cert");
  }
  ASSIGN_OR_RETURN(std::string cert_pem, ReadPemFile("tls-cert", options.tls_cert));
  ASSIGN_OR_RETURN(std::string key_pem, ReadPemFile("tls-key", options.tls_key));
  ASSIGN_OR_RETURN(X509Ptr leaf, ParseCertificates("tls-cert", options.tls_cert, cert_pem));

  BioPtr key_bio = MemBio(key_pem);
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-key: \"", options.tls_key,
                                                   "\" holds no unencrypted PEM private key (",
                                                   OpenSslError(), ")"));
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls-key: \"", options.tls_key,
                                                   "\" is not the private key of the "
                                                   "certificate in --tls-cert \"",
                                                   options.tls_cert, "\""));
  }

  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  if (!options.tls_client_ca.empty()) {
    ASSIGN_OR_RETURN(std::string ca_pem, ReadPemFile("tls-client-ca", options.tls_client_ca));
    RETURN_IF_ERROR(ParseCertificates("tls-client-ca", options.tls_client_ca, ca_pem).status());
    ssl.pem_root_certs = ca_pem;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace peftd::server

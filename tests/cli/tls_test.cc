// peftctl over TLS and mutual TLS, with certificates made by the openssl CLI at test time and the
// fake JobService serving them on 127.0.0.1.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "fake_job_service.h"

namespace peftd::cli {
namespace {

namespace fs = std::filesystem;
using testing::FakeServer;
using testing::RunCli;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, all EC.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::TempDir("tls"));
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script = absl::StrCat(
        "set -e; cd ", dir_->string(), "\n", "openssl req -x509 ", key,
        " -keyout ca.key -out ca.pem -days 2 -subj /CN=peftctl-test-ca\n", "openssl req ", key,
        " -keyout server.key -out server.csr -subj /CN=localhost\n",
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:peftd.test\\n' > san.ext\n",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile san.ext -out server.pem\n",
        "openssl req ", key, " -keyout client.key -out client.csr -subj /CN=client\n",
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-out client.pem\n");
    std::ofstream(*dir_ / "make.sh") << script;
    openssl_ok_ = std::system(absl::StrCat("sh ", dir_->string(), "/make.sh > ", dir_->string(),
                                           "/make.log 2>&1")
                                  .c_str()) == 0;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    ASSERT_TRUE(openssl_ok_) << "openssl could not make the test certificates: "
                             << ReadFile(*dir_ / "make.log");
  }
  static std::string P(const std::string& name) { return (*dir_ / name).string(); }
  static std::shared_ptr<grpc::ServerCredentials> ServerCredentials(bool require_client_cert) {
    grpc::SslServerCredentialsOptions options(
        require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    options.pem_root_certs = ReadFile(P("ca.pem"));
    options.pem_key_cert_pairs.push_back({ReadFile(P("server.key")), ReadFile(P("server.pem"))});
    return grpc::SslServerCredentials(options);
  }

  static fs::path* dir_;
  static bool openssl_ok_;
};
fs::path* TlsTest::dir_ = nullptr;
bool TlsTest::openssl_ok_ = false;

TEST_F(TlsTest, ServerCertificateCheckedAgainstTheCa) {
  FakeServer server(ServerCredentials(false));
  auto r = RunCli({"--server", server.address(), "--tls-ca", P("ca.pem"), "get", "j-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  // The name in the certificate can be chosen when the address does not carry it.
  r = RunCli({"--server", server.address(), "--tls-ca", P("ca.pem"), "--tls-server-name",
              "peftd.test", "get", "j-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = RunCli({"--server", server.address(), "--tls-ca", P("ca.pem"), "--tls-server-name",
              "not-in-the-cert.test", "get", "j-1"});
  EXPECT_EQ(r.code, 6) << r.err;
  // Plaintext against a TLS server does not get through.
  r = RunCli({"--server", server.address(), "--timeout", "5", "get", "j-1"});
  EXPECT_EQ(r.code, 6) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "if the server uses TLS, pass --tls-ca")) << r.err;
}

TEST_F(TlsTest, MutualTlsNeedsTheClientCertificate) {
  FakeServer server(ServerCredentials(true));
  auto r = RunCli({"--server", server.address(), "--tls-ca", P("ca.pem"), "--tls-cert",
                   P("client.pem"), "--tls-key", P("client.key"), "get", "j-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = RunCli({"--server", server.address(), "--tls-ca", P("ca.pem"), "get", "j-1"});
  EXPECT_EQ(r.code, 6) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "with TLS, also check --tls-ca")) << r.err;
}

TEST_F(TlsTest, UnreadableFilesNamedBeforeAnyCall) {
  // A missing file is "not found" (3), as every missing file named on the command line; a flag
  // without its partner is a usage error (2).
  auto r = RunCli({"--server", "127.0.0.1:1", "--tls-ca", P("nope.pem"), "get", "j-1"});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(absl::StrContains(r.err, "--tls-ca: cannot read")) << r.err;
  r = RunCli({"--server", "127.0.0.1:1", "--tls-cert", P("client.pem"), "get", "j-1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "needs its key")) << r.err;
}

}  // namespace
}  // namespace peftd::cli

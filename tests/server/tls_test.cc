// TLS and mutual TLS with certificates made by the openssl CLI at test time, served by a real gRPC
// server and called by a real client on 127.0.0.1; and the startup errors that name the file.
#include "server/tls.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "peftd/v1/worker.grpc.pb.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class EchoService final : public v1::WorkerService::Service {
  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest*,
                        v1::RegisterResponse* resp) override {
    resp->set_heartbeat_interval_ms(42);
    return grpc::Status::OK;
  }
};

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for 127.0.0.1/localhost signed by it, a client certificate signed
// by it, and a client certificate from an unrelated CA. EC keys: generated in milliseconds.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / absl::StrCat("peftd_tls_test_", ::getpid()));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    const std::string d = dir_->string();
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script = absl::StrCat(
        "set -e; cd ", d, "\n", "openssl req -x509 ", key,
        " -keyout ca.key -out ca.pem -days 2 -subj /CN=peftd-test-ca\n", "openssl req -x509 ", key,
        " -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other-ca\n", "openssl req ", key,
        " -keyout server.key -out server.csr -subj /CN=localhost\n",
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext\n",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile san.ext -out server.pem\n",
        "openssl req ", key, " -keyout client.key -out client.csr -subj /CN=client\n",
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-out client.pem\n",
        "openssl req ", key, " -keyout rogue.key -out rogue.csr -subj /CN=rogue\n",
        "openssl x509 -req -in rogue.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial "
        "-days 2 -out rogue.pem\n");
    std::ofstream(d + "/make.sh") << script;
    openssl_ok_ =
        std::system(absl::StrCat("sh ", d, "/make.sh > ", d, "/make.log 2>&1").c_str()) == 0;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    ASSERT_TRUE(openssl_ok_) << "openssl could not make the test certificates (Debian package "
                                "`openssl`, in scripts/install-deps.sh): "
                             << ReadFile(*dir_ / "make.log");
  }
  static std::string P(const std::string& name) { return (*dir_ / name).string(); }

  // Starts a server with `options`' credentials on a free port; returns the port.
  int Serve(const ServerOptions& options) {
    auto creds = MakeServerCredentials(options);
    EXPECT_TRUE(creds.ok()) << creds.status();
    if (!creds.ok()) return 0;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    return port;
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  static grpc::Status Call(int port, std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    // The certificate is for 127.0.0.1 and localhost; dial by IP, verify the name "localhost".
    args.SetSslTargetNameOverride("localhost");
    auto channel =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), std::move(creds), args);
    auto stub = v1::WorkerService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RegisterRequest req;
    v1::RegisterResponse resp;
    grpc::Status st = stub->Register(&ctx, req, &resp);
    if (st.ok() && resp.heartbeat_interval_ms() != 42) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "wrong reply");
    }
    return st;
  }
  static std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& client_cert = "",
                                                       const std::string& client_key = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadFile(P("ca.pem"));
    if (!client_cert.empty()) {
      o.pem_cert_chain = ReadFile(P(client_cert));
      o.pem_private_key = ReadFile(P(client_key));
    }
    return grpc::SslCredentials(o);
  }

  static fs::path* dir_;
  static bool openssl_ok_;
  EchoService service_;
  std::unique_ptr<grpc::Server> server_;
};

fs::path* TlsTest::dir_ = nullptr;
bool TlsTest::openssl_ok_ = false;

TEST_F(TlsTest, NoCertificateMeansInsecure) {
  const int port = Serve(ServerOptions{});
  EXPECT_TRUE(Call(port, grpc::InsecureChannelCredentials()).ok());
}

TEST_F(TlsTest, ServerTlsAcceptsTlsClientsAndRefusesPlaintext) {
  ServerOptions o;
  o.tls_cert = P("server.pem");
  o.tls_key = P("server.key");
  const int port = Serve(o);
  EXPECT_TRUE(Call(port, Tls()).ok());
  // A client with certificates (unrequested) still gets through.
  EXPECT_TRUE(Call(port, Tls("client.pem", "client.key")).ok());
  EXPECT_FALSE(Call(port, grpc::InsecureChannelCredentials()).ok());
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  ServerOptions o;
  o.tls_cert = P("server.pem");
  o.tls_key = P("server.key");
  o.tls_client_ca = P("ca.pem");
  const int port = Serve(o);
  EXPECT_TRUE(Call(port, Tls("client.pem", "client.key")).ok());
  EXPECT_FALSE(Call(port, Tls()).ok()) << "no client certificate";
  EXPECT_FALSE(Call(port, Tls("rogue.pem", "rogue.key")).ok()) << "certificate of another CA";
}

TEST_F(TlsTest, BadFilesAreRefusedAtStartupNamingFlagAndFile) {
  auto refused = [](const ServerOptions& o, absl::StatusCode code, const std::string& needle) {
    auto c = MakeServerCredentials(o);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), code) << c.status();
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(needle));
  };
  ServerOptions o;
  o.tls_cert = P("missing.pem");
  o.tls_key = P("server.key");
  refused(o, absl::StatusCode::kNotFound, "--tls-cert");
  refused(o, absl::StatusCode::kNotFound, "missing.pem");

  o.tls_cert = P("make.sh");  // not PEM
  refused(o, absl::StatusCode::kInvalidArgument, "--tls-cert");

  o.tls_cert = P("server.pem");
  o.tls_key = P("client.key");  // a key, but not this certificate's
  refused(o, absl::StatusCode::kInvalidArgument, "not the private key");

  o.tls_key = P("server.pem");  // a certificate where the key should be
  refused(o, absl::StatusCode::kInvalidArgument, "--tls-key");

  o.tls_key = P("server.key");
  o.tls_client_ca = P("server.key");  // no certificate in it
  refused(o, absl::StatusCode::kInvalidArgument, "--tls-client-ca");

  ServerOptions key_only;
  key_only.tls_key = P("server.key");
  refused(key_only, absl::StatusCode::kInvalidArgument, "--tls-cert");
}

}  // namespace
}  // namespace peftd::server

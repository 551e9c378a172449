// The bearer-token gate: unit cases on raw metadata, then a real gRPC server and client on
// loopback, with the metadata sent exactly as worker/lease_loop.cc sends it.
#include "server/auth.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "common/status_grpc.h"
#include "peftd/v1/worker.grpc.pb.h"

namespace peftd::server {
namespace {

using ::testing::HasSubstr;

absl::Status Check(const std::multimap<std::string, std::string>& headers,
                   const std::string& token) {
  std::multimap<grpc::string_ref, grpc::string_ref> md;
  for (const auto& [k, v] : headers) md.emplace(k, v);
  return AuthorizeMetadata(md, token);
}

TEST(Authorize, NoTokenConfiguredLetsEverythingThrough) {
  EXPECT_TRUE(Check({}, "").ok());
  EXPECT_TRUE(Check({{"authorization", "Bearer whatever"}}, "").ok());
}

TEST(Authorize, RightTokenPasses) {
  EXPECT_TRUE(Check({{"authorization", "Bearer s3cret"}}, "s3cret").ok());
  // RFC 7235: the scheme is case-insensitive.
  EXPECT_TRUE(Check({{"authorization", "bearer s3cret"}}, "s3cret").ok());
  EXPECT_TRUE(Check({{"authorization", "BEARER  s3cret "}}, "s3cret").ok());
  EXPECT_TRUE(Check({{"other", "x"}, {"authorization", "Bearer s3cret"}}, "s3cret").ok());
}

TEST(Authorize, MissingOrWrongTokenIsUnauthenticatedAndSaysHowToPassIt) {
  for (const auto& headers : std::vector<std::multimap<std::string, std::string>>{
           {},
           {{"authorization", "Bearer wrong"}},
           {{"authorization", "Bearer s3cre"}},
           {{"authorization", "Bearer s3cretX"}},
           {{"authorization", "Bearer "}},
           {{"authorization", "Basic czNjcmV0"}},
           {{"authorization", "s3cret"}},
           {{"authorization", "Bearer s3cret"}, {"authorization", "Bearer wrong"}},
           {{"x-token", "s3cret"}}}) {
    const absl::Status st = Check(headers, "s3cret");
    ASSERT_EQ(st.code(), absl::StatusCode::kUnauthenticated)
        << (headers.empty() ? "(none)" : headers.begin()->second);
    EXPECT_THAT(std::string(st.message()), HasSubstr("peftctl --token"));
    EXPECT_THAT(std::string(st.message()), HasSubstr("PEFTD_TOKEN"));
    // The expected token never leaks into the message.
    EXPECT_THAT(std::string(st.message()), ::testing::Not(HasSubstr("s3cret")));
  }
}

TEST(ConstantTimeEquals, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
}

// A WorkerService whose Register is gated like every real handler.
class GatedService final : public v1::WorkerService::Service {
 public:
  explicit GatedService(std::string token) : token_(std::move(token)) {}
  grpc::Status Register(grpc::ServerContext* ctx, const v1::RegisterRequest*,
                        v1::RegisterResponse* resp) override {
    const absl::Status st = Authorize(*ctx, token_);
    if (!st.ok()) return ToGrpcStatus(st);
    ++calls;
    resp->set_heartbeat_interval_ms(1234);
    return grpc::Status::OK;
  }
  int calls = 0;

 private:
  std::string token_;
};

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::WorkerService::NewStub(channel);
  }
  void TearDown() override { server_->Shutdown(); }

  grpc::Status Call(const std::string& token) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    // What worker/lease_loop.cc's SetupContext does.
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::RegisterRequest req;
    v1::RegisterResponse resp;
    return stub_->Register(&ctx, req, &resp);
  }

  GatedService service_{"tok-123"};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
};

TEST_F(AuthServerTest, TheLeaseLoopsMetadataIsAcceptedAndOthersRefused) {
  EXPECT_TRUE(Call("tok-123").ok());
  const grpc::Status none = Call("");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(none.error_message(), HasSubstr("--token"));
  EXPECT_EQ(Call("tok-124").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(service_.calls, 1);
}

}  // namespace
}  // namespace peftd::server

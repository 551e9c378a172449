// The client channel: insecure by default, TLS when any tls_* option is set, unreadable TLS files
// named in the error. The bearer token reaching a server is tested in tests/cli/commands_test.cc.
#include "common/grpc_channel.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace peftd {
namespace {

TEST(GrpcChannel, InsecureUnlessTlsIsAsked) {
  ChannelOptions o;
  o.address = "127.0.0.1:1";
  EXPECT_FALSE(UsesTls(o));
  EXPECT_TRUE(MakeChannelOrError(o).ok());
  EXPECT_NE(MakeChannel(o), nullptr);
  o.tls_server_name = "peftd.example";
  EXPECT_TRUE(UsesTls(o));
  EXPECT_TRUE(MakeChannelOrError(o).ok());  // default roots
}

TEST(GrpcChannel, UnreadableTlsFilesAreNamed) {
  ChannelOptions o;
  o.address = "127.0.0.1:1";
  o.tls_ca_file = "/nonexistent/ca.pem";
  auto channel = MakeChannelOrError(o);
  ASSERT_FALSE(channel.ok());
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kNotFound);  // peftctl exit 3
  EXPECT_TRUE(absl::StrContains(channel.status().message(), "--tls-ca"));
  EXPECT_TRUE(absl::StrContains(channel.status().message(), "/nonexistent/ca.pem"));
  // Never a silent fallback to plaintext: the channel still exists, but is a TLS one.
  EXPECT_NE(MakeChannel(o), nullptr);
  ChannelOptions half;
  half.address = "127.0.0.1:1";
  half.tls_cert_file = "/tmp/cert.pem";
  EXPECT_TRUE(absl::StrContains(MakeChannelOrError(half).status().message(), "needs its key"));
}

}  // namespace
}  // namespace peftd

// Field violations decoded from grpc-status-details-bin: google.rpc.BadRequest and
// peftd.v1.DatasetLineError, in order; anything else (or garbage) yields none.
#include "clients/cli/rpc_error_details.h"

#include <gtest/gtest.h>

#include "fake_job_service.h"

namespace peftd::cli {
namespace {

TEST(FieldViolations, BadRequestInOrder) {
  std::string details = testing::BadRequestDetails(
      3, "2 bad lines", {{"line 2: text", "missing"}, {"", "file is empty after line 9"}});
  auto v = FieldViolations(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "x", details));
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].field, "line 2: text");
  EXPECT_EQ(v[0].description, "missing");
  EXPECT_EQ(v[1].field, "");
  EXPECT_EQ(v[1].description, "file is empty after line 9");
}

TEST(FieldViolations, DatasetLineErrors) {
  v1::DatasetLineError e;
  e.set_line(7);
  e.set_field("messages[1].role");
  e.set_reason("must be system, user or assistant");
  google::rpc::Status status;
  auto* any = status.add_details();
  any->set_type_url("type.googleapis.com/peftd.v1.DatasetLineError");
  any->set_value(e.SerializeAsString());
  std::string details = status.SerializeAsString();
  auto v = FieldViolations(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "x", details));
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].field, "line 7: messages[1].role");
  EXPECT_EQ(v[0].description, "must be system, user or assistant");
}

TEST(FieldViolations, NoneWithoutOrWithUnreadableDetails) {
  EXPECT_TRUE(FieldViolations(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "x")).empty());
  EXPECT_TRUE(FieldViolations(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "x", "\xff\xff\xff"))
                  .empty());
}

// A spec refusal as peftd sends it: the message starts with the field, the violation repeats it.
TEST(FailOutput, NoRepeatedLines) {
  testing::FakeServer server;
  std::string details =
      testing::BadRequestDetails(3, "lora.r: must be >= 1", {{"lora.r", "lora.r: must be >= 1"}});
  server.service.forced =
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lora.r: must be >= 1", details);
  auto r = testing::RunCli({"--server", server.address(), "get", "j-1"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.err, "error: getting job j-1: lora.r: must be >= 1\n");
  // As peftd sends spec refusals: the message is "field: description".
  details = testing::BadRequestDetails(3, "lora.r: must be >= 1, got -3",
                                       {{"lora.r", "must be >= 1, got -3"}});
  server.service.forced =
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lora.r: must be >= 1, got -3", details);
  r = testing::RunCli({"--server", server.address(), "get", "j-1"});
  EXPECT_EQ(r.err, "error: getting job j-1: lora.r: must be >= 1, got -3\n");
  // A violation whose description does not name its field gets the field in front.
  details = testing::BadRequestDetails(3, "bad spec", {{"max_steps", "must be >= 0"}});
  server.service.forced = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad spec", details);
  r = testing::RunCli({"--server", server.address(), "get", "j-1"});
  EXPECT_EQ(r.err, "error: getting job j-1: bad spec\n  max_steps: must be >= 0\n");
}

}  // namespace
}  // namespace peftd::cli

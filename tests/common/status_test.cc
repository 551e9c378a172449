#include "common/status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/status_grpc.h"

namespace peftd {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(auto quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacros, AssignOrReturnPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Quarter(3).status().message(), "odd");
}

TEST(StatusMacros, ReturnIfError) {
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_EQ(CheckEven(3).code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusMacros, Annotate) {
  EXPECT_EQ(Annotate(absl::NotFoundError("x"), "ctx").message(), "ctx: x");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
}

TEST(StatusGrpc, EveryCanonicalCodeMapsToTheSameGrpcCode) {
  const std::pair<absl::StatusCode, grpc::StatusCode> kPairs[] = {
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const auto& [absl_code, grpc_code] : kPairs) {
    absl::Status s(absl_code, "message for the user");
    grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(g.error_code(), grpc_code) << s;
    EXPECT_EQ(g.error_message(), "message for the user");
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

// A message echoing a 1 MiB value would exceed the client's 8 KiB trailer limit and arrive as
// RESOURCE_EXHAUSTED: it is cut, on a UTF-8 boundary, and says by how much.
TEST(Status, GrpcMessagesAndDetailsFitInTrailers) {
  const std::string huge = "job 'é" + std::string(1 << 20, 'x') + "' not found";
  absl::Status s = absl::NotFoundError(huge);
  s.SetPayload("type.googleapis.com/google.rpc.BadRequest", absl::Cord(huge));
  const grpc::Status g = ToGrpcStatus(s);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_LE(g.error_message().size(), 2100u);
  EXPECT_THAT(g.error_message(), ::testing::StartsWith("job 'é"));
  EXPECT_THAT(g.error_message(), ::testing::EndsWith(" more bytes)"));
  EXPECT_TRUE(g.error_details().empty());
  const std::string at_boundary = std::string(2047, 'a') + "é" + std::string(10, 'b');
  const std::string cut = ToGrpcStatus(absl::InvalidArgumentError(at_boundary)).error_message();
  EXPECT_EQ(cut, std::string(2047, 'a') + "... (12 more bytes)");
}

}  // namespace
}  // namespace peftd

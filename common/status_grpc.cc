#include "common/status_grpc.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "google/rpc/status.pb.h"

namespace peftd {
namespace {

// Errors travel in HTTP/2 trailers (grpc-message percent-encoded, up to 3 bytes per byte;
// grpc-status-details-bin in base64), and clients refuse trailers past 8 KiB by default: a
// message that echoes a huge request value would reach the client as RESOURCE_EXHAUSTED instead
// of its own code. These caps keep both under the limit.
constexpr size_t kMaxMessageBytes = 2048;
constexpr size_t kMaxDetailsBytes = 2048;

std::string CappedMessage(absl::string_view message) {
  if (message.size() <= kMaxMessageBytes) return std::string(message);
  size_t cut = kMaxMessageBytes;
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
  return absl::StrCat(message.substr(0, cut), "... (", message.size() - cut, " more bytes)");
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message = CappedMessage(status.message());
  // Payloads (keyed by their type URL, e.g. a google.rpc.BadRequest) travel as the details of a
  // google.rpc.Status, the way gRPC clients of every language read rich errors.
  google::rpc::Status rich;
  status.ForEachPayload([&](absl::string_view type_url, const absl::Cord& payload) {
    auto* any = rich.add_details();
    any->set_type_url(std::string(type_url));
    any->set_value(std::string(payload));
  });
  if (rich.details_size() == 0) return grpc::Status(code, message);
  rich.set_code(static_cast<int32_t>(status.code()));
  rich.set_message(message);
  std::string details = rich.SerializeAsString();
  if (details.size() > kMaxDetailsBytes) return grpc::Status(code, message);  // the text suffices
  return grpc::Status(code, message, details);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  google::rpc::Status rich;
  if (!status.error_details().empty() && rich.ParseFromString(status.error_details())) {
    for (const auto& any : rich.details()) out.SetPayload(any.type_url(), absl::Cord(any.value()));
  }
  return out;
}

}  // namespace peftd

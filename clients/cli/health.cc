// peftctl health: the standard grpc.health.v1 check, for container health checks and probes.
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/generic/generic_stub.h>

#include <memory>
#include <ostream>

#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

// grpc.health.v1.HealthCheckResponse.ServingStatus. The health protos are not installed, and the
// two messages are one field each, so the call goes through the generic stub in wire format:
// HealthCheckRequest { string service = 1; }, HealthCheckResponse { ServingStatus status = 1; }.
const char* const kStatusNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
constexpr int kServing = 1;

void PrintStatus(Cli& cli, const std::string& service, const std::string& name) {
  if (cli.json()) {
    cli.out() << nlohmann::json(
                     {{"server", cli.options().server}, {"service", service}, {"status", name}})
                     .dump(2)
              << "\n";
  } else {
    cli.out() << "peftd at " << cli.options().server
              << (service.empty() ? "" : " (" + service + ")") << ": " << name << "\n";
  }
}

int RunHealth(Cli& cli, const std::string& service) {
  google::protobuf::UnknownFieldSet request_fields;
  if (!service.empty()) request_fields.AddLengthDelimited(1, service);
  std::string request_bytes;
  request_fields.SerializeToString(&request_bytes);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);

  auto context = cli.NewContext();
  grpc::GenericStub stub(cli.channel());
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(context.get(), "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, nullptr);
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  // A probe always gets an answer on stdout: the standard check answers NOT_FOUND for a service
  // it does not know (SERVICE_UNKNOWN), and a server that cannot be reached is UNREACHABLE. Only
  // SERVING exits 0; everything else is 6 (docs/cli.md).
  if (!status.ok() && status.error_code() != grpc::StatusCode::NOT_FOUND) {
    if (cli.json()) PrintStatus(cli, service, "UNREACHABLE");
    cli.Fail(status, "checking the health of peftd");
    return kExitUnavailable;
  }
  if (!status.ok()) {
    PrintStatus(cli, service, "SERVICE_UNKNOWN");
    return kExitUnavailable;
  }

  std::vector<grpc::Slice> slices;
  std::string response_bytes;
  if (response.Dump(&slices).ok()) {
    for (const auto& s : slices)
      response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  google::protobuf::UnknownFieldSet response_fields;
  int serving_status = 0;
  if (response_fields.ParseFromString(response_bytes)) {
    for (int i = 0; i < response_fields.field_count(); ++i) {
      const auto& f = response_fields.field(i);
      if (f.number() == 1 && f.type() == google::protobuf::UnknownField::TYPE_VARINT) {
        serving_status = static_cast<int>(f.varint());
      }
    }
  }
  const char* name =
      serving_status >= 0 && serving_status < 4 ? kStatusNames[serving_status] : "UNKNOWN";
  PrintStatus(cli, service, name);
  return serving_status == kServing ? kExitOk : kExitUnavailable;
}

}  // namespace

void AddHealthCommand(CLI::App& app, Cli& cli, Action* action) {
  auto service = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand(
      "health", "Check the server with grpc.health.v1 (exit 0 when SERVING, 6 otherwise)");
  sub->add_option("--service", *service, "A service name (default: the server as a whole)");
  sub->callback([&cli, action, service] {
    action->run = [&cli, service] { return RunHealth(cli, *service); };
  });
}

}  // namespace peftd::cli

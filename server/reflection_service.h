// gRPC server reflection (grpc.reflection.v1alpha.ServerReflection) behind the users' token:
// grpcurl and grpc_cli list peftd's services and describe its messages with the same token that
// `peftctl` uses. Answers from the descriptors compiled into peftd (the generated pool).
#ifndef PEFTD_SERVER_REFLECTION_SERVICE_H_
#define PEFTD_SERVER_REFLECTION_SERVICE_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace peftd::server {

class ReflectionService final : public grpc::reflection::v1alpha::ServerReflection::Service {
 public:
  // `services`: the full names list_services answers with. `auth_token` empty: open.
  ReflectionService(std::vector<std::string> services, std::string auth_token);

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<grpc::reflection::v1alpha::ServerReflectionResponse,
                               grpc::reflection::v1alpha::ServerReflectionRequest>* stream)
      override;

  // One answer; `sent` holds the files this stream already carried (each is sent once).
  grpc::reflection::v1alpha::ServerReflectionResponse Answer(
      const grpc::reflection::v1alpha::ServerReflectionRequest& request,
      std::vector<std::string>* sent) const;

 private:
  const std::vector<std::string> services_;
  const std::string auth_token_;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_REFLECTION_SERVICE_H_

#include "server/reflection_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_grpc.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "server/auth.h"

namespace peftd::server {
namespace {

namespace refl = grpc::reflection::v1alpha;
using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

void SetError(refl::ServerReflectionResponse* resp, grpc::StatusCode code,
              const std::string& message) {
  resp->mutable_error_response()->set_error_code(static_cast<int>(code));
  resp->mutable_error_response()->set_error_message(message);
}

// `file` and the files it imports, transitively, that `sent` does not hold yet.
void AddFileAndDeps(const FileDescriptor* file, std::vector<std::string>* sent,
                    refl::FileDescriptorResponse* out) {
  if (std::find(sent->begin(), sent->end(), file->name()) != sent->end()) return;
  sent->push_back(file->name());
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  out->add_file_descriptor_proto(proto.SerializeAsString());
  for (int i = 0; i < file->dependency_count(); ++i) AddFileAndDeps(file->dependency(i), sent, out);
}

}  // namespace

ReflectionService::ReflectionService(std::vector<std::string> services, std::string auth_token)
    : services_(std::move(services)), auth_token_(std::move(auth_token)) {}

refl::ServerReflectionResponse ReflectionService::Answer(const refl::ServerReflectionRequest& req,
                                                         std::vector<std::string>* sent) const {
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  refl::ServerReflectionResponse resp;
  resp.set_valid_host(req.host());
  *resp.mutable_original_request() = req;
  const FileDescriptor* file = nullptr;
  switch (req.message_request_case()) {
    case refl::ServerReflectionRequest::kFileByFilename:
      file = pool->FindFileByName(req.file_by_filename());
      if (file == nullptr) {
        SetError(&resp, grpc::StatusCode::NOT_FOUND, "file not found: " + req.file_by_filename());
      }
      break;
    case refl::ServerReflectionRequest::kFileContainingSymbol:
      file = pool->FindFileContainingSymbol(req.file_containing_symbol());
      if (file == nullptr) {
        SetError(&resp, grpc::StatusCode::NOT_FOUND,
                 "symbol not found: " + req.file_containing_symbol());
      }
      break;
    case refl::ServerReflectionRequest::kFileContainingExtension: {
      const auto* type =
          pool->FindMessageTypeByName(req.file_containing_extension().containing_type());
      const auto* ext = type == nullptr
                            ? nullptr
                            : pool->FindExtensionByNumber(
                                  type, req.file_containing_extension().extension_number());
      if (ext == nullptr) {
        SetError(&resp, grpc::StatusCode::NOT_FOUND, "extension not found");
      } else {
        file = ext->file();
      }
      break;
    }
    case refl::ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const auto* type = pool->FindMessageTypeByName(req.all_extension_numbers_of_type());
      if (type == nullptr) {
        SetError(&resp, grpc::StatusCode::NOT_FOUND,
                 "type not found: " + req.all_extension_numbers_of_type());
        break;
      }
      std::vector<const google::protobuf::FieldDescriptor*> extensions;
      pool->FindAllExtensions(type, &extensions);
      auto* numbers = resp.mutable_all_extension_numbers_response();
      numbers->set_base_type_name(type->full_name());
      for (const auto* e : extensions) numbers->add_extension_number(e->number());
      break;
    }
    case refl::ServerReflectionRequest::kListServices:
      for (const std::string& name : services_) {
        resp.mutable_list_services_response()->add_service()->set_name(name);
      }
      break;
    default:
      SetError(&resp, grpc::StatusCode::UNIMPLEMENTED, "unknown request");
  }
  if (file != nullptr) AddFileAndDeps(file, sent, resp.mutable_file_descriptor_response());
  return resp;
}

grpc::Status ReflectionService::ServerReflectionInfo(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<refl::ServerReflectionResponse, refl::ServerReflectionRequest>*
        stream) {
  if (absl::Status auth = Authorize(*ctx, auth_token_); !auth.ok()) return ToGrpcStatus(auth);
  std::vector<std::string> sent;
  refl::ServerReflectionRequest req;
  while (stream->Read(&req)) {
    if (!stream->Write(Answer(req, &sent))) break;
  }
  return grpc::Status::OK;
}

}  // namespace peftd::server

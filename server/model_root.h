// STUB until branch `svc` lands (its version replaces this file): model names resolve inside the
// model root only.
#ifndef PEFTD_SERVER_MODEL_ROOT_H_
#define PEFTD_SERVER_MODEL_ROOT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "peftd/v1/jobs.pb.h"

namespace peftd::server {

// The folder of model `name` under `root` (no `..`, no symlink escape). NotFound /
// InvalidArgument naming base_model.
absl::StatusOr<std::string> ResolveModelPath(const std::string& root, const std::string& name);
absl::StatusOr<std::vector<v1::Model>> ListModels(const std::string& root);
// Generates the built-in tiny model under `root` with `worker_binary make-tiny-model` when missing.
absl::Status EnsureBuiltinModel(const std::string& root, const std::string& worker_binary);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_MODEL_ROOT_H_

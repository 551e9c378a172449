// The model root: base models are HF folders under one directory, named by their path inside it
// ("tiny-llama", "meta-llama/Llama-3.2-1B"). Nothing outside the root is ever opened.
#ifndef PEFTD_SERVER_MODEL_ROOT_H_
#define PEFTD_SERVER_MODEL_ROOT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "peftd/v1/jobs.pb.h"

namespace peftd::server {

// Name of the built-in model generated on first use (DESIGN.md "Embedded default").
inline constexpr char kBuiltinModelName[] = "tiny-llama";
// How deep ListModels looks for config.json below the root ("org/name" is depth 2).
inline constexpr int kMaxModelDepth = 3;

// The canonical folder of JobSpec.base_model `name`: a relative path under `root`, or an absolute
// path inside it. InvalidArgument for an empty name, a `..` component or a path (or symlink)
// leading outside the root; NotFound when the folder is missing; FailedPrecondition when it has
// no config.json. Every message names `base_model` and says what to do.
absl::StatusOr<std::string> ResolveModelPath(const std::string& root, const std::string& name);

// Every folder under `root` (up to kMaxModelDepth levels) holding a config.json, sorted by name,
// with architecture and parameter count from the config (0 when the config is not one we can
// parse; a warning is logged) and the bytes of its files. Hidden and *.tmp* folders are skipped;
// a model's own sub-folders are not searched. A missing root lists nothing.
absl::StatusOr<std::vector<v1::Model>> ListModels(const std::string& root);

// When `<root>/tiny-llama` is missing, creates the root (owner-only) and runs
// `<worker_binary> make-tiny-model <root>/tiny-llama.tmp.<pid>`, then renames it into place
// (atomic; a concurrent creator winning the rename is fine). FailedPrecondition naming
// --worker-binary when the binary is missing or fails.
absl::Status EnsureBuiltinModel(const std::string& root, const std::string& worker_binary);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_MODEL_ROOT_H_

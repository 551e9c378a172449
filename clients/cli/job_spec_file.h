// Job files (`peftctl submit -f job.yaml|job.json`): the protobuf JSON of JobSpec, or the same
// tree written in YAML. Field names are those of job.proto (lowerCamel JSON names also work), enum
// values are case-insensitive ("lora", "cosine", "seq_cls"), and a YAML scalar is read as the
// type of the field it sets. Every error names the file, the field and, for YAML and JSON syntax
// errors, the line.
#ifndef PEFTD_CLIENTS_CLI_JOB_SPEC_FILE_H_
#define PEFTD_CLIENTS_CLI_JOB_SPEC_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "peftd/v1/job.pb.h"

namespace peftd::cli {

enum class JobFileFormat { kJson, kYaml };

// Reads `path`; the format follows the extension (.json, .yaml, .yml), else the content ('{'
// first means JSON). InvalidArgument "job.yaml:7: lora.r: expected an integer, got 'eight'".
absl::StatusOr<v1::JobSpec> LoadJobSpecFile(const std::string& path);

// Parses `text`; `name` is the file name used in error messages.
absl::StatusOr<v1::JobSpec> ParseJobSpec(absl::string_view text, absl::string_view name,
                                         JobFileFormat format);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_JOB_SPEC_FILE_H_

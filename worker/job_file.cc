#include "worker/job_file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace peftd::worker {

absl::StatusOr<v1::JobSpec> ParseJobSpecJson(const std::string& text, const std::string& name) {
  v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto st = google::protobuf::util::JsonStringToMessage(text, &spec, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": not a valid job spec: ", std::string(st.message().data(), st.message().size())));
  }
  return spec;
}

absl::StatusOr<v1::JobSpec> ReadJobFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the job file"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseJobSpecJson(ss.str(), path);
}

std::string JobSpecToJson(const v1::JobSpec& spec) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(spec, &out, options);
  return out;
}

}  // namespace peftd::worker

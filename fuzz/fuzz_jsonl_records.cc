// Fuzzes the JSONL record validator: any bytes must give a result, never a crash or undefined
// behaviour, and feeding them in random chunks must give exactly the result of feeding them whole
// (the server validates uploads as they stream in). Byte 0 picks the options, bytes 1..4 seed the
// chunk sizes, the rest is the input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/dataset_records.h"
#include "nlohmann/json.hpp"

namespace {

using peftd::data::Record;
using peftd::data::RecordOptions;
using peftd::data::RecordValidator;
using peftd::data::ValidationResult;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

std::string Digest(int64_t line, const Record& r) {
  std::string d = std::to_string(line) + "|" + peftd::data::FormatName(r.format);
  for (const auto* s : {&r.text, &r.text_pair, &r.prompt, &r.completion, &r.label_name}) {
    d += "|" + *s;
  }
  for (const auto& m : r.messages) d += "|" + m.role + ":" + m.content;
  return d + "|" + std::to_string(r.label);
}

// Throws (and so aborts the fuzzer) when `s` is not valid UTF-8: error texts go into protobuf
// strings.
void CheckUtf8(const std::string& s) { (void)nlohmann::json(s).dump(); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const uint8_t flags = data[0];
  uint32_t seed = data[1] | data[2] << 8 | data[3] << 16 | static_cast<uint32_t>(data[4]) << 24;
  const std::string_view input(reinterpret_cast<const char*>(data + 5), size - 5);

  RecordOptions options;
  const int64_t line_limits[] = {0, 16, 64, 1 << 20};
  options.max_line_bytes = line_limits[flags & 3];
  options.max_errors = (flags & 4) ? 3 : 0;
  if (flags & 8) options.label_names = {"neg", "pos"};
  if (flags & 16) options.num_labels = 3;
  options.require_label_ids = (flags & 32) != 0;

  std::vector<std::string> whole_records, chunked_records;
  const ValidationResult whole = peftd::data::ValidateRecords(
      input, options, [&](int64_t line, Record r) { whole_records.push_back(Digest(line, r)); });

  RecordValidator validator(
      options, [&](int64_t line, Record r) { chunked_records.push_back(Digest(line, r)); });
  const size_t max_chunk = 1 + (flags >> 6) * 16;
  for (size_t at = 0; at < input.size();) {
    seed = seed * 1664525u + 1013904223u;
    const size_t n = std::min<size_t>((seed >> 16) % (max_chunk + 1), input.size() - at);
    Check(validator.Feed(input.substr(at, n)).ok());
    at += n;
  }
  const ValidationResult chunked = validator.Finish();

  Check(chunked.format == whole.format);
  Check(chunked.lines == whole.lines);
  Check(chunked.records == whole.records);
  Check(chunked.bad_lines == whole.bad_lines);
  Check(chunked.bytes == whole.bytes && whole.bytes == static_cast<int64_t>(input.size()));
  Check(chunked.errors == whole.errors);
  Check(chunked_records == whole_records);

  Check(whole.records == static_cast<int64_t>(whole_records.size()));
  Check(whole.records + whole.bad_lines <= whole.lines);
  const int64_t kept =
      options.max_errors > 0 ? std::min(whole.bad_lines, options.max_errors) : whole.bad_lines;
  Check(static_cast<int64_t>(whole.errors.size()) == kept);
  int64_t previous = 0;
  for (const auto& e : whole.errors) {
    Check(e.line > previous && e.line <= whole.lines);
    previous = e.line;
    CheckUtf8(e.field);
    CheckUtf8(e.reason);
  }
  (void)peftd::data::DescribeErrors("fuzz.jsonl", whole);
  return 0;
}

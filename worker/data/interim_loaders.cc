// INTERIM (branch runner): minimal LoadTokenizer / LoadDataset so the job runner links and its
// tests run before branches `tok` and `data` land. Bytes are token ids (valid for any vocabulary
// of at least 256 ids); JSONL records "text", "prompt"/"completion" and "text"/"label" only.
// Delete this file when the real implementations are merged.
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "worker/data/dataset.h"
#include "worker/data/tokenizer.h"

namespace peftd::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class ByteTokenizer : public Tokenizer {
 public:
  ByteTokenizer(std::map<std::string, int64_t> specials, SpecialTokens st, int64_t vocab)
      : specials_(std::move(specials)), special_(st), vocab_(vocab) {}
  std::vector<int64_t> Encode(std::string_view text) const override {
    std::vector<int64_t> out;
    for (unsigned char c : text) out.push_back(c);
    return out;
  }
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::string out;
    for (int64_t id : ids)
      if (id < 256) out.push_back(static_cast<char>(id));
    return out;
  }
  int64_t VocabSize() const override { return vocab_; }
  std::optional<int64_t> TokenToId(std::string_view token) const override {
    auto it = specials_.find(std::string(token));
    if (it == specials_.end()) return std::nullopt;
    return it->second;
  }
  const SpecialTokens& special() const override { return special_; }

 private:
  std::map<std::string, int64_t> specials_;
  SpecialTokens special_;
  int64_t vocab_;
};

json ReadJson(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return json();
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str(), nullptr, false);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  json tok = ReadJson(fs::path(model_dir) / "tokenizer.json");
  if (!tok.is_object()) {
    return absl::NotFoundError(absl::StrCat(model_dir, ": no readable tokenizer.json"));
  }
  std::map<std::string, int64_t> specials;
  int64_t vocab = 256;
  for (const auto& t : tok.value("added_tokens", json::array())) {
    specials[t.value("content", "")] = t.value("id", int64_t{0});
    vocab = std::max(vocab, t.value("id", int64_t{0}) + 1);
  }
  if (tok.contains("model") && tok["model"].contains("vocab"))
    vocab = std::max<int64_t>(vocab, tok["model"]["vocab"].size());
  SpecialTokens st;
  json cfg = ReadJson(fs::path(model_dir) / "tokenizer_config.json");
  if (cfg.is_object()) {
    auto id = [&](const char* key) -> int64_t {
      if (!cfg.contains(key) || !cfg[key].is_string()) return -1;
      auto it = specials.find(cfg[key].get<std::string>());
      return it == specials.end() ? -1 : it->second;
    };
    st.bos_id = id("bos_token");
    st.eos_id = id("eos_token");
    st.pad_id = id("pad_token");
    st.add_bos = cfg.value("add_bos_token", false);
    st.add_eos = cfg.value("add_eos_token", false);
  }
  if (st.pad_id < 0) st.pad_id = st.eos_id;
  return std::unique_ptr<Tokenizer>(new ByteTokenizer(specials, st, vocab));
}

absl::StatusOr<LoadedDataset> LoadDataset(const std::string& path, const Tokenizer& tokenizer,
                                          const DatasetOptions& options,
                                          std::vector<LineError>* errors) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  LoadedDataset out;
  std::vector<LineError> errs;
  std::string line;
  int64_t n = 0;
  const bool cls = options.task == Task::kSequenceClassification;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) {
      errs.push_back({n, "", "not a JSON object"});
      continue;
    }
    Example e;
    const auto& sp = tokenizer.special();
    if (sp.add_bos && sp.bos_id >= 0) e.input_ids.push_back(sp.bos_id);
    if (cls) {
      if (!j.contains("text") || !j["text"].is_string()) {
        errs.push_back({n, "text", "missing"});
        continue;
      }
      if (!j.contains("label")) {
        errs.push_back({n, "label", "missing"});
        continue;
      }
      int64_t label = -1;
      if (j["label"].is_number_integer()) {
        label = j["label"].get<int64_t>();
      } else if (j["label"].is_string()) {
        for (size_t i = 0; i < options.label_names.size(); ++i)
          if (options.label_names[i] == j["label"].get<std::string>()) label = i;
      }
      if (label < 0 || (options.num_labels > 0 && label >= options.num_labels)) {
        errs.push_back({n, "label", "not a known label"});
        continue;
      }
      auto ids = tokenizer.Encode(j["text"].get<std::string>());
      e.input_ids.insert(e.input_ids.end(), ids.begin(), ids.end());
      e.class_label = label;
      out.format = "classification";
    } else if (j.contains("prompt")) {
      if (!j["prompt"].is_string() || !j.contains("completion") || !j["completion"].is_string()) {
        errs.push_back({n, "completion", "missing"});
        continue;
      }
      auto p = tokenizer.Encode(j["prompt"].get<std::string>());
      auto c = tokenizer.Encode(j["completion"].get<std::string>());
      e.input_ids.insert(e.input_ids.end(), p.begin(), p.end());
      e.labels.assign(e.input_ids.size(), -100);
      e.input_ids.insert(e.input_ids.end(), c.begin(), c.end());
      e.labels.insert(e.labels.end(), c.begin(), c.end());
      out.format = "prompt_completion";
    } else {
      if (!j.contains("text") || !j["text"].is_string()) {
        errs.push_back({n, "text", "missing"});
        continue;
      }
      auto ids = tokenizer.Encode(j["text"].get<std::string>());
      e.input_ids.insert(e.input_ids.end(), ids.begin(), ids.end());
      out.format = "text";
    }
    if (static_cast<int64_t>(e.input_ids.size()) > options.max_seq_len) {
      if (!options.truncate) {
        errs.push_back({n, "", "longer than max_seq_len"});
        continue;
      }
      e.input_ids.resize(options.max_seq_len);
      if (!e.labels.empty()) e.labels.resize(options.max_seq_len);
      ++out.stats.truncated_records;
    }
    out.stats.tokens += static_cast<int64_t>(e.input_ids.size());
    ++out.stats.records;
    out.examples.push_back(std::move(e));
  }
  if (errors) *errors = errs;
  if (!errs.empty() && !options.skip_bad_lines) {
    std::vector<std::string> parts;
    for (const auto& e : errs)
      parts.push_back(absl::StrCat(
          "line ", e.line, e.field.empty() ? "" : " field \"" + e.field + "\"", ": ", e.reason));
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", errs.size(), " bad lines: ", absl::StrJoin(parts, "; ")));
  }
  out.stats.skipped_lines = static_cast<int64_t>(errs.size());
  if (out.examples.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no records"));
  return out;
}

}  // namespace peftd::data

#include "worker/merged_export.h"

#include <fstream>
#include <functional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "adapters/peft_files.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/gpt2_loader.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Files of a model folder that a merged export carries over unchanged.
// SentencePiece models are T5's spiece.model and DeBERTa-v3's spm.model.
constexpr const char* kTokenizerFiles[] = {
    "tokenizer.json",    "tokenizer.model",        "spiece.model",
    "spm.model",         "tokenizer_config.json",  "special_tokens_map.json",
    "added_tokens.json", "generation_config.json", "vocab.json",
    "merges.txt"};

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", path.string()));
  return absl::OkStatus();
}

bool Cancelled(const std::atomic<bool>* cancelled) {
  return cancelled && cancelled->load(std::memory_order_relaxed);
}

absl::Status CancelledWhile() {
  return absl::CancelledError("cancelled while exporting the merged model");
}

// The family's parameters that its checkpoints store transposed: GPT-2's Conv1D weights, (in, out),
// which a merge writes back as (W + ΔW)ᵀ (PEFT's fan_in_fan_out). The other names and layouts are
// the checkpoint's already.
std::function<bool(const std::string&)> StoredTransposed(const model::ModelConfig& mc) {
  if (mc.IsGpt2()) return model::IsConv1DWeight;
  return nullptr;
}

}  // namespace

std::string UnmergeableReason(adapters::PeftModel& peft) {
  if (peft.config().gate) return "a token-gated adapter changes only some tokens";
  return "";
}

MergedBiases PlanMergedBiases(adapters::PeftModel& peft, const model::ModelConfig& mc) {
  MergedBiases plan;
  plan.attention_bias = mc.attention_bias;
  plan.mlp_bias = mc.mlp_bias;
  if (peft.config().method != adapters::MethodKind::kHut) return plan;
  enum Group { kAttention, kMlp, kOther };
  auto group_of = [](const std::string& name) {
    for (const char* p :
         {".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj", ".self_attn.o_proj"}) {
      if (absl::EndsWith(name, p)) return kAttention;
    }
    for (const char* p : {".mlp.gate_proj", ".mlp.up_proj", ".mlp.down_proj"}) {
      if (absl::EndsWith(name, p)) return kMlp;
    }
    return kOther;
  };
  std::vector<std::pair<std::string, adapters::LinearImpl*>> bias_free[3];
  bool gains[3] = {false, false, false};
  for (const auto& item : peft.model().named_modules()) {
    auto* linear = item.value()->as<adapters::LinearImpl>();
    if (linear == nullptr || linear->bias.defined()) continue;
    const Group g = group_of(item.key());
    if (peft.linears().count(item.key())) {
      gains[g] = true;
      plan.changed = true;
    } else {
      bias_free[g].emplace_back(item.key(), linear);
    }
  }
  if (!plan.changed) return plan;
  const bool llama_arch = absl::StartsWith(mc.architecture, "Llama");
  std::string undeclarable;
  for (const auto& [name, linear] : peft.linears()) {
    if (linear->bias.defined()) continue;
    if (!llama_arch || group_of(name) == kOther) {
      undeclarable = name;
      break;
    }
  }
  if (!undeclarable.empty()) {
    plan.why_not =
        absl::StrCat("HUT's beta adds a bias to ", undeclarable, ", which a ", mc.architecture,
                     " config.json cannot declare (only Llama's attention_bias and mlp_bias can)");
    return plan;
  }
  plan.attention_bias = plan.attention_bias || gains[kAttention];
  plan.mlp_bias = plan.mlp_bias || gains[kMlp];
  for (Group g : {kAttention, kMlp}) {
    if (g == kAttention ? !plan.attention_bias : !plan.mlp_bias) continue;
    for (const auto& [name, linear] : bias_free[g]) {
      plan.zeros[name + ".bias"] = torch::zeros({linear->out_features()}, linear->weight.options());
    }
  }
  return plan;
}

absl::Status ExportMerged(adapters::PeftModel& peft, const model::ModelConfig& mc,
                          const MergedBiases& biases, const fs::path& base_dir, const fs::path& tmp,
                          const v1::JobSpec& spec, const std::atomic<bool>* cancelled) {
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", tmp.string(), ": ", ec.message()));
  ASSIGN_OR_RETURN(std::string config_text, ReadText(base_dir / "config.json"));
  json config = json::parse(config_text, nullptr, false);
  if (!config.is_object()) return absl::InternalError("base model config.json is not an object");
  config["architectures"] = {mc.architecture};
  config["torch_dtype"] = "float32";
  if (biases.changed) {
    config["attention_bias"] = biases.attention_bias;
    config["mlp_bias"] = biases.mlp_bias;
  }
  if (mc.sequence_classification) {
    json id2label = json::object(), label2id = json::object();
    for (int64_t i = 0; i < mc.num_labels; ++i) {
      const std::string name = i < spec.label_names_size() ? spec.label_names(static_cast<int>(i))
                                                           : absl::StrCat("LABEL_", i);
      id2label[std::to_string(i)] = name;
      label2id[name] = i;
    }
    config["num_labels"] = mc.num_labels;
    config["id2label"] = id2label;
    config["label2id"] = label2id;
  }
  RETURN_IF_ERROR(WriteText(tmp / "config.json", config.dump(2) + "\n"));
  for (const char* name : kTokenizerFiles) {
    if (Cancelled(cancelled)) return CancelledWhile();
    if (!fs::exists(base_dir / name)) continue;
    fs::copy_file(base_dir / name, tmp / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("copying ", name, ": ", ec.message()));
  }
  if (Cancelled(cancelled)) return CancelledWhile();
  return adapters::SaveMergedWeights(peft, (tmp / "model.safetensors").string(), biases.zeros,
                                     StoredTransposed(mc));
}

}  // namespace peftd::worker

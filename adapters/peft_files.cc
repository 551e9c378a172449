#include "adapters/peft_files.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/safetensors_torch.h"
#include "adapters/tensor_check.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace peftd::adapters {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr char kConfigFile[] = "adapter_config.json";
constexpr char kWeightsFile[] = "adapter_model.safetensors";

std::string PeftType(const AdapterConfig& c) {
  switch (c.method) {
    case MethodKind::kLora:
    case MethodKind::kDora:
      return "LORA";
    case MethodKind::kAdaLora:
      return "ADALORA";
    case MethodKind::kHut:
      return "HUT";
    case MethodKind::kAdaDhp:
      return "ADADHP";
  }
  return "?";
}

json ConfigJson(PeftModel& peft, const std::map<std::string, torch::Tensor>& modules_to_save) {
  const AdapterConfig& c = peft.config();
  json j;
  j["peft_type"] = PeftType(c);
  // Only fields PEFT knows: PEFT before 0.14 refuses a config with an unknown key (TypeError in
  // LoraConfig.__init__), so our method is told by peft_type (+ use_dora) alone.
  j["task_type"] = c.task_type;
  j["base_model_name_or_path"] = c.base_model_name_or_path;
  j["inference_mode"] = true;
  j["target_modules"] = c.targets.target_modules;
  if (c.targets.target_modules.size() == 1 && c.targets.target_modules[0].rfind("re:", 0) == 0) {
    j["target_modules"] = c.targets.target_modules[0].substr(3);  // PEFT: a string is a regex
  }
  // exclude_modules exists since PEFT 0.14: written only when used, for the same reason.
  if (!c.targets.exclude_modules.empty()) j["exclude_modules"] = c.targets.exclude_modules;
  j["layers_to_transform"] =
      c.targets.layers_to_transform.empty() ? json(nullptr) : json(c.targets.layers_to_transform);
  // Modules listed in the config plus those whose tensors are saved ("score.weight" -> "score"),
  // unless a listed module holds them (RoBERTa's "classifier" holds classifier.dense.weight).
  std::set<std::string> to_save(c.modules_to_save.begin(), c.modules_to_save.end());
  for (const auto& [name, t] : modules_to_save) {
    const std::string module = name.substr(0, name.rfind('.'));
    bool held = false;
    for (const std::string& m : c.modules_to_save) {
      held = held || module == m || module.rfind(m + ".", 0) == 0;
    }
    if (!held) to_save.insert(module);
  }
  j["modules_to_save"] = to_save.empty()
                             ? json(nullptr)
                             : json(std::vector<std::string>(to_save.begin(), to_save.end()));
  j["bias"] = "none";
  j["fan_in_fan_out"] = c.fan_in_fan_out;
  j["rank_pattern"] = json::object();
  j["alpha_pattern"] = json::object();
  switch (c.method) {
    case MethodKind::kLora:
    case MethodKind::kDora: {
      j["r"] = c.lora.r;
      j["lora_alpha"] = c.lora.alpha;
      j["lora_dropout"] = c.lora.dropout;
      j["use_rslora"] = c.lora.use_rslora;
      j["use_dora"] = c.method == MethodKind::kDora;
      j["init_lora_weights"] = c.lora.gaussian_init ? json("gaussian") : json(true);
      // Modules whose r or alpha differ from the global ones, under their full names: an exact
      // name is the one key every PEFT version resolves to that module alone.
      json ranks = json::object(), alphas = json::object();
      for (const auto& [name, linear] : peft.linears()) {
        auto* lora = dynamic_cast<LoraAdapter*>(PeftModel::Unwrap(linear->adapter().get()));
        if (lora->options().r != c.lora.r) ranks[name] = lora->options().r;
        if (lora->options().alpha != c.lora.alpha) alphas[name] = lora->options().alpha;
      }
      j["rank_pattern"] = ranks;
      j["alpha_pattern"] = alphas;
      break;
    }
    case MethodKind::kAdaLora: {
      const AdaLoraSchedule& s = c.adalora_schedule;
      j["r"] = s.target_r;
      j["init_r"] = c.adalora.init_r;
      j["target_r"] = s.target_r;
      j["lora_alpha"] = c.adalora.alpha;
      j["lora_dropout"] = c.adalora.dropout;
      j["tinit"] = s.tinit;
      j["tfinal"] = s.tfinal;
      j["deltaT"] = s.delta_t;
      j["beta1"] = s.beta1;
      j["beta2"] = s.beta2;
      j["orth_reg_weight"] = s.orth_reg_weight;
      j["total_step"] = s.total_step;
      j["use_rslora"] = false;
      j["use_dora"] = false;
      j["init_lora_weights"] = true;
      json pattern = json::object();
      for (const auto& [name, linear] : peft.linears()) {
        auto* ada = dynamic_cast<AdaLoraAdapter*>(PeftModel::Unwrap(linear->adapter().get()));
        std::vector<bool> keep = ada->keep();
        pattern[name + ".lora_E"] = keep;
      }
      j["rank_pattern"] = pattern;
      break;
    }
    case MethodKind::kHut:
      j["r"] = c.hut.r;
      break;
    case MethodKind::kAdaDhp: {
      j["target_num"] = c.adadhp.target_num;
      j["tinit"] = c.adadhp.tinit;
      j["tfinal"] = c.adadhp.tfinal;
      j["deltaT"] = c.adadhp.delta_t;
      j["beta1"] = c.adadhp.beta1;
      j["beta2"] = c.adadhp.beta2;
      json active = json::object();
      for (const auto& [name, linear] : peft.linears()) {
        active[name] = PeftModel::Unwrap(linear->adapter().get())->IsActive();
      }
      j["active_modules"] = active;
      break;
    }
  }
  if (c.gate) {
    json tau = json::object();
    for (const auto& [name, value] : peft.GateTaus()) tau[name] = value;
    j["token_gate"] = {{"s", c.gate->s}, {"lambda", c.gate->lambda}, {"tau", tau}};
  }
  return j;
}

// Read in the file's order: the first rank_pattern / alpha_pattern key that matches a module wins.
absl::StatusOr<ordered_json> ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  std::stringstream ss;
  ss << in.rdbuf();
  ordered_json j = ordered_json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  return j;
}

template <typename T>
absl::Status Field(const ordered_json& j, const char* key, T* out, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
  try {
    *out = j[key].get<T>();
  } catch (const json::exception&) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", key, "' has the wrong type"));
  }
  return absl::OkStatus();
}

// LoRA's rank_pattern / alpha_pattern: {key: number}, kept in the file's order.
template <typename T>
absl::Status PatternField(const ordered_json& j, const char* field,
                          std::vector<std::pair<std::string, T>>* out, const std::string& where) {
  if (!j.contains(field) || j[field].is_null()) return absl::OkStatus();
  const ordered_json& p = j[field];
  if (!p.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", field, "' must be an object of module keys"));
  }
  for (const auto& [key, value] : p.items()) {
    const bool ok = std::is_integral_v<T> ? value.is_number_integer() : value.is_number();
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", field, "['", key, "'] must be ",
          std::is_integral_v<T> ? "an integer rank" : "a number", ", got ", value.dump()));
    }
    out->emplace_back(key, value.template get<T>());
  }
  return absl::OkStatus();
}

// AdaLoRA's rank_pattern: {"<module>.lora_E": [bool, ...]} -> module -> keep mask.
absl::Status AdaLoraPatternField(const ordered_json& j,
                                 std::map<std::string, std::vector<bool>>* out,
                                 const std::string& where) {
  if (!j.contains("rank_pattern") || j["rank_pattern"].is_null()) return absl::OkStatus();
  const ordered_json& p = j["rank_pattern"];
  if (!p.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field 'rank_pattern' must be an object of module keys"));
  }
  constexpr std::string_view kSuffix = ".lora_E";
  for (const auto& [key, value] : p.items()) {
    const bool named = key.size() > kSuffix.size() &&
                       key.compare(key.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0;
    if (!named) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": rank_pattern['", key, "']: an AdaLoRA key names a module's lora_E ('",
          "model.layers.0.self_attn.q_proj.lora_E')"));
    }
    std::vector<bool> keep;
    bool ok = value.is_array();
    for (const auto& v : value) {
      ok = ok && v.is_boolean();
      if (ok) keep.push_back(v.get<bool>());
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": rank_pattern['", key,
          "'] must be a list of booleans (AdaLoRA's kept triplets), got ", value.dump()));
    }
    (*out)[key.substr(0, key.size() - kSuffix.size())] = std::move(keep);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SaveAdapter(PeftModel& peft, const std::string& dir,
                         const std::map<std::string, torch::Tensor>& modules_to_save) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, linear] : peft.linears()) {
    for (auto& [suffix, t] : linear->adapter()->ExportTensors()) {
      tensors[absl::StrCat(kPeftKeyPrefix, name, ".", suffix)] = t;
    }
  }
  for (const auto& [name, t] : modules_to_save) {
    tensors[absl::StrCat(kPeftKeyPrefix, name)] =
        t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  }
  RETURN_IF_ERROR(
      SaveTensors((fs::path(dir) / kWeightsFile).string(), tensors, {{"format", "pt"}}));
  const std::string config_path = (fs::path(dir) / kConfigFile).string();
  const std::string tmp = config_path + ".tmp";
  {
    std::ofstream out(tmp);
    out << ConfigJson(peft, modules_to_save).dump(2) << "\n";
    if (!out) return absl::InternalError(absl::StrCat("writing ", tmp));
  }
  fs::rename(tmp, config_path, ec);
  if (ec) return absl::InternalError(absl::StrCat("writing ", config_path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<AdapterConfig> ReadAdapterConfig(const std::string& dir) {
  const std::string path = (fs::path(dir) / kConfigFile).string();
  ASSIGN_OR_RETURN(ordered_json j, ReadJson(path));
  AdapterConfig c;
  std::string method;
  RETURN_IF_ERROR(Field(j, "peftd_method", &method, path));
  if (method.empty()) {
    std::string type;
    RETURN_IF_ERROR(Field(j, "peft_type", &type, path));
    bool use_dora = false;
    RETURN_IF_ERROR(Field(j, "use_dora", &use_dora, path));
    if (type == "LORA")
      method = use_dora ? "dora" : "lora";
    else if (type == "ADALORA")
      method = "adalora";
    else if (type == "HUT")
      method = "hut";
    else if (type == "ADADHP")
      method = "adadhp";
    else
      return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported peft_type '", type, "'"));
  }
  auto kind = ParseMethod(method);
  if (!kind.ok()) return Annotate(kind.status(), path);
  c.method = *kind;
  RETURN_IF_ERROR(Field(j, "task_type", &c.task_type, path));
  RETURN_IF_ERROR(Field(j, "base_model_name_or_path", &c.base_model_name_or_path, path));
  if (j.contains("target_modules") && j["target_modules"].is_string()) {
    c.targets.target_modules = {"re:" + j["target_modules"].get<std::string>()};
  } else {
    RETURN_IF_ERROR(Field(j, "target_modules", &c.targets.target_modules, path));
  }
  RETURN_IF_ERROR(Field(j, "exclude_modules", &c.targets.exclude_modules, path));
  RETURN_IF_ERROR(Field(j, "layers_to_transform", &c.targets.layers_to_transform, path));
  RETURN_IF_ERROR(Field(j, "modules_to_save", &c.modules_to_save, path));
  RETURN_IF_ERROR(Field(j, "fan_in_fan_out", &c.fan_in_fan_out, path));
  if (c.method == MethodKind::kAdaLora) {
    // PEFT's AdaLoRA reads neither pattern as LoRA does: rank_pattern holds the kept triplets,
    // and alpha_pattern is not used (every module has lora_alpha).
    RETURN_IF_ERROR(AdaLoraPatternField(j, &c.adalora_rank_pattern, path));
  } else {
    RETURN_IF_ERROR(PatternField(j, "rank_pattern", &c.rank_pattern, path));
    RETURN_IF_ERROR(PatternField(j, "alpha_pattern", &c.alpha_pattern, path));
  }
  switch (c.method) {
    case MethodKind::kLora:
    case MethodKind::kDora: {
      RETURN_IF_ERROR(Field(j, "r", &c.lora.r, path));
      RETURN_IF_ERROR(Field(j, "lora_alpha", &c.lora.alpha, path));
      RETURN_IF_ERROR(Field(j, "lora_dropout", &c.lora.dropout, path));
      RETURN_IF_ERROR(Field(j, "use_rslora", &c.lora.use_rslora, path));
      c.lora.gaussian_init = j.value("init_lora_weights", json(true)) == json("gaussian");
      break;
    }
    case MethodKind::kAdaLora: {
      AdaLoraSchedule& s = c.adalora_schedule;
      RETURN_IF_ERROR(Field(j, "init_r", &c.adalora.init_r, path));
      RETURN_IF_ERROR(Field(j, "target_r", &s.target_r, path));
      RETURN_IF_ERROR(Field(j, "lora_alpha", &c.adalora.alpha, path));
      RETURN_IF_ERROR(Field(j, "lora_dropout", &c.adalora.dropout, path));
      RETURN_IF_ERROR(Field(j, "tinit", &s.tinit, path));
      RETURN_IF_ERROR(Field(j, "tfinal", &s.tfinal, path));
      RETURN_IF_ERROR(Field(j, "deltaT", &s.delta_t, path));
      RETURN_IF_ERROR(Field(j, "beta1", &s.beta1, path));
      RETURN_IF_ERROR(Field(j, "beta2", &s.beta2, path));
      RETURN_IF_ERROR(Field(j, "orth_reg_weight", &s.orth_reg_weight, path));
      RETURN_IF_ERROR(Field(j, "total_step", &s.total_step, path));
      break;
    }
    case MethodKind::kHut:
      RETURN_IF_ERROR(Field(j, "r", &c.hut.r, path));
      break;
    case MethodKind::kAdaDhp:
      RETURN_IF_ERROR(Field(j, "target_num", &c.adadhp.target_num, path));
      RETURN_IF_ERROR(Field(j, "tinit", &c.adadhp.tinit, path));
      RETURN_IF_ERROR(Field(j, "tfinal", &c.adadhp.tfinal, path));
      RETURN_IF_ERROR(Field(j, "deltaT", &c.adadhp.delta_t, path));
      break;
  }
  if (j.contains("token_gate") && j["token_gate"].is_object()) {
    GateOptions g;
    RETURN_IF_ERROR(Field(j["token_gate"], "s", &g.s, path + " token_gate"));
    RETURN_IF_ERROR(Field(j["token_gate"], "lambda", &g.lambda, path + " token_gate"));
    c.gate = g;
  }
  return c;
}

absl::StatusOr<std::unique_ptr<PeftModel>> LoadAdapter(torch::nn::Module* model,
                                                       const std::string& dir) {
  ASSIGN_OR_RETURN(AdapterConfig config, ReadAdapterConfig(dir));
  // The schedules do not run at inference; give them a horizon that validates.
  const int64_t horizon =
      std::max<int64_t>(config.adalora_schedule.total_step,
                        config.adalora_schedule.tinit + config.adalora_schedule.tfinal + 1);
  config.adalora_schedule.total_step = horizon;
  if (config.method == MethodKind::kAdaDhp && config.adadhp.tfinal <= config.adadhp.tinit) {
    config.adadhp.tfinal = config.adadhp.tinit + 1;
  }
  ASSIGN_OR_RETURN(
      auto peft,
      PeftModel::Apply(model, config, std::max<int64_t>(horizon, config.adadhp.tfinal + 1)));
  RETURN_IF_ERROR(LoadAdapterWeights(model, *peft, dir));
  return peft;
}

absl::Status LoadAdapterWeights(torch::nn::Module* model, PeftModel& peft_model,
                                const std::string& dir) {
  ASSIGN_OR_RETURN(AdapterConfig config, ReadAdapterConfig(dir));
  const std::string config_path = (fs::path(dir) / kConfigFile).string();
  ASSIGN_OR_RETURN(ordered_json j, ReadJson(config_path));
  PeftModel* peft = &peft_model;
  const std::string weights = (fs::path(dir) / kWeightsFile).string();
  ASSIGN_OR_RETURN(auto tensors, LoadTensors(weights));
  std::set<std::string> used;
  for (const auto& [name, linear] : peft->linears()) {
    Adapter* adapter = linear->adapter().get();
    Adapter* inner = PeftModel::Unwrap(adapter);
    if (auto* ada = dynamic_cast<AdaLoraAdapter*>(inner)) {
      auto keep = config.adalora_rank_pattern.find(name);
      if (keep != config.adalora_rank_pattern.end()) {
        if (static_cast<int64_t>(keep->second.size()) != ada->options().init_r) {
          return absl::InvalidArgumentError(
              absl::StrCat(config_path, ": rank_pattern['", name, ".lora_E'] has ",
                           keep->second.size(), " entries, init_r is ", ada->options().init_r));
        }
        ada->SetKeep(keep->second);
      }
    }
    const std::string prefix = absl::StrCat(kPeftKeyPrefix, name, ".");
    std::map<std::string, torch::Tensor> mine;
    for (const auto& [key, t] : tensors) {
      if (key.rfind(prefix, 0) == 0) {
        std::string suffix = key.substr(prefix.size());
        // "lora_A.weight" belongs to this module; "lora_A" too; deeper module paths do not.
        if (suffix.find('.') == std::string::npos || suffix.rfind(".weight") == suffix.size() - 7) {
          // DoRA's magnitude: "lora_magnitude_vector" (PEFT's saved name, and ours) or, from
          // PEFT versions that save the parameter of its DoraLinearLayer as is, "….weight".
          if (suffix == "lora_magnitude_vector.weight") {
            suffix = "lora_magnitude_vector";
            if (tensors.count(prefix + suffix)) {
              return absl::InvalidArgumentError(absl::StrCat(weights, ": both '", key, "' and '",
                                                             prefix, suffix,
                                                             "' hold DoRA's magnitude of ", name));
            }
          }
          mine[suffix] = t.to(linear->weight.dtype());
          used.insert(key);
        }
      }
    }
    RETURN_IF_ERROR(
        Annotate(adapter->ImportTensors(mine), absl::StrCat(weights, ": module ", name)));
    if (auto* dhp = dynamic_cast<AdaDhpAdapter*>(inner)) {
      if (j.contains("active_modules") && j["active_modules"].contains(name) &&
          !j["active_modules"][name].get<bool>()) {
        dhp->Freeze();
      }
    }
    if (auto* gate = dynamic_cast<TokenGate*>(adapter)) {
      if (!j["token_gate"].contains("tau") || !j["token_gate"]["tau"].contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(config_path, ": token_gate.tau has no entry for ", name));
      }
      gate->set_tau(j["token_gate"]["tau"][name].get<double>());
    }
  }
  for (const auto& [name, keep] : config.adalora_rank_pattern) {
    if (!peft->linears().count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": rank_pattern['", name, ".lora_E'] names no adapted module"));
    }
  }
  // modules_to_save: copied into the model's own parameters.
  auto params = model->named_parameters();
  for (const auto& [key, t] : tensors) {
    if (used.count(key)) continue;
    const std::string name =
        key.rfind(kPeftKeyPrefix, 0) == 0 ? key.substr(std::strlen(kPeftKeyPrefix)) : key;
    torch::Tensor* p = params.find(name);
    bool listed = false;
    for (const auto& m : config.modules_to_save) listed = listed || name.rfind(m + ".", 0) == 0;
    if (!p || !listed) {
      return absl::InvalidArgumentError(absl::StrCat(
          weights, ": unexpected tensor '", key, "' (no adapted module or module to save has it)"));
    }
    if (!p->sizes().equals(t.sizes())) {
      return absl::InvalidArgumentError(absl::StrCat(weights, ": '", key, "' has shape ",
                                                     ShapeString(t), ", the model needs ",
                                                     ShapeString(*p)));
    }
    torch::NoGradGuard no_grad;
    p->copy_(t);
  }
  return absl::OkStatus();
}

absl::Status SaveMergedWeights(PeftModel& peft, const std::string& path,
                               const std::map<std::string, torch::Tensor>& extra,
                               const std::function<bool(const std::string& name)>& transposed) {
  for (const auto& [name, linear] : peft.linears()) {
    absl::Status st = linear->Merge();
    if (!st.ok()) {
      for (const auto& [n2, l2] : peft.linears()) {
        if (l2->merged()) (void)l2->Unmerge();
      }
      return Annotate(st, name);
    }
  }
  std::map<std::string, torch::Tensor> weights;
  for (const auto& item : peft.model().named_parameters()) {
    if (item.key().find(".adapter.") != std::string::npos) continue;
    torch::Tensor t = item.value().detach();
    weights[item.key()] = transposed && transposed(item.key()) ? t.t().contiguous() : t;
  }
  for (const auto& [name, t] : extra) weights.emplace(name, t.detach());
  absl::Status saved = SaveTensors(path, weights, {{"format", "pt"}});
  for (const auto& [name, linear] : peft.linears()) RETURN_IF_ERROR(linear->Unmerge());
  return saved;
}

}  // namespace peftd::adapters

// Adapter folders in the Hugging Face PEFT layout (METHODS.md "Adapter files"):
// adapter_config.json + adapter_model.safetensors (F32, metadata {"format": "pt"}), keys
// "base_model.model." + module path + the method's suffix. LoRA, DoRA and AdaLoRA are what
// PEFT's PeftModel.from_pretrained reads; HUT, ADADHP and gated adapters use the same layout
// with our own peft_type / "token_gate" fields.
#ifndef PEFTD_ADAPTERS_PEFT_FILES_H_
#define PEFTD_ADAPTERS_PEFT_FILES_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "adapters/peft_model.h"

namespace peftd::adapters {

inline constexpr char kPeftKeyPrefix[] = "base_model.model.";

// Writes `peft` as an adapter folder in `dir` (created if needed). `modules_to_save` holds extra
// trained tensors under their model names (e.g. "score.weight").
absl::Status SaveAdapter(PeftModel& peft, const std::string& dir,
                         const std::map<std::string, torch::Tensor>& modules_to_save = {});

// The config of an adapter folder.
absl::StatusOr<AdapterConfig> ReadAdapterConfig(const std::string& dir);

// Applies the adapter folder `dir` to `model`: attaches the adapters its config describes, loads
// their tensors (AdaLoRA's truncated by rank pattern; every τ of a gated adapter) and copies
// modules_to_save tensors into the model. Errors name the missing, unexpected or mis-shaped key.
absl::StatusOr<std::unique_ptr<PeftModel>> LoadAdapter(torch::nn::Module* model,
                                                       const std::string& dir);

// Loads the tensors of the adapter folder `dir` into `peft`, already applied to `model` with the
// same modules and shapes (continue training: JobSpec.init_from): AdaLoRA's rank pattern, AdaDHP's
// frozen modules, every τ of a gated adapter and the modules_to_save tensors too. Errors as
// LoadAdapter's.
absl::Status LoadAdapterWeights(torch::nn::Module* model, PeftModel& peft, const std::string& dir);

// Writes the model with every adapter merged (mergeable methods only) as HF weights under the
// model's parameter names (`model.layers.0.self_attn.q_proj.weight`, ...) to `path`, plus `extra`
// tensors (e.g. zero biases the merged config.json declares); the parameters `transposed` names
// are written transposed (GPT-2's Conv1D weights, stored (in, out)). The model is left unmerged.
absl::Status SaveMergedWeights(
    PeftModel& peft, const std::string& path,
    const std::map<std::string, torch::Tensor>& extra = {},
    const std::function<bool(const std::string& name)>& transposed = nullptr);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_PEFT_FILES_H_

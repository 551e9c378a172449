// A job spec against the model it trains, from the model's config.json alone (no weights, no
// LibTorch): the server runs this at submit, before anything is stored, and the worker runs it
// again before it loads the model (`peftd-worker train` has no server in front of it).
#ifndef PEFTD_COMMON_JOB_SPEC_MODEL_H_
#define PEFTD_COMMON_JOB_SPEC_MODEL_H_

#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/model_modules.h"
#include "peftd/v1/job.pb.h"

namespace peftd {

// What a spec becomes on a model.
struct SpecOnModel {
  model::ModelConfig config;                 // as the worker builds it (SEQ_CLS: a score head)
  std::vector<model::LinearModule> adapted;  // the modules that get an adapter, in model order
};

// Checks `spec` (after WithDefaults and ValidateJobSpec) against `config` (its base model's
// config.json). InvalidArgument whose message starts with the field, for:
//  - task: a *ForSequenceClassification checkpoint trains only as SEQ_CLS;
//  - num_labels / label_names: a classification checkpoint fixes the number of classes, and its
//    id2label the names, when it has names of its own (not HF's LABEL_0, LABEL_1, ...);
//  - layers_to_transform: an index outside [0, num_hidden_layers);
//  - target_modules / exclude_modules: an entry that selects no module (ModuleSelector::Resolve),
//    the message listing the module names the model has;
//  - adadhp.target_num: more modules than are adapted.
// Ranks above a module's min(in, out) are accepted, as PEFT accepts them: the update's rank is
// then at most min(in, out) and only the memory estimate bounds the cost.
//  - task on GPT-2 (CAUSAL_LM only), RoBERTa (SEQ_CLS only) and T5 (SEQ_2_SEQ_LM only);
//  - export_merged of a HUT job on T5: the merge adds biases T5's config.json cannot declare.
absl::StatusOr<SpecOnModel> ResolveSpecOnModel(const v1::JobSpec& spec,
                                               const model::ModelConfig& config);

// WithDefaults cannot see the model, so it defaults target_modules to the LLaMA family's; when
// `given` (the spec as submitted) names no target_modules, `spec` gets the model's own defaults
// (model::DefaultTargetModules: c_attn on GPT-2, as PEFT's mapping).
void ApplyModelDefaults(const v1::JobSpec& given, const model::ModelConfig& config,
                        v1::JobSpec* spec);

}  // namespace peftd

#endif  // PEFTD_COMMON_JOB_SPEC_MODEL_H_

#include "common/job_spec_model.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/module_pattern.h"
#include "common/status.h"

namespace peftd {
namespace {

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// Whether id2label holds names of its own rather than HF's placeholders LABEL_<i>.
bool HasOwnLabelNames(const model::ModelConfig& c) {
  for (size_t i = 0; i < c.id2label.size(); ++i) {
    if (c.id2label[i] != absl::StrCat("LABEL_", i)) return true;
  }
  return false;
}

// The classification head's module name: RoBERTa's and DeBERTa's `classifier`, the LLaMA family's
// `score`.
const char* HeadName(const model::ModelConfig& c) {
  return c.IsRoberta() || c.IsDebertaV2() ? "classifier" : "score";
}

// DeBERTa-v2/v3: a classifier only. Every ungated method merges (its Linear layers all have
// biases, into which HUT's folds; query_proj/key_proj's merged weights serve the relative
// positions too, as the un-gated adapter does): worker/merged_export*.
absl::Status CheckDebertaV2Task(const v1::JobSpec& spec, const model::ModelConfig& c) {
  if (spec.task() != v1::SEQ_CLS) {
    return FieldError("task",
                      absl::StrCat("base_model '", spec.base_model(), "' is a ", c.architecture,
                                   " checkpoint, an encoder: use task SEQ_CLS"));
  }
  return absl::OkStatus();
}

absl::Status CheckTask(const v1::JobSpec& spec, const model::ModelConfig& c) {
  if (c.IsT5()) {
    if (spec.task() != v1::SEQ_2_SEQ_LM) {
      return FieldError("task",
                        absl::StrCat("base_model '", spec.base_model(), "' is a ", c.architecture,
                                     " checkpoint (an encoder-decoder): use task "
                                     "SEQ_2_SEQ_LM"));
    }
    if (spec.export_merged() && spec.method() == v1::HUT) {
      return FieldError("export_merged",
                        absl::StrCat("base_model '", spec.base_model(),
                                     "' is T5: HUT's merge adds a bias (b = gamma*b0 + beta) to "
                                     "every adapted layer, and T5's layers have none, which a T5 "
                                     "config.json cannot declare; load the base model with the "
                                     "adapter instead, or train another method"));
    }
    return absl::OkStatus();
  }
  if (spec.task() == v1::SEQ_2_SEQ_LM) {
    return FieldError("task",
                      absl::StrCat("SEQ_2_SEQ_LM needs an encoder-decoder base model "
                                   "(T5ForConditionalGeneration); base_model '",
                                   spec.base_model(), "' is a ", c.architecture, " checkpoint"));
  }
  if (c.IsGpt2()) {
    if (spec.task() != v1::CAUSAL_LM) {
      return FieldError("task", absl::StrCat("base_model '", spec.base_model(), "' is a ",
                                             c.architecture, " checkpoint: use task CAUSAL_LM"));
    }
    return absl::OkStatus();
  }
  if (c.IsDebertaV2()) RETURN_IF_ERROR(CheckDebertaV2Task(spec, c));
  if (c.IsRoberta()) {
    if (spec.task() != v1::SEQ_CLS) {
      return FieldError("task",
                        absl::StrCat("base_model '", spec.base_model(), "' is a ", c.architecture,
                                     " checkpoint, an encoder: use task SEQ_CLS"));
    }
  }
  if (!c.sequence_classification) return absl::OkStatus();
  if (spec.task() != v1::SEQ_CLS) {
    return FieldError("task",
                      absl::StrCat("base_model '", spec.base_model(), "' is a ", c.architecture,
                                   " checkpoint (a ", HeadName(c), " head of ", c.num_labels,
                                   " classes): use task SEQ_CLS"));
  }
  if (spec.num_labels() != c.num_labels) {
    return FieldError(
        "num_labels",
        absl::StrCat("base_model '", spec.base_model(), "' has a ", HeadName(c), " head of ",
                     c.num_labels, " classes (config.json), the job asks for ", spec.num_labels()));
  }
  if (spec.label_names_size() > 0 && HasOwnLabelNames(c) &&
      c.id2label.size() == static_cast<size_t>(spec.label_names_size())) {
    for (int i = 0; i < spec.label_names_size(); ++i) {
      if (spec.label_names(i) != c.id2label[i]) {
        return FieldError(
            absl::StrCat("label_names[", i, "]"),
            absl::StrCat("'", spec.label_names(i), "' differs from config.json id2label[", i,
                         "] = '", c.id2label[i], "' of base_model (its classes: ",
                         absl::StrJoin(c.id2label, ", "), "); give the same names or none"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SpecOnModel> ResolveSpecOnModel(const v1::JobSpec& spec,
                                               const model::ModelConfig& config) {
  RETURN_IF_ERROR(CheckTask(spec, config));
  SpecOnModel out;
  out.config =
      model::ConfigForNumLabels(config, spec.task() == v1::SEQ_CLS ? spec.num_labels() : 0);
  for (int i = 0; i < spec.layers_to_transform_size(); ++i) {
    const int64_t layer = spec.layers_to_transform(i);
    // T5 counts encoder and decoder blocks each from 0 (common/module_pattern.h: "block.N").
    const int64_t layers = std::max(out.config.num_hidden_layers, out.config.num_decoder_layers);
    if (layer < 0 || layer >= layers) {
      return FieldError(absl::StrCat("layers_to_transform[", i, "]"),
                        absl::StrCat("layer ", layer, " is outside [0, ", layers, "): base_model '",
                                     spec.base_model(), "' has ",
                                     out.config.IsT5() ? "num_layers (and num_decoder_layers)"
                                                       : "num_hidden_layers",
                                     " = ", layers));
    }
  }
  ASSIGN_OR_RETURN(
      ModuleSelector selector,
      ModuleSelector::Compile(
          std::vector<std::string>(spec.target_modules().begin(), spec.target_modules().end()),
          std::vector<std::string>(spec.exclude_modules().begin(), spec.exclude_modules().end()),
          std::vector<int64_t>(spec.layers_to_transform().begin(),
                               spec.layers_to_transform().end())));
  std::vector<model::LinearModule> modules = model::LinearModules(out.config);
  std::vector<std::string> names;
  names.reserve(modules.size());
  for (const auto& m : modules) names.push_back(m.name);
  ASSIGN_OR_RETURN(std::vector<std::string> selected, selector.Resolve(names));
  size_t next = 0;
  for (const auto& m : modules) {
    if (next < selected.size() && selected[next] == m.name) {
      out.adapted.push_back(m);
      ++next;
    }
  }
  if (spec.has_adadhp() && spec.adadhp().target_num() > static_cast<int64_t>(out.adapted.size())) {
    return FieldError("adadhp.target_num",
                      absl::StrCat("must be in [0, ", out.adapted.size(),
                                   "] (the adapted modules), got ", spec.adadhp().target_num()));
  }
  return out;
}

void ApplyModelDefaults(const v1::JobSpec& given, const model::ModelConfig& config,
                        v1::JobSpec* spec) {
  if (given.target_modules_size() > 0) return;
  spec->clear_target_modules();
  for (const std::string& m : model::DefaultTargetModules(config)) spec->add_target_modules(m);
}

}  // namespace peftd

#include "worker/load_trainable.h"

#include <utility>

#include "common/status.h"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/gpt2_loader.h"
#include "worker/model/roberta_loader.h"
#include "worker/model/t5_loader.h"
#include "worker/train/peft_gpt2.h"
#include "worker/train/peft_t5.h"

namespace peftd::worker {

absl::StatusOr<LoadedTrainable> LoadTrainable(const std::string& model_dir,
                                              const model::ModelConfig& config,
                                              const std::string& what,
                                              const model::LoadOptions& load,
                                              adapters::AdapterConfig adapter, int64_t total_steps,
                                              uint64_t seed) {
  LoadedTrainable out;
  if (config.IsGpt2()) {
    absl::StatusOr<model::Gpt2> gpt2 = model::LoadGpt2(model_dir, load);
    if (!gpt2.ok()) return Annotate(gpt2.status(), what);
    adapter.fan_in_fan_out = true;
    torch::manual_seed(seed);
    ASSIGN_OR_RETURN(std::unique_ptr<adapters::PeftModel> peft,
                     adapters::PeftModel::Apply(gpt2->get(), std::move(adapter), total_steps));
    auto trainable = std::make_unique<train::PeftGpt2>(*gpt2, std::move(peft));
    out.peft = &trainable->peft();
    out.model = trainable->model().get();
    out.trainable = std::move(trainable);
    return out;
  }
  if (config.IsRoberta()) {
    absl::StatusOr<model::Roberta> roberta = model::LoadRoberta(model_dir, load);
    if (!roberta.ok()) return Annotate(roberta.status(), what);
    adapter.modules_to_save = {"classifier"};
    torch::manual_seed(seed);
    ASSIGN_OR_RETURN(std::unique_ptr<adapters::PeftModel> peft,
                     adapters::PeftModel::Apply(roberta->get(), std::move(adapter), total_steps));
    auto trainable = std::make_unique<train::PeftRoberta>(*roberta, std::move(peft));
    out.peft = &trainable->peft();
    out.model = trainable->model().get();
    out.roberta = trainable.get();
    out.trainable = std::move(trainable);
    return out;
  }
  if (config.IsDebertaV2()) {
    absl::StatusOr<model::DebertaV2> deberta = model::LoadDebertaV2(model_dir, load);
    if (!deberta.ok()) return Annotate(deberta.status(), what);
    adapter.modules_to_save = {"classifier"};
    torch::manual_seed(seed);
    ASSIGN_OR_RETURN(std::unique_ptr<adapters::PeftModel> peft,
                     adapters::PeftModel::Apply(deberta->get(), std::move(adapter), total_steps));
    auto trainable = std::make_unique<train::PeftDebertaV2>(*deberta, std::move(peft));
    out.peft = &trainable->peft();
    out.model = trainable->model().get();
    out.deberta = trainable.get();
    out.trainable = std::move(trainable);
    return out;
  }
  if (config.IsT5()) {
    absl::StatusOr<model::T5> t5 = model::LoadT5(model_dir, load);
    if (!t5.ok()) return Annotate(t5.status(), what);
    torch::manual_seed(seed);
    ASSIGN_OR_RETURN(std::unique_ptr<adapters::PeftModel> peft,
                     adapters::PeftModel::Apply(t5->get(), std::move(adapter), total_steps));
    auto trainable = std::make_unique<train::PeftT5>(*t5, std::move(peft));
    out.peft = &trainable->peft();
    out.model = trainable->model().get();
    out.trainable = std::move(trainable);
    return out;
  }
  absl::StatusOr<model::Llama> llama = model::LoadLlama(model_dir, load);
  if (!llama.ok()) return Annotate(llama.status(), what);
  torch::manual_seed(seed);
  ASSIGN_OR_RETURN(std::unique_ptr<adapters::PeftModel> peft,
                   adapters::PeftModel::Apply(llama->get(), std::move(adapter), total_steps));
  auto trainable = std::make_unique<train::PeftLlama>(*llama, std::move(peft));
  out.peft = &trainable->peft();
  out.model = trainable->model().get();
  out.llama = trainable.get();
  out.trainable = std::move(trainable);
  return out;
}

}  // namespace peftd::worker

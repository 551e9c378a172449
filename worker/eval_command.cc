#include "worker/eval_command.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "adapters/peft_files.h"
#include "adapters/safetensors_torch.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/gpt2.h"
#include "worker/model/gpt2_loader.h"
#include "worker/model/hf_loader.h"
#include "worker/model/roberta_loader.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;
using nlohmann::json;

// A SEQ_CLS adapter carries its head: the model must be built with that many classes.
absl::StatusOr<int64_t> AdapterNumLabels(const std::string& adapter_dir) {
  ASSIGN_OR_RETURN(adapters::AdapterConfig config, adapters::ReadAdapterConfig(adapter_dir));
  if (config.task_type != "SEQ_CLS") return 0;
  const std::string path = (fs::path(adapter_dir) / "adapter_model.safetensors").string();
  ASSIGN_OR_RETURN(safetensors::File file, safetensors::File::Open(path));
  // The head's output layer: the LLaMA family's score, RoBERTa's classifier.out_proj, DeBERTa's
  // classifier.
  std::string key = std::string(adapters::kPeftKeyPrefix) + "score.weight";
  const std::string roberta_key =
      std::string(adapters::kPeftKeyPrefix) + "classifier.out_proj.weight";
  if (!file.Get(key).ok() && file.Get(roberta_key).ok()) key = roberta_key;
  // DeBERTa's classifier is one Linear.
  const std::string deberta_key = std::string(adapters::kPeftKeyPrefix) + "classifier.weight";
  if (!file.Get(key).ok() && file.Get(deberta_key).ok()) key = deberta_key;
  absl::StatusOr<safetensors::TensorView> score = file.Get(key);
  if (!score.ok() || score->shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a SEQ_CLS adapter needs a 2-D '", key, "'"));
  }
  return score->shape[0];
}

absl::StatusOr<EvalResult> RunEvalImpl(const EvalCommandOptions& o) {
  std::ifstream in(o.inputs_file);
  if (!in) return absl::NotFoundError(absl::StrCat("--inputs ", o.inputs_file, ": cannot read"));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<std::vector<std::vector<int64_t>>> rows = ParseInputIds(ss.str());
  if (!rows.ok()) return Annotate(rows.status(), absl::StrCat("--inputs ", o.inputs_file));
  torch::set_num_threads(o.threads > 0 ? o.threads
                                       : std::max(1u, std::thread::hardware_concurrency()));

  model::LoadOptions load;
  load.device = model::DefaultDevice();
  if (!o.adapter_dir.empty()) {
    ASSIGN_OR_RETURN(load.num_labels, AdapterNumLabels(o.adapter_dir));
  }
  ASSIGN_OR_RETURN(model::ModelConfig config, model::ReadModelConfig(o.model_dir));
  // The model, whatever its family, as a module and its logits function.
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> forward;
  if (config.IsT5()) {
    // Its inputs are input/target pairs, which --inputs (rows of ids) cannot express.
    return absl::UnimplementedError(absl::StrCat(
        "--model ", o.model_dir, ": ", config.architecture,
        " (SEQ_2_SEQ_LM) is not evaluated by `eval` yet; a job's validation_dataset_id gives its "
        "eval loss"));
  }
  if (config.IsGpt2()) {
    ASSIGN_OR_RETURN(model::Gpt2 gpt2, model::LoadGpt2(o.model_dir, load));
    module = gpt2.ptr();
    forward = [gpt2](const torch::Tensor& ids, const torch::Tensor& mask) mutable {
      return gpt2->forward(ids, mask);
    };
  } else if (config.IsRoberta()) {
    ASSIGN_OR_RETURN(model::Roberta roberta, model::LoadRoberta(o.model_dir, load));
    config = roberta->config();
    module = roberta.ptr();
    forward = [roberta](const torch::Tensor& ids, const torch::Tensor& mask) mutable {
      return roberta->forward(ids, mask);
    };
  } else if (config.IsDebertaV2()) {
    ASSIGN_OR_RETURN(model::DebertaV2 deberta, model::LoadDebertaV2(o.model_dir, load));
    config = deberta->config();
    module = deberta.ptr();
    forward = [deberta](const torch::Tensor& ids, const torch::Tensor& mask) mutable {
      return deberta->forward(ids, mask);
    };
  } else {
    ASSIGN_OR_RETURN(model::Llama llama, model::LoadLlama(o.model_dir, load));
    config = llama->config();
    module = llama.ptr();
    forward = [llama](const torch::Tensor& ids, const torch::Tensor& mask) mutable {
      return llama->forward(ids, mask);
    };
  }
  std::unique_ptr<adapters::PeftModel> peft;
  if (!o.adapter_dir.empty()) {
    ASSIGN_OR_RETURN(peft, adapters::LoadAdapter(module.get(), o.adapter_dir));
  }

  const int64_t batch = static_cast<int64_t>(rows->size());
  int64_t seq = 1;
  for (const auto& r : *rows) seq = std::max<int64_t>(seq, static_cast<int64_t>(r.size()));
  const int64_t pad =
      config.pad_token_id >= 0 && config.pad_token_id < config.vocab_size ? config.pad_token_id : 0;
  torch::Tensor ids = torch::full({batch, seq}, pad, torch::kLong);
  torch::Tensor mask = torch::zeros({batch, seq}, torch::kLong);
  for (int64_t b = 0; b < batch; ++b) {
    const auto& r = (*rows)[b];
    for (size_t t = 0; t < r.size(); ++t) {
      if (r[t] >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("--inputs ", o.inputs_file, ": row ", b,
                                                       " position ", t, ": id ", r[t],
                                                       " >= vocab_size ", config.vocab_size));
      }
      ids[b][static_cast<int64_t>(t)] = r[t];
      mask[b][static_cast<int64_t>(t)] = 1;
    }
  }

  torch::NoGradGuard no_grad;
  module->eval();
  torch::Tensor dev_ids = ids.to(load.device), dev_mask = mask.to(load.device);
  if (peft) peft->gate_context().token_mask = dev_mask;
  torch::Tensor logits = forward(dev_ids, dev_mask).to(torch::kCPU, torch::kFloat32);

  EvalResult result;
  result.batch = batch;
  result.seq = seq;
  if (!config.sequence_classification && seq > 1) {
    // Position t predicts token t + 1, where both are real (right padding).
    torch::Tensor pred = logits.narrow(1, 0, seq - 1).reshape({-1, logits.size(2)});
    torch::Tensor target = ids.narrow(1, 1, seq - 1).reshape({-1});
    torch::Tensor valid = mask.narrow(1, 1, seq - 1).reshape({-1}).to(torch::kBool);
    result.loss_tokens = valid.sum().item<int64_t>();
    if (result.loss_tokens > 0) {
      result.loss = F::cross_entropy(pred.index({valid}), target.index({valid})).item<double>();
    }
  }
  if (!o.dump_logits.empty()) {
    RETURN_IF_ERROR(adapters::SaveTensors(
        o.dump_logits, {{"logits", logits}, {"attention_mask", mask}}, {{"format", "pt"}}));
  }
  return result;
}

}  // namespace

absl::StatusOr<std::vector<std::vector<int64_t>>> ParseInputIds(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_array() || j.empty()) {
    return absl::InvalidArgumentError("expected a non-empty JSON array of arrays of token ids");
  }
  std::vector<std::vector<int64_t>> rows;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_array() || j[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("row ", i, ": expected a non-empty array"));
    }
    std::vector<int64_t> row;
    for (size_t k = 0; k < j[i].size(); ++k) {
      const json& v = j[i][k];
      if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("row ", i, " position ", k, ": expected a token id (integer >= 0)"));
      }
      row.push_back(v.get<int64_t>());
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<EvalResult> RunEval(const EvalCommandOptions& options) {
  try {
    return RunEvalImpl(options);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LibTorch error: ", e.what_without_backtrace()));
  }
}

int RunEvalCommand(const EvalCommandOptions& options) {
  absl::StatusOr<EvalResult> r = RunEval(options);
  if (!r.ok()) {
    std::fprintf(stderr, "peftd-worker eval: %s\n", std::string(r.status().message()).c_str());
    return 1;
  }
  if (options.print_loss) {
    std::printf("loss %.6f over %lld predicted tokens\n", r->loss,
                static_cast<long long>(r->loss_tokens));
  }
  if (!options.dump_logits.empty()) {
    std::printf("wrote logits [%lld, %lld, ...] to %s\n", static_cast<long long>(r->batch),
                static_cast<long long>(r->seq), options.dump_logits.c_str());
  }
  return 0;
}

}  // namespace peftd::worker

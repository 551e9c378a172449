// The merged export of GPT-2, RoBERTa, DeBERTa-v3 and T5 (issue 14): for every mergeable method,
// the folder ExportMerged writes loads back through the family's own loader as the same function as
// base + adapter, in double precision; GPT-2's Conv1D weights are written (in, out), which the
// Python transcription of transformers' GPT-2 (gpt2_reference.py) confirms by reading the merged
// folder as transformers would; RoBERTa's and DeBERTa's trained classifier replaces the base's and
// config.json says its classes; DeBERTa's merged query_proj/key_proj serve its relative positions
// as the adapter did (the reload runs them through the merged weights only); HUT folds into
// GPT-2's, RoBERTa's and DeBERTa's biases and is refused on bias-free T5, with the reason.
#include "worker/merged_export.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "tests/worker_run/test_data.h"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/gpt2_loader.h"
#include "worker/model/roberta_loader.h"
#include "worker/model/t5_loader.h"
#include "worker/model/tiny_deberta_v2.h"
#include "worker/model/tiny_gpt2.h"
#include "worker/model/tiny_roberta.h"
#include "worker/model/tiny_t5.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;
using nlohmann::json;

constexpr int64_t kRank = 4;

AdapterConfig Config(MethodKind method, std::vector<std::string> targets) {
  AdapterConfig c;
  c.method = method;
  c.lora = {.r = kRank, .alpha = 8};
  c.adalora = {.init_r = kRank, .alpha = 8};
  c.adalora_schedule.init_r = kRank;
  c.adalora_schedule.target_r = 2;
  c.adalora_schedule.tinit = 2;
  c.adalora_schedule.tfinal = 2;
  c.adalora_schedule.total_step = 20;
  c.hut = {.r = kRank};
  c.targets.target_modules = std::move(targets);
  return c;
}

// Moves every adapter parameter away from its initialisation (LoRA's B starts at 0, HUT's γ at 1),
// so that each one changes the merged weights.
void Perturb(adapters::PeftModel& peft) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  for (auto& item : peft.model().named_parameters()) {
    if (item.key().find(".adapter.") == std::string::npos) continue;
    item.value().add_(torch::randn_like(item.value()) * 0.3);
  }
}

model::LoadOptions Double() {
  model::LoadOptions o;
  o.dtype = torch::kDouble;
  return o;
}

// A family: its tiny folder, its default-plus targets, and logits of a fixed batch.
struct Family {
  std::string name;
  std::function<absl::Status(const std::string&)> write;
  std::vector<std::string> targets;
  // Loads `dir` in double and runs RunFamily.
  std::function<std::vector<torch::Tensor>(const std::string& dir, const AdapterConfig* adapter,
                                           const fs::path& exported)>
      logits;
};

torch::Tensor Ids() {
  return torch::tensor({{0, 40, 41, 42, 43, 7, 2}, {0, 7, 8, 9, 2, 1, 1}}, torch::kLong);
}
torch::Tensor Mask() {
  return torch::tensor({{1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 0, 0}}, torch::kLong);
}

// Applies `adapter` (when given) to `model`, perturbs it, exports the merged folder to `exported`
// (when non-empty) and returns forward() of the adapted model, then of the same model merged in
// place with its tensors rounded to float32; without an adapter, forward() of the base.
template <typename Model, typename Forward>
std::vector<torch::Tensor> RunFamily(Model& model, const model::ModelConfig& config,
                                     const AdapterConfig* adapter, const fs::path& exported,
                                     const std::string& base_dir, Forward forward) {
  model->eval();
  torch::NoGradGuard no_grad;
  if (adapter == nullptr) return {forward()};
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), *adapter, 20);
  EXPECT_TRUE(peft.ok()) << peft.status();
  if (!peft.ok()) return {};
  Perturb(**peft);
  if (config.IsRoberta() || config.IsDebertaV2()) {
    // The classifier trains whole (modules_to_save): the merged folder must carry the trained one.
    for (auto& item : model->named_parameters()) {
      if (item.key().rfind("classifier.", 0) == 0) item.value().add_(0.5);
    }
  }
  torch::Tensor out = forward();
  if (!exported.empty()) {
    const MergedBiases biases = PlanMergedBiases(**peft, config);
    EXPECT_TRUE(biases.why_not.empty()) << biases.why_not;
    EXPECT_FALSE(biases.changed) << "every layer of " << config.architecture << " has a bias";
    v1::JobSpec spec;
    spec.add_label_names("negative");
    spec.add_label_names("positive");
    const absl::Status st = ExportMerged(**peft, config, biases, base_dir, exported, spec, nullptr);
    EXPECT_TRUE(st.ok()) << st;
  }
  // The loaders hold a checkpoint's tensors in float32 before the double cast, so the reloaded
  // folder is the merged model with every tensor rounded to float32: that model's logits too.
  for (const auto& [name, linear] : (*peft)->linears()) EXPECT_TRUE(linear->Merge().ok()) << name;
  for (auto& item : model->named_parameters()) {
    item.value().copy_(item.value().to(torch::kFloat).to(torch::kDouble));
  }
  return {out, forward()};
}

std::vector<Family> Families() {
  std::vector<Family> f;
  f.push_back({"gpt2",
               [](const std::string& d) { return model::WriteTinyGpt2Model(d); },
               {"c_attn", "c_proj", "c_fc"},
               [](const std::string& dir, const AdapterConfig* a, const fs::path& out) {
                 auto m = model::LoadGpt2(dir, Double());
                 EXPECT_TRUE(m.ok()) << m.status();
                 if (!m.ok()) return std::vector<torch::Tensor>{};
                 AdapterConfig c = a ? *a : AdapterConfig{};
                 c.fan_in_fan_out = true;
                 return RunFamily(*m, (*m)->config(), a ? &c : nullptr, out, dir,
                                  [&] { return (*m)->forward(Ids(), Mask()); });
               }});
  f.push_back({"roberta",
               [](const std::string& d) { return model::WriteTinyRobertaModel(d); },
               {"query", "key", "value", "dense"},
               [](const std::string& dir, const AdapterConfig* a, const fs::path& out) {
                 auto m = model::LoadRoberta(dir, Double());
                 EXPECT_TRUE(m.ok()) << m.status();
                 if (!m.ok()) return std::vector<torch::Tensor>{};
                 AdapterConfig c = a ? *a : AdapterConfig{};
                 c.modules_to_save = {"classifier"};
                 return RunFamily(*m, (*m)->config(), a ? &c : nullptr, out, dir,
                                  [&] { return (*m)->forward(Ids(), Mask()); });
               }});
  f.push_back({"deberta",
               [](const std::string& d) { return model::WriteTinyDebertaV2Model(d); },
               {"query_proj", "key_proj", "value_proj", "intermediate.dense", "output.dense"},
               [](const std::string& dir, const AdapterConfig* a, const fs::path& out) {
                 auto m = model::LoadDebertaV2(dir, Double());
                 EXPECT_TRUE(m.ok()) << m.status();
                 if (!m.ok()) return std::vector<torch::Tensor>{};
                 AdapterConfig c = a ? *a : AdapterConfig{};
                 c.modules_to_save = {"classifier"};
                 return RunFamily(*m, (*m)->config(), a ? &c : nullptr, out, dir,
                                  [&] { return (*m)->forward(Ids(), Mask()); });
               }});
  f.push_back(
      {"t5",
       [](const std::string& d) { return model::WriteTinyT5Model(d); },
       {"q", "k", "v", "o", "wi_0", "wi_1", "wo", "lm_head"},
       [](const std::string& dir, const AdapterConfig* a, const fs::path& out) {
         auto m = model::LoadT5(dir, Double());
         EXPECT_TRUE(m.ok()) << m.status();
         if (!m.ok()) return std::vector<torch::Tensor>{};
         const torch::Tensor labels = torch::tensor({{5, 6, 7, 2}, {8, 9, 2, -100}}, torch::kLong);
         return RunFamily(*m, (*m)->config(), a, out, dir,
                          [&] { return (*m)->forward(Ids(), Mask(), labels); });
       }});
  return f;
}

std::string MethodLabel(MethodKind m) { return adapters::MethodName(m); }

class MergedExportTest : public ::testing::TestWithParam<std::tuple<int, MethodKind>> {};

TEST_P(MergedExportTest, MergedFolderLoadsBackAsBasePlusAdapter) {
  const auto [family_index, method] = GetParam();
  const Family family = Families()[family_index];
  const fs::path root = testing::FreshDir("merged_" + family.name + "_" + MethodLabel(method));
  const fs::path base = root / "base", merged = root / "merged";
  ASSERT_TRUE(family.write(base.string()).ok());
  const AdapterConfig adapter = Config(method, family.targets);
  const std::vector<torch::Tensor> before = family.logits(base.string(), nullptr, {});
  const std::vector<torch::Tensor> adapted = family.logits(base.string(), &adapter, merged);
  const std::vector<torch::Tensor> reloaded = family.logits(merged.string(), nullptr, {});
  ASSERT_EQ(before.size(), 1u);
  ASSERT_EQ(adapted.size(), 2u);
  ASSERT_EQ(reloaded.size(), 1u);
  ASSERT_FALSE(torch::allclose(before[0], adapted[0], 1e-3, 1e-3)) << "the adapter changes nothing";
  // Exactly the merged model (as the loader rounds it), and base + adapter to float32 rounding.
  EXPECT_TRUE(torch::allclose(reloaded[0], adapted[1], 1e-10, 1e-10))
      << (reloaded[0] - adapted[1]).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(reloaded[0], adapted[0], 1e-4, 1e-4))
      << (reloaded[0] - adapted[0]).abs().max().item<double>();

  // A plain checkpoint: no adapter tensors, the tokenizer beside it, the trained config.
  const char* tokenizer = family.name == "deberta" ? "spm.model" : "tokenizer.json";
  for (const char* f : {"config.json", "model.safetensors", tokenizer}) {
    EXPECT_TRUE(fs::exists(merged / f)) << f;
  }
  auto weights = adapters::LoadTensors((merged / "model.safetensors").string());
  ASSERT_TRUE(weights.ok()) << weights.status();
  for (const auto& [name, t] : *weights) {
    EXPECT_EQ(name.find("adapter"), std::string::npos) << name;
  }
  const json config = json::parse(std::ifstream(merged / "config.json"));
  if (family.name == "gpt2") {
    EXPECT_EQ(config["architectures"], json::array({"GPT2LMHeadModel"}));
    // Conv1D: (in, out) as the base stores it; c_fc is 64 -> 256.
    EXPECT_EQ(weights->at("transformer.h.0.mlp.c_fc.weight").sizes(),
              (std::vector<int64_t>{64, 256}));
    EXPECT_EQ(weights->count("lm_head.weight"), 0u) << "tied, as the base";
  } else if (family.name == "roberta") {
    EXPECT_EQ(config["architectures"], json::array({"RobertaForSequenceClassification"}));
    EXPECT_EQ(config["id2label"]["1"], "positive") << config.dump();
    EXPECT_EQ(config["num_labels"], 2);
    EXPECT_TRUE(weights->count("classifier.out_proj.weight"));
  } else if (family.name == "deberta") {
    EXPECT_EQ(config["architectures"], json::array({"DebertaV2ForSequenceClassification"}));
    EXPECT_EQ(config["id2label"]["1"], "positive") << config.dump();
    EXPECT_EQ(config["label2id"]["negative"], 0) << config.dump();
    EXPECT_EQ(config["num_labels"], 2);
    EXPECT_TRUE(fs::exists(merged / "tokenizer_config.json"));
    // The trained classifier (moved by 0.5 above) in place of the base's; the frozen pooler as the
    // base has it; the relative embeddings kept.
    auto base_weights = adapters::LoadTensors((base / "model.safetensors").string());
    ASSERT_TRUE(base_weights.ok()) << base_weights.status();
    for (const char* name : {"pooler.dense.weight", "pooler.dense.bias",
                             "deberta.encoder.rel_embeddings.weight", "classifier.weight"}) {
      ASSERT_TRUE(weights->count(name)) << name;
      ASSERT_TRUE(base_weights->count(name)) << name;
      const bool same = torch::equal(weights->at(name), base_weights->at(name));
      EXPECT_EQ(same, std::string(name) != "classifier.weight") << name;
    }
  } else {
    EXPECT_EQ(config["architectures"], json::array({"T5ForConditionalGeneration"}));
    EXPECT_TRUE(weights->count("shared.weight"));
  }
}

// Every family and method but HUT on T5 (refused: HutOnT5HasNoMergedModelAndSaysWhy).
constexpr int kT5 = 3;
std::vector<std::tuple<int, MethodKind>> Mergeable() {
  std::vector<std::tuple<int, MethodKind>> out;
  for (int family : {0, 1, 2, kT5}) {
    for (MethodKind m : {MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                         MethodKind::kHut, MethodKind::kAdaDhp}) {
      if (family != kT5 || m != MethodKind::kHut) out.emplace_back(family, m);
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(FamiliesAndMethods, MergedExportTest, ::testing::ValuesIn(Mergeable()),
                         [](const auto& info) {
                           return Families()[std::get<0>(info.param)].name + "_" +
                                  MethodLabel(std::get<1>(info.param));
                         });

TEST(MergedExport, HutOnT5HasNoMergedModelAndSaysWhy) {
  const fs::path root = testing::FreshDir("merged_t5_hut");
  ASSERT_TRUE(model::WriteTinyT5Model(root.string()).ok());
  auto m = model::LoadT5(root.string(), Double());
  ASSERT_TRUE(m.ok()) << m.status();
  auto peft = adapters::PeftModel::Apply(m->get(), Config(MethodKind::kHut, {"q", "v"}), 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  const MergedBiases biases = PlanMergedBiases(**peft, (*m)->config());
  EXPECT_NE(biases.why_not.find("HUT's beta adds a bias to "), std::string::npos) << biases.why_not;
  EXPECT_NE(biases.why_not.find(".SelfAttention."), std::string::npos) << biases.why_not;
  EXPECT_NE(biases.why_not.find("T5ForConditionalGeneration config.json cannot declare"),
            std::string::npos)
      << biases.why_not;
}

// A python3 with torch: Debian's (/usr/bin/python3 with python3-torch) or the one on PATH.
std::string PythonWithTorch() {
  for (const char* python : {"/usr/bin/python3", "python3"}) {
    const std::string cmd = std::string(python) + " -c 'import torch, numpy' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return python;
  }
  return "";
}

// The orientation of the merged Conv1D weights as transformers reads them: the transcription of
// transformers' GPT-2 (x @ W + b with W (in, out)) on the merged folder, whose double tensors it
// reads as they are, gives our base + adapter's logits to double rounding, for every method. A
// merge written (out, in) fails here (c_attn is 64 -> 192: the shapes would not even multiply).
TEST(MergedExport, Gpt2MergedFolderGivesTheAdaptedLogitsInTheTranscription) {
  const std::string python = PythonWithTorch();
  if (python.empty()) GTEST_SKIP() << "no python3 with torch";
  const Family gpt2 = Families()[0];
  for (MethodKind method : {MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                            MethodKind::kHut, MethodKind::kAdaDhp}) {
    SCOPED_TRACE(MethodLabel(method));
    const fs::path root = testing::FreshDir("merged_gpt2_py_" + MethodLabel(method));
    const fs::path base = root / "base", merged = root / "merged";
    ASSERT_TRUE(gpt2.write(base.string()).ok());
    const AdapterConfig adapter = Config(method, gpt2.targets);
    const std::vector<torch::Tensor> both = gpt2.logits(base.string(), &adapter, merged);
    ASSERT_EQ(both.size(), 2u);
    const torch::Tensor adapted = both[0];
    json in;
    const torch::Tensor ids = Ids(), mask = Mask();
    for (int64_t b = 0; b < ids.size(0); ++b) {
      std::vector<int64_t> row_ids, row_mask;
      for (int64_t t = 0; t < ids.size(1); ++t) {
        row_ids.push_back(ids[b][t].item<int64_t>());
        row_mask.push_back(mask[b][t].item<int64_t>());
      }
      in["input_ids"].push_back(row_ids);
      in["attention_mask"].push_back(row_mask);
    }
    std::ofstream(root / "input.json") << in.dump();
    const fs::path out = root / "logits.bin";
    const std::string cmd = python + " " + PEFTD_SOURCE_DIR +
                            "/tests/worker_model/gpt2_reference.py " + merged.string() + " " +
                            (root / "input.json").string() + " " + out.string() + " float64";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream f(out, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
    ASSERT_EQ(bytes.size(), static_cast<size_t>(adapted.numel()) * sizeof(double));
    const torch::Tensor want =
        torch::from_blob(bytes.data(), adapted.sizes(), torch::kDouble).clone();
    // Real tokens only: HF gives padded positions other values, which no loss reads.
    const torch::Tensor real = mask.to(torch::kBool);
    EXPECT_TRUE(torch::allclose(want.index({real}), adapted.index({real}), 1e-9, 1e-9))
        << (want.index({real}) - adapted.index({real})).abs().max().item<double>();
  }
}

}  // namespace
}  // namespace peftd::worker

// Adapter folders in the PEFT layout: keys, shapes and config fields exactly as METHODS.md, and
// save → load → forward bit-exact for every method, gated or not.
#include "adapters/peft_files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"

namespace peftd::adapters {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr int64_t kHidden = 8, kKv = 4;

// model.layers.N.self_attn.{q,k,v}_proj, as in a LLaMA checkpoint.
struct AttnImpl : torch::nn::Module {
  AttnImpl() {
    q_proj = register_module("q_proj", Linear(kHidden, kHidden, false));
    k_proj = register_module("k_proj", Linear(kHidden, kKv, false));
    v_proj = register_module("v_proj", Linear(kHidden, kKv, true));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return q_proj->forward(x).sum(-1, true) + k_proj->forward(x).sum(-1, true) * v_proj->forward(x);
  }
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr};
};
TORCH_MODULE(Attn);
struct LayerImpl : torch::nn::Module {
  LayerImpl() { self_attn = register_module("self_attn", Attn()); }
  Attn self_attn{nullptr};
};
TORCH_MODULE(Layer);
struct InnerImpl : torch::nn::Module {
  InnerImpl() {
    layers = register_module("layers", torch::nn::ModuleList());
    for (int i = 0; i < 2; ++i) layers->push_back(Layer());
  }
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(Inner);
struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    model = register_module("model", Inner());
    score = register_module("score", Linear(kKv, 2, false));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = torch::zeros({x.size(0), kKv});
    for (const auto& l : *model->layers) h = h + l->as<LayerImpl>()->self_attn->forward(x);
    return score->forward(h);
  }
  Inner model{nullptr};
  Linear score{nullptr};
};
TORCH_MODULE(Tiny);

Tiny MakeModel(int seed) {
  torch::manual_seed(seed);
  Tiny m;
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_();
  return m;
}

void Perturb(PeftModel& peft) {
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : peft.TrainableTensors()) t.add_(torch::randn_like(t) * 0.2);
}

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_files_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

json ReadConfig(const fs::path& dir) {
  std::ifstream in(dir / "adapter_config.json");
  return json::parse(in);
}

AdapterConfig Config(MethodKind kind, bool gated) {
  AdapterConfig c;
  c.method = kind;
  c.lora = {.r = 2, .alpha = 4};
  c.adalora = {.init_r = 3, .alpha = 6};
  c.adalora_schedule = {.target_r = 2, .tinit = 1, .tfinal = 1, .total_step = 10};
  c.hut = {.r = 2};
  if (gated) c.gate = GateOptions{.s = 1e-4, .lambda = 1e-5};
  c.targets.target_modules = {"q_proj", "v_proj"};
  c.base_model_name_or_path = "tiny-llama";
  return c;
}

struct Case {
  MethodKind kind;
  bool gated;
};

class PeftFilesTest : public ::testing::TestWithParam<Case> {};

TEST_P(PeftFilesTest, SaveLoadForwardIsBitExact) {
  const auto [kind, gated] = GetParam();
  Tiny model = MakeModel(1);
  auto peft = PeftModel::Apply(model.get(), Config(kind, gated), 10);
  ASSERT_TRUE(peft.ok()) << peft.status();
  Perturb(**peft);
  for (const auto& [name, linear] : (*peft)->linears()) {
    Adapter* inner = PeftModel::Unwrap(linear->adapter().get());
    if (auto* ada = dynamic_cast<AdaLoraAdapter*>(inner)) ada->SetKeep({true, false, true});
    if (auto* gate = dynamic_cast<TokenGate*>(linear->adapter().get()))
      gate->set_tau(0.01 * name.size());
  }
  const fs::path dir = TempDir(std::string(MethodName(kind)) + (gated ? "_s" : ""));
  ASSERT_TRUE(SaveAdapter(**peft, dir.string(), {{"score.weight", model->score->weight}}).ok());

  Tiny fresh = MakeModel(1);
  {
    torch::NoGradGuard no_grad;
    fresh->score->weight.zero_();
  }
  auto loaded = LoadAdapter(fresh.get(), dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  model->eval();
  fresh->eval();
  torch::Tensor x = torch::randn({5, kHidden});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(fresh->forward(x), model->forward(x)));
}

TEST_P(PeftFilesTest, KeysShapesAndConfigFields) {
  const auto [kind, gated] = GetParam();
  Tiny model = MakeModel(2);
  auto peft = PeftModel::Apply(model.get(), Config(kind, gated), 10);
  ASSERT_TRUE(peft.ok());
  const fs::path dir = TempDir(std::string("keys_") + MethodName(kind) + (gated ? "_s" : ""));
  ASSERT_TRUE(SaveAdapter(**peft, dir.string()).ok());
  std::map<std::string, std::string> meta;
  auto tensors = LoadTensors((dir / "adapter_model.safetensors").string(), &meta);
  ASSERT_TRUE(tensors.ok());
  EXPECT_EQ(meta.at("format"), "pt");
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj.";
  const std::string v = "base_model.model.model.layers.1.self_attn.v_proj.";
  auto shape = [&](const std::string& key) {
    EXPECT_TRUE(tensors->count(key)) << key;
    EXPECT_EQ(tensors->at(key).scalar_type(), torch::kFloat32);
    return tensors->count(key) ? tensors->at(key).sizes().vec() : std::vector<int64_t>{};
  };
  json c = ReadConfig(dir);
  EXPECT_EQ(c["base_model_name_or_path"], "tiny-llama");
  EXPECT_EQ(c["task_type"], "CAUSAL_LM");
  EXPECT_EQ(c["inference_mode"], true);
  EXPECT_EQ(c["target_modules"], json({"q_proj", "v_proj"}));
  EXPECT_EQ(c["bias"], "none");
  switch (kind) {
    case MethodKind::kLora:
    case MethodKind::kDora:
      EXPECT_EQ(shape(q + "lora_A.weight"), (std::vector<int64_t>{2, kHidden}));
      EXPECT_EQ(shape(q + "lora_B.weight"), (std::vector<int64_t>{kHidden, 2}));
      EXPECT_EQ(shape(v + "lora_B.weight"), (std::vector<int64_t>{kKv, 2}));
      EXPECT_EQ(c["peft_type"], "LORA");
      EXPECT_EQ(c["r"], 2);
      EXPECT_EQ(c["lora_alpha"], 4.0);
      EXPECT_EQ(c["use_dora"], kind == MethodKind::kDora);
      EXPECT_EQ(c["use_rslora"], false);
      EXPECT_EQ(c["fan_in_fan_out"], false);
      EXPECT_EQ(c["init_lora_weights"], true);
      if (kind == MethodKind::kDora)
        EXPECT_EQ(shape(v + "lora_magnitude_vector"), (std::vector<int64_t>{kKv}));
      {
        // Every field METHODS.md lists, and nothing LoraConfig does not know (PEFT < 0.14
        // raises TypeError on an unknown key).
        const std::set<std::string> listed = {"peft_type",       "r",
                                              "lora_alpha",      "lora_dropout",
                                              "target_modules",  "bias",
                                              "use_dora",        "use_rslora",
                                              "fan_in_fan_out",  "init_lora_weights",
                                              "rank_pattern",    "alpha_pattern",
                                              "modules_to_save", "base_model_name_or_path",
                                              "task_type",       "inference_mode"};
        std::set<std::string> known = listed;
        known.insert("layers_to_transform");
        if (gated) known.insert("token_gate");  // ours: a gated adapter is not a PEFT one
        for (const auto& f : listed) EXPECT_TRUE(c.contains(f)) << f;
        for (const auto& [k, value] : c.items()) EXPECT_TRUE(known.count(k)) << "unknown " << k;
      }
      EXPECT_EQ(tensors->size(), kind == MethodKind::kDora ? 12u : 8u);
      break;
    case MethodKind::kAdaLora:
      EXPECT_EQ(shape(q + "lora_A"), (std::vector<int64_t>{3, kHidden}));
      EXPECT_EQ(shape(q + "lora_E"), (std::vector<int64_t>{3, 1}));
      EXPECT_EQ(shape(v + "lora_B"), (std::vector<int64_t>{kKv, 3}));
      EXPECT_EQ(c["peft_type"], "ADALORA");
      EXPECT_EQ(c["init_r"], 3);
      EXPECT_EQ(c["target_r"], 2);
      EXPECT_EQ(c["total_step"], 10);
      EXPECT_EQ(c["orth_reg_weight"], 0.5);
      EXPECT_EQ(c["rank_pattern"]["model.layers.0.self_attn.q_proj.lora_E"],
                json({true, true, true}));
      break;
    case MethodKind::kHut:
      EXPECT_EQ(c["peft_type"], "HUT");
      EXPECT_EQ(shape(q + "hut_A"), (std::vector<int64_t>{kHidden, 2}));
      EXPECT_EQ(shape(q + "hut_B"), (std::vector<int64_t>{2, kHidden}));
      EXPECT_EQ(shape(v + "hut_gamma"), (std::vector<int64_t>{kKv}));
      EXPECT_EQ(shape(v + "hut_beta"), (std::vector<int64_t>{kKv}));
      break;
    case MethodKind::kAdaDhp:
      EXPECT_EQ(c["peft_type"], "ADADHP");
      EXPECT_EQ(shape(q + "adadhp_l"), (std::vector<int64_t>{kHidden}));
      EXPECT_EQ(shape(v + "adadhp_r"), (std::vector<int64_t>{kKv}));
      break;
  }
  if (gated) {
    EXPECT_EQ(c["token_gate"]["s"], 1e-4);
    EXPECT_EQ(c["token_gate"]["lambda"], 1e-5);
    EXPECT_EQ(c["token_gate"]["tau"].size(), 4u);
    EXPECT_EQ(c["token_gate"]["tau"]["model.layers.1.self_attn.v_proj"], 0.0);
  } else {
    EXPECT_FALSE(c.contains("token_gate"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, PeftFilesTest,
    ::testing::Values(Case{MethodKind::kLora, false}, Case{MethodKind::kDora, false},
                      Case{MethodKind::kAdaLora, false}, Case{MethodKind::kHut, false},
                      Case{MethodKind::kAdaDhp, false}, Case{MethodKind::kLora, true},
                      Case{MethodKind::kDora, true}, Case{MethodKind::kAdaLora, true},
                      Case{MethodKind::kHut, true}, Case{MethodKind::kAdaDhp, true}),
    [](const auto& info) {
      return std::string(MethodName(info.param.kind)) + (info.param.gated ? "_S" : "");
    });

TEST(PeftFiles, AdaLoraTruncatedTensorsAndRankPattern) {
  Tiny model = MakeModel(3);
  auto peft = PeftModel::Apply(model.get(), Config(MethodKind::kAdaLora, false), 10);
  ASSERT_TRUE(peft.ok());
  Perturb(**peft);
  for (const auto& [name, linear] : (*peft)->linears()) {
    static_cast<AdaLoraAdapter*>(linear->adapter().get())->SetKeep({false, true, true});
  }
  const fs::path dir = TempDir("adalora_trunc");
  ASSERT_TRUE(SaveAdapter(**peft, dir.string()).ok());
  auto tensors = LoadTensors((dir / "adapter_model.safetensors").string());
  EXPECT_EQ(tensors->at("base_model.model.model.layers.0.self_attn.q_proj.lora_A").size(0), 2);
  EXPECT_EQ(tensors->at("base_model.model.model.layers.0.self_attn.q_proj.lora_B").size(1), 2);
  EXPECT_EQ(ReadConfig(dir)["rank_pattern"]["model.layers.1.self_attn.v_proj.lora_E"],
            json({false, true, true}));
  Tiny fresh = MakeModel(3);
  auto loaded = LoadAdapter(fresh.get(), dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::Tensor x = torch::randn({4, kHidden});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(fresh->forward(x), model->forward(x)));
}

TEST(PeftFiles, LoadingNamesWhatIsWrong) {
  Tiny model = MakeModel(4);
  auto peft = PeftModel::Apply(model.get(), Config(MethodKind::kLora, false), 10);
  const fs::path dir = TempDir("wrong");
  ASSERT_TRUE(SaveAdapter(**peft, dir.string()).ok());
  auto tensors = *LoadTensors((dir / "adapter_model.safetensors").string());
  auto write = [&](const std::map<std::string, torch::Tensor>& t) {
    ASSERT_TRUE(
        SaveTensors((dir / "adapter_model.safetensors").string(), t, {{"format", "pt"}}).ok());
  };
  auto bad = tensors;
  bad["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] = torch::zeros({2, 3});
  write(bad);
  auto st = LoadAdapter(MakeModel(4).get(), dir.string()).status();
  EXPECT_NE(st.message().find("'lora_A.weight' has shape [2, 3], the model needs [2, 8]"),
            std::string::npos)
      << st;
  EXPECT_NE(st.message().find("model.layers.0.self_attn.q_proj"), std::string::npos) << st;
  bad = tensors;
  bad.erase("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
  write(bad);
  st = LoadAdapter(MakeModel(4).get(), dir.string()).status();
  EXPECT_NE(st.message().find("missing tensor 'lora_B.weight'"), std::string::npos) << st;
  bad = tensors;
  bad["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"] = torch::zeros({2, 8});
  write(bad);
  st = LoadAdapter(MakeModel(4).get(), dir.string()).status();
  EXPECT_NE(st.message().find(
                "unexpected tensor 'base_model.model.model.layers.0.mlp.up_proj.lora_A.weight'"),
            std::string::npos)
      << st;
}

TEST(PeftFiles, MergedWeightsGiveTheAdaptedForward) {
  Tiny model = MakeModel(5);
  auto peft = PeftModel::Apply(model.get(), Config(MethodKind::kDora, false), 10);
  Perturb(**peft);
  const fs::path dir = TempDir("merged");
  fs::create_directories(dir);
  ASSERT_TRUE(SaveMergedWeights(**peft, (dir / "model.safetensors").string()).ok());
  auto weights = LoadTensors((dir / "model.safetensors").string());
  ASSERT_TRUE(weights.ok());
  EXPECT_TRUE(weights->count("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(weights->count("model.layers.1.self_attn.v_proj.bias"));
  for (const auto& [k, t] : *weights) EXPECT_EQ(k.find("adapter"), std::string::npos) << k;
  Tiny plain = MakeModel(6);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : plain->named_parameters()) item.value().copy_(weights->at(item.key()));
  }
  torch::Tensor x = torch::randn({4, kHidden});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(plain->forward(x), model->forward(x), 1e-4, 1e-5));
  auto gated = PeftModel::Apply(MakeModel(5).get(), Config(MethodKind::kLora, true), 10);
  // A gated adapter refuses, and leaves nothing merged.
  Tiny m2 = MakeModel(7);
  auto g2 = PeftModel::Apply(m2.get(), Config(MethodKind::kLora, true), 10);
  EXPECT_EQ(SaveMergedWeights(**g2, (dir / "no.safetensors").string()).code(),
            absl::StatusCode::kFailedPrecondition);
}

// An adapter folder as PEFT writes it with rank_pattern and alpha_pattern (written by hand
// here, not by SaveAdapter): every v_proj at r = 3 (a suffix key), layer 1's q_proj at
// lora_alpha = 10 (a regex key), the rest at the global r = 2, lora_alpha = 4.
TEST(PeftFiles, LoadsPeftRankAndAlphaPatterns) {
  torch::manual_seed(30);
  Tiny reference = MakeModel(11);
  std::map<std::string, torch::Tensor> tensors;
  for (int layer = 0; layer < 2; ++layer) {
    auto& attn = reference->model->layers[layer]->as<LayerImpl>()->self_attn;
    for (bool is_q : {true, false}) {
      const int64_t r = is_q ? 2 : 3;
      const double alpha = is_q && layer == 1 ? 10 : 4;
      const std::string name =
          "model.layers." + std::to_string(layer) + ".self_attn." + (is_q ? "q_proj" : "v_proj");
      Linear& linear = is_q ? attn->q_proj : attn->v_proj;
      torch::Tensor a = torch::randn({r, kHidden}), b = torch::randn({linear->out_features(), r});
      tensors["base_model.model." + name + ".lora_A.weight"] = a;
      tensors["base_model.model." + name + ".lora_B.weight"] = b;
      torch::NoGradGuard no_grad;
      linear->weight.add_(b.matmul(a) * (alpha / static_cast<double>(r)));
    }
  }
  const fs::path dir = TempDir("peft_patterns");
  fs::create_directories(dir);
  ASSERT_TRUE(
      SaveTensors((dir / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}}).ok());
  json config = {{"peft_type", "LORA"},
                 {"task_type", "CAUSAL_LM"},
                 {"r", 2},
                 {"lora_alpha", 4},
                 {"lora_dropout", 0.0},
                 {"target_modules", {"q_proj", "v_proj"}},
                 {"use_dora", false},
                 {"use_rslora", false},
                 {"rank_pattern", {{"v_proj", 3}}},
                 {"alpha_pattern", {{"layers\\.1\\.self_attn\\.q_proj", 10}}}};
  std::ofstream(dir / "adapter_config.json") << config.dump(2);

  Tiny model = MakeModel(11);
  auto loaded = LoadAdapter(model.get(), dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::Tensor x = torch::randn({4, kHidden});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(model->forward(x), reference->forward(x), 1e-4, 1e-4));
}

// A job's per-module ranks and alphas are written as patterns under full module names, which
// every PEFT version resolves to that module alone, and load back.
TEST(PeftFiles, PerModuleRanksAndAlphasAreWrittenAsPatterns) {
  Tiny model = MakeModel(12);
  AdapterConfig c = Config(MethodKind::kDora, false);
  c.rank_pattern = {{"v_proj", 3}};
  c.alpha_pattern = {{"layers\\.1\\..*q_proj", 10.0}};
  auto peft = PeftModel::Apply(model.get(), c, 10);
  ASSERT_TRUE(peft.ok()) << peft.status();
  Perturb(**peft);
  const fs::path dir = TempDir("write_patterns");
  ASSERT_TRUE(SaveAdapter(**peft, dir.string()).ok());
  const json written = ReadConfig(dir);
  EXPECT_EQ(written["rank_pattern"],
            json({{"model.layers.0.self_attn.v_proj", 3}, {"model.layers.1.self_attn.v_proj", 3}}));
  EXPECT_EQ(written["alpha_pattern"], json({{"model.layers.1.self_attn.q_proj", 10.0}}));
  auto tensors = LoadTensors((dir / "adapter_model.safetensors").string());
  ASSERT_TRUE(tensors.ok());
  EXPECT_EQ(tensors->at("base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight").size(0),
            3);
  Tiny fresh = MakeModel(12);
  auto loaded = LoadAdapter(fresh.get(), dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::Tensor x = torch::randn({4, kHidden});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(fresh->forward(x), model->forward(x)));
}

// Newer PEFT may save DoRA's magnitude as "…lora_magnitude_vector.weight".
TEST(PeftFiles, DoraMagnitudeLoadsUnderEitherKey) {
  Tiny model = MakeModel(13);
  auto peft = PeftModel::Apply(model.get(), Config(MethodKind::kDora, false), 10);
  ASSERT_TRUE(peft.ok());
  Perturb(**peft);
  const fs::path dir = TempDir("dora_weight_key");
  ASSERT_TRUE(SaveAdapter(**peft, dir.string()).ok());
  const std::string file = (dir / "adapter_model.safetensors").string();
  auto tensors = *LoadTensors(file);
  std::map<std::string, torch::Tensor> renamed;
  for (const auto& [key, t] : tensors) {
    const bool magnitude =
        key.size() > 21 && key.compare(key.size() - 21, 21, "lora_magnitude_vector") == 0;
    renamed[magnitude ? key + ".weight" : key] = t;
  }
  ASSERT_TRUE(SaveTensors(file, renamed, {{"format", "pt"}}).ok());
  Tiny fresh = MakeModel(13);
  auto loaded = LoadAdapter(fresh.get(), dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::Tensor x = torch::randn({4, kHidden});
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(fresh->forward(x), model->forward(x)));
  }
  // Both names for one magnitude is an error that names them.
  renamed["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] =
      tensors.at("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector");
  ASSERT_TRUE(SaveTensors(file, renamed, {{"format", "pt"}}).ok());
  auto st = LoadAdapter(MakeModel(13).get(), dir.string()).status();
  EXPECT_NE(st.message().find("both"), std::string::npos) << st;
  EXPECT_NE(st.message().find("q_proj.lora_magnitude_vector.weight"), std::string::npos) << st;
}

TEST(PeftFiles, BadPatternsNameTheFieldAndKey) {
  Tiny model = MakeModel(14);
  auto peft = PeftModel::Apply(model.get(), Config(MethodKind::kAdaLora, false), 10);
  ASSERT_TRUE(peft.ok());
  const fs::path dir = TempDir("bad_patterns");
  ASSERT_TRUE(SaveAdapter(**peft, dir.string()).ok());
  json c = ReadConfig(dir);
  auto load_with = [&](const json& config) {
    std::ofstream(dir / "adapter_config.json") << config.dump(2);
    return LoadAdapter(MakeModel(14).get(), dir.string()).status();
  };
  json bad = c;
  bad["rank_pattern"]["model.layers.0.self_attn.q_proj.lora_E"] = {true, false};
  auto st = load_with(bad);
  EXPECT_NE(st.message().find("rank_pattern['model.layers.0.self_attn.q_proj.lora_E'] has 2 "
                              "entries, init_r is 3"),
            std::string::npos)
      << st;
  bad = c;
  bad["rank_pattern"]["model.layers.0.self_attn.q_proj.lora_E"] = 2;
  st = load_with(bad);
  EXPECT_NE(st.message().find("must be a list of booleans"), std::string::npos) << st;
  bad = c;
  bad["rank_pattern"]["model.layers.0.mlp.up_proj.lora_E"] = {true, true, true};
  st = load_with(bad);
  EXPECT_NE(st.message().find("names no adapted module"), std::string::npos) << st;

  AdapterConfig lora = Config(MethodKind::kLora, false);
  lora.rank_pattern = {{"q_proj", 0}};
  st = PeftModel::Apply(MakeModel(14).get(), lora, 10).status();
  EXPECT_NE(st.message().find("rank_pattern['q_proj']: r must be >= 1"), std::string::npos) << st;
  lora.rank_pattern = {{"q_proj(", 4}};
  st = PeftModel::Apply(MakeModel(14).get(), lora, 10).status();
  EXPECT_NE(st.message().find("rank_pattern: key 'q_proj(' is not a valid regex"),
            std::string::npos)
      << st;
  AdapterConfig hut = Config(MethodKind::kHut, false);
  hut.alpha_pattern = {{"q_proj", 2.0}};
  st = PeftModel::Apply(MakeModel(14).get(), hut, 10).status();
  EXPECT_NE(st.message().find("alpha_pattern: per-module ranks and alphas apply to LoRA and DoRA"),
            std::string::npos)
      << st;
}

TEST(PeftModelApply, RefusesPatternsThatMatchNothingAndBadSchedules) {
  Tiny model = MakeModel(8);
  AdapterConfig c = Config(MethodKind::kLora, false);
  c.targets.target_modules = {"up_proj"};
  auto st = PeftModel::Apply(model.get(), c, 10).status();
  EXPECT_NE(st.message().find("target_modules[0]: 'up_proj' matches no Linear module"),
            std::string::npos)
      << st;
  c = Config(MethodKind::kAdaLora, false);
  c.adalora_schedule.tinit = 9;
  EXPECT_NE(PeftModel::Apply(MakeModel(8).get(), c, 10).status().message().find("adalora.tinit"),
            std::string::npos);
}

TEST(PeftModelApply, CountsAndStateRoundTrip) {
  Tiny model = MakeModel(9);
  auto peft = PeftModel::Apply(model.get(), Config(MethodKind::kLora, true), 10);
  ASSERT_TRUE(peft.ok());
  // q: 2·(8+8) per layer, v: 2·(8+4) per layer, two layers.
  EXPECT_EQ((*peft)->Count().trainable, 2 * (32 + 24));
  EXPECT_EQ((*peft)->Count().trainable_by_module.at("model.layers.0.self_attn.v_proj"), 24);
  EXPECT_EQ((*peft)->GateTaus().size(), 4u);
  auto state = (*peft)->StateDict();
  EXPECT_TRUE(state.count("gate/model.layers.0.self_attn.q_proj.tau"));
  ASSERT_TRUE((*peft)->LoadStateDict(state).ok());
}

}  // namespace
}  // namespace peftd::adapters

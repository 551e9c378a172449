// The server checks module patterns against common/model_modules.h's list; the worker injects
// into the modules worker/model builds. The two must be the same list, shapes included.
#include "common/model_modules.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "worker/model/hf_loader.h"
#include "worker/model/llama.h"
#include "worker/model/tiny_model.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Describe(const std::vector<LinearModule>& modules) {
  std::vector<std::string> out;
  for (const auto& m : modules) {
    out.push_back(
        absl::StrCat(m.name, " ", m.in_features, "->", m.out_features, m.bias ? " +bias" : ""));
  }
  return out;
}

// The adapters::Linear modules of the model the worker builds, described the same way.
std::vector<std::string> Built(torch::nn::Module& model) {
  std::vector<std::string> out;
  for (const auto& item : model.named_modules()) {
    const auto* linear = dynamic_cast<const adapters::LinearImpl*>(item.value().get());
    if (linear == nullptr) continue;
    out.push_back(absl::StrCat(item.key(), " ", linear->in_features(), "->", linear->out_features(),
                               linear->bias.defined() ? " +bias" : ""));
  }
  return out;
}

TEST(LinearModules, EqualTheWorkerModelsLinearModules) {
  ModelConfig tiny = TinyConfig();
  ModelConfig tied = tiny;
  tied.tie_word_embeddings = true;
  ModelConfig qwen = tiny;  // q/k/v with bias, o_proj without
  qwen.architecture = "Qwen2ForCausalLM";
  qwen.attention_bias = true;
  ModelConfig gqa = tiny;  // head_dim given apart from hidden / heads
  gqa.head_dim = 32;
  for (const ModelConfig& c : {tiny, tied, qwen, gqa, ConfigForNumLabels(tiny, 3)}) {
    Llama model(c);
    EXPECT_EQ(Describe(LinearModules(c)), Built(*model)) << c.architecture;
  }
  EXPECT_EQ(LinearModules(tiny).size(), static_cast<size_t>(7 * tiny.num_hidden_layers + 1));
}

TEST(LinearModules, ConfigForNumLabelsIsWhatLoadLlamaBuildsForASeqClsJob) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("peftd_modules_", ::getpid());
  fs::remove_all(dir);
  ASSERT_TRUE(WriteTinyModel(dir.string()).ok());
  LoadOptions options;
  options.num_labels = 3;
  absl::StatusOr<Llama> loaded = LoadLlama(dir.string(), options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const ModelConfig c = ConfigForNumLabels(TinyConfig(), 3);
  EXPECT_EQ(Describe(LinearModules(c)), Built(**loaded));
  EXPECT_EQ((*loaded)->config().architecture, c.architecture);
  EXPECT_EQ((*loaded)->config().num_labels, c.num_labels);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd::model

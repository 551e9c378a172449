// The two DeBERTa-v3 recipes of docs/recipes.md are accepted at submit on microsoft/deberta-v3-base
// as published (its config.json: model_type deberta-v2, no architectures): the spec checks against
// the model pass, and the six patterns select all 72 Linear modules of the 12 layers.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/job_spec.h"
#include "common/job_spec_model.h"
#include "common/model_config.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;

constexpr char kDebertaV3Base[] = R"({"model_type": "deberta-v2",
  "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
  "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
  "max_position_embeddings": 512, "relative_attention": true, "position_buckets": 256,
  "norm_rel_ebd": "layer_norm", "share_att_key": true, "pos_att_type": "p2c|c2p",
  "layer_norm_eps": 1e-7, "max_relative_positions": -1, "position_biased_input": false,
  "num_attention_heads": 12, "num_hidden_layers": 12, "type_vocab_size": 0, "vocab_size": 128100})";

TEST(DebertaRecipes, AreAcceptedOnDebertaV3Base) {
  auto config = model::ParseModelConfig(kDebertaV3Base);
  ASSERT_TRUE(config.ok()) << config.status();
  for (const char* name :
       {"lora-s-deberta-v3-base-sst2.json", "adalora-deberta-v3-base-sst2.json"}) {
    SCOPED_TRACE(name);
    std::ifstream in(fs::path(PEFTD_SOURCE_DIR) / "examples" / "recipes" / name);
    std::stringstream text;
    text << in.rdbuf();
    v1::JobSpec given;
    google::protobuf::util::JsonParseOptions strict;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text.str(), &given, strict).ok());
    v1::JobSpec spec = WithDefaults(given);
    ApplyModelDefaults(given, *config, &spec);
    ASSERT_TRUE(ValidateJobSpec(spec).ok());
    auto resolved = ResolveSpecOnModel(spec, *config);
    ASSERT_TRUE(resolved.ok()) << resolved.status();
    EXPECT_EQ(resolved->adapted.size(), 72u);
    EXPECT_EQ(resolved->config.architecture, "DebertaV2ForSequenceClassification");
  }
}

}  // namespace
}  // namespace peftd

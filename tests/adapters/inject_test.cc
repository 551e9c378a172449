// Module matching with HF PEFT's rules, and what injection reports.
#include "adapters/inject.h"

#include <gtest/gtest.h>

#include "adapters/lora.h"

namespace peftd::adapters {
namespace {

bool Match(const std::string& name, TargetSpec spec) { return *MatchesTarget(name, spec); }

TEST(MatchesTarget, ListEntriesMatchFullNamesOrDotSuffixes) {
  TargetSpec s{.target_modules = {"q_proj", "mlp.down_proj"}};
  EXPECT_TRUE(Match("model.layers.0.self_attn.q_proj", s));
  EXPECT_TRUE(Match("q_proj", s));
  EXPECT_TRUE(Match("model.layers.3.mlp.down_proj", s));
  EXPECT_FALSE(Match("model.layers.0.self_attn.qq_proj", s));  // suffix must start after a dot
  EXPECT_FALSE(Match("model.layers.0.self_attn.q_proj.adapter", s));
  EXPECT_FALSE(Match("model.layers.0.self_attn.k_proj", s));
}

TEST(MatchesTarget, ASingleRegexMustMatchTheWholeName) {
  TargetSpec s{.target_modules = {R"(re:.*layers\.[01]\..*(q|v)_proj)"}};
  EXPECT_TRUE(Match("model.layers.1.self_attn.v_proj", s));
  EXPECT_FALSE(Match("model.layers.2.self_attn.v_proj", s));
  EXPECT_FALSE(Match("model.layers.1.self_attn.v_proj.x", s));
  TargetSpec bad{.target_modules = {"re:(("}};
  EXPECT_EQ(MatchesTarget("x", bad).status().code(), absl::StatusCode::kInvalidArgument);
}

// Issue 18 item 2: a "re:" entry next to plain names was read literally and matched nothing.
TEST(MatchesTarget, MixedListsMatchEachEntryOnItsOwn) {
  TargetSpec s{.target_modules = {"q_proj", R"(re:model\.layers\.[01]\.mlp\..*)"}};
  EXPECT_TRUE(Match("model.layers.3.self_attn.q_proj", s));
  EXPECT_TRUE(Match("model.layers.1.mlp.up_proj", s));
  EXPECT_FALSE(Match("model.layers.2.mlp.up_proj", s));
  TargetSpec excl{.target_modules = {"v_proj"}, .exclude_modules = {"q_proj", "re:.*\\.1\\..*"}};
  EXPECT_TRUE(Match("model.layers.0.self_attn.v_proj", excl));
  EXPECT_FALSE(Match("model.layers.1.self_attn.v_proj", excl));
}

// Issue 12: std::regex recursed once per parenthesis and overflowed the stack.
TEST(MatchesTarget, LongPatternsAreRefusedAndCatastrophicOnesRunInLinearTime) {
  TargetSpec deep{.target_modules = {"re:" + std::string(50000, '(') + std::string(50000, ')')}};
  EXPECT_EQ(MatchesTarget("x", deep).status().code(), absl::StatusCode::kInvalidArgument);
  TargetSpec slow{.target_modules = {"re:(.*)*z"}};
  EXPECT_FALSE(Match(std::string(20000, 'a'), slow));
}

TEST(MatchesTarget, ExclusionsComeFirstAndLayersFilter) {
  TargetSpec s{.target_modules = {"q_proj", "v_proj"},
               .exclude_modules = {"layers.0.self_attn.v_proj"}};
  EXPECT_FALSE(Match("model.layers.0.self_attn.v_proj", s));
  EXPECT_TRUE(Match("model.layers.1.self_attn.v_proj", s));
  TargetSpec layers{.target_modules = {"q_proj"}, .layers_to_transform = {1, 3}};
  EXPECT_TRUE(Match("model.layers.3.self_attn.q_proj", layers));
  EXPECT_FALSE(Match("model.layers.2.self_attn.q_proj", layers));
  EXPECT_FALSE(Match("model.layers.13.self_attn.q_proj", layers));
}

struct TwoImpl : torch::nn::Module {
  TwoImpl() {
    a = register_module("a", Linear(4, 4, false));
    b = register_module("b", Linear(4, 3, false));
  }
  Linear a{nullptr}, b{nullptr};
};
TORCH_MODULE(Two);

TEST(InjectAdapters, ReportsWhatItWrappedAndRefusesNoMatch) {
  Two m;
  std::vector<std::string> seen;
  auto names =
      InjectAdapters(*m, {.target_modules = {"b"}}, [&](const std::string& n, LinearImpl& l) {
        seen.push_back(n);
        return std::make_shared<LoraAdapter>(l, LoraOptions{.r = 2});
      });
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"b"});
  EXPECT_EQ(seen, std::vector<std::string>{"b"});
  EXPECT_TRUE(m->b->adapter());
  EXPECT_FALSE(m->a->adapter());
  ParameterCount c = CountParameters(*m);
  EXPECT_EQ(c.trainable, 2 * (4 + 3));
  EXPECT_EQ(c.total, 16 + 12 + 14);
  EXPECT_NEAR(c.trainable_percent(), 100.0 * 14 / 42, 1e-12);
  EXPECT_EQ(c.trainable_by_module.at("b"), 14);
  EXPECT_EQ(c.total_by_module.at("b"), 12 + 14);
  EXPECT_NEAR(c.module_percent("b"), 100.0 * 14 / 26, 1e-12);
  EXPECT_EQ(c.trainable_by_module.count("a"), 0u);
  EXPECT_EQ(c.module_percent("a"), 0.0);
  auto none = InjectAdapters(*m, {.target_modules = {"c"}, .exclude_modules = {"a"}},
                             [](const std::string&, LinearImpl& l) {
                               return std::make_shared<LoraAdapter>(l, LoraOptions{});
                             });
  EXPECT_EQ(none.status().message(),
            "target_modules[0]: 'c' matches no Linear module of the model; the model's Linear "
            "modules are a, b");
  // Issue 18 item 2: an entry that matches nothing is refused even when another one matches.
  auto partly = InjectAdapters(*m, {.target_modules = {"b", "foo_proj"}},
                               [](const std::string&, LinearImpl& l) {
                                 return std::make_shared<LoraAdapter>(l, LoraOptions{});
                               });
  EXPECT_EQ(partly.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(partly.status().message().rfind("target_modules[1]: 'foo_proj' matches no", 0), 0u)
      << partly.status();
}

}  // namespace
}  // namespace peftd::adapters

// Module patterns (issue 12: std::regex crashed the server; issue 18 item 2: every entry must
// match, mixed lists must work): PEFT's name rule, RE2 full matches, caps, and what Resolve says.
#include "common/module_pattern.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace peftd {
namespace {

using testing::HasSubstr;

bool Matches(const std::string& entry, const std::string& name) {
  auto p = ModulePattern::Compile(entry);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() && p->Matches(name);
}

// The Linear modules of a 2-layer LLaMA with an untied head.
std::vector<std::string> TwoLayerNames() {
  std::vector<std::string> names;
  for (int i = 0; i < 2; ++i) {
    for (const char* p : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
      names.push_back("model.layers." + std::to_string(i) + "." + p);
    }
  }
  names.push_back("lm_head");
  return names;
}

absl::StatusOr<std::vector<std::string>> Resolve(std::vector<std::string> targets,
                                                 std::vector<std::string> excludes = {},
                                                 std::vector<int64_t> layers = {}) {
  auto s = ModuleSelector::Compile(targets, excludes, layers);
  if (!s.ok()) return s.status();
  return s->Resolve(TwoLayerNames());
}

TEST(ModulePattern, PlainNamesMatchTheFullNameOrADotSuffix) {
  EXPECT_TRUE(Matches("q_proj", "model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(Matches("q_proj", "q_proj"));
  EXPECT_TRUE(Matches("mlp.down_proj", "model.layers.3.mlp.down_proj"));
  EXPECT_FALSE(Matches("q_proj", "model.layers.0.self_attn.qq_proj"));
  EXPECT_FALSE(Matches("q_proj", "model.layers.0.self_attn.q_proj.adapter"));
  EXPECT_FALSE(Matches("proj", "model.layers.0.self_attn.q_proj"));
}

TEST(ModulePattern, RegexEntriesMustMatchTheWholeName) {
  EXPECT_TRUE(Matches(R"(re:.*layers\.[01]\..*(q|v)_proj)", "model.layers.1.self_attn.v_proj"));
  EXPECT_FALSE(Matches(R"(re:.*layers\.[01]\..*(q|v)_proj)", "model.layers.2.self_attn.v_proj"));
  EXPECT_FALSE(Matches("re:q_proj", "model.layers.0.self_attn.q_proj"));  // not a search
  EXPECT_TRUE(Matches("re:lm_head", "lm_head"));
}

TEST(ModulePattern, CatastrophicPatternsMatchInLinearTime) {
  // A backtracking engine needs about 2^n steps for this against n characters; RE2 does not.
  const std::string name(5000, 'a');
  EXPECT_FALSE(Matches("re:(.*)*z", name));
  EXPECT_FALSE(Matches("re:(a|aa)*b", name));
  EXPECT_TRUE(Matches("re:(a*)*", name));
}

TEST(ModulePattern, BadEntriesAreRefusedWithTheReason) {
  struct Case {
    std::string entry;
    std::string reason;
  };
  const Case cases[] = {
      {"", "empty module name"},
      {"re:", "empty regular expression"},
      {"re:(", "bad regular expression (RE2 syntax): missing )"},
      {"re:(?<=x)q_proj", "bad regular expression"},  // lookbehind: not RE2
      {"re:" + std::string(50000, '(') + std::string(50000, ')'), "at most 512 characters"},
      {std::string(513, 'a'), "at most 512 characters per entry, got 513"},
      // Within the length cap but past RE2's memory budget.
      {"re:((((((a{100}){100}){100}){100})))", "bad regular expression"},
  };
  for (const Case& c : cases) {
    auto p = ModulePattern::Compile(c.entry);
    ASSERT_FALSE(p.ok()) << c.entry.substr(0, 40);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.reason)) << c.entry.substr(0, 40);
  }
}

TEST(ModulePatternList, NamesTheListAndTheEntryAndCapsTheCounts) {
  auto bad = ModulePatternList::Compile("exclude_modules", {"q_proj", "re:("});
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("exclude_modules[1]: bad regular"));
  std::vector<std::string> many(kMaxModulePatterns + 1, "q_proj");
  EXPECT_EQ(ModulePatternList::Compile("target_modules", many).status().message(),
            "target_modules: at most 1024 entries, got 1025");
  std::vector<std::string> regexes(kMaxModuleRegexes + 1, "re:.*q_proj");
  EXPECT_EQ(ModulePatternList::Compile("target_modules", regexes).status().message(),
            "target_modules[16]: at most 16 \"re:\" entries per list");
  std::vector<std::string> full = TwoLayerNames();
  EXPECT_TRUE(ModulePatternList::Compile("target_modules", full).ok());
}

TEST(ModulePatternList, MixedListsMatchEachEntryOnItsOwn) {
  auto list = ModulePatternList::Compile("target_modules", {"q_proj", R"(re:.*\.mlp\.up_proj)"});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->FirstMatch("model.layers.1.self_attn.q_proj"), 0);
  EXPECT_EQ(list->FirstMatch("model.layers.1.mlp.up_proj"), 1);
  EXPECT_EQ(list->FirstMatch("model.layers.1.mlp.down_proj"), -1);
}

TEST(LayerIndexOf, FindsTheLayerComponent) {
  EXPECT_EQ(LayerIndexOf("model.layers.3.mlp.up_proj"), 3);
  EXPECT_EQ(LayerIndexOf("layers.12.q"), 12);
  EXPECT_EQ(LayerIndexOf("transformer.h.7.attn.c_attn"), 7);
  EXPECT_EQ(LayerIndexOf("lm_head"), -1);
  EXPECT_EQ(LayerIndexOf("model.mylayers.3.q"), -1);
  EXPECT_EQ(LayerIndexOf("model.layers.99999999999999999999999.q"), -1);  // no overflow
}

TEST(SummarizeModuleNames, FoldsLayerIndices) {
  EXPECT_EQ(SummarizeModuleNames(TwoLayerNames()),
            "model.layers.{0..1}.self_attn.q_proj, model.layers.{0..1}.self_attn.k_proj, "
            "model.layers.{0..1}.self_attn.v_proj, model.layers.{0..1}.self_attn.o_proj, "
            "model.layers.{0..1}.mlp.gate_proj, model.layers.{0..1}.mlp.up_proj, "
            "model.layers.{0..1}.mlp.down_proj, lm_head");
  EXPECT_EQ(SummarizeModuleNames({"a.layers.0.q", "a.layers.2.q", "b"}, 1),
            "a.layers.{0,2}.q, and 1 more");
  EXPECT_EQ(SummarizeModuleNames({}), "none");
}

TEST(ModuleSelector, ResolvesMixedListsInModelOrder) {
  auto r = Resolve({"v_proj", R"(re:model\.layers\.1\.mlp\..*)", "lm_head"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::vector<std::string>{
                    "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.v_proj",
                    "model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj",
                    "model.layers.1.mlp.down_proj", "lm_head"}));
  auto excluded = Resolve({"q_proj", "v_proj"}, {"layers.0.self_attn.v_proj"});
  ASSERT_TRUE(excluded.ok()) << excluded.status();
  EXPECT_EQ(*excluded, (std::vector<std::string>{"model.layers.0.self_attn.q_proj",
                                                 "model.layers.1.self_attn.q_proj",
                                                 "model.layers.1.self_attn.v_proj"}));
}

TEST(ModuleSelector, EveryEntryMustSelectSomething) {
  struct Case {
    std::vector<std::string> targets, excludes;
    std::vector<int64_t> layers;
    std::string message_start;
  };
  const Case cases[] = {
      {{"q_proj", "foo_proj"},
       {},
       {},
       "target_modules[1]: 'foo_proj' matches no Linear module of the model; the model's Linear "
       "modules are model.layers.{0..1}.self_attn.q_proj, "},
      {{"q_proj", "q_proj|v_proj"},
       {},
       {},
       "target_modules[1]: 'q_proj|v_proj' matches no Linear module of the model (a regular "
       "expression needs the prefix \"re:\")"},
      {{"re:.*\\.x_proj"}, {}, {}, "target_modules[0]: 're:.*\\.x_proj' matches no Linear module"},
      {{"q_proj"}, {"foo"}, {}, "exclude_modules[0]: 'foo' matches no Linear module of the model"},
      {{"q_proj", "lm_head"},
       {},
       {1},
       "target_modules[1]: 'lm_head' matches only modules outside layers_to_transform [1]"},
      {{"q_proj", "v_proj"},
       {"v_proj"},
       {},
       "target_modules[1]: 'v_proj' matches only modules that exclude_modules removes"},
      {{"q_proj"},
       {},
       {0, 5},
       "layers_to_transform[1]: the model has no layer 5 (its layers: 0 to 1)"},
  };
  for (const Case& c : cases) {
    auto r = Resolve(c.targets, c.excludes, c.layers);
    ASSERT_FALSE(r.ok()) << c.message_start;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(r.status().message()).substr(0, c.message_start.size()), c.message_start);
  }
}

TEST(ModuleSelector, CompileRefusesNegativeLayersAndEmptyTargets) {
  EXPECT_EQ(ModuleSelector::Compile({"q"}, {}, {2, -1}).status().message(),
            "layers_to_transform[1]: must be >= 0, got -1");
  EXPECT_EQ(ModuleSelector::Compile({}, {}, {}).status().message(), "target_modules: empty");
}

}  // namespace
}  // namespace peftd

#include "server/sweep_expand.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace peftd::server {
namespace {

v1::SweepAxis Axis(const std::string& field, std::vector<std::string> values) {
  v1::SweepAxis a;
  a.set_field(field);
  for (auto& v : values) a.add_values(v);
  return a;
}

v1::SweepSpec Spec(std::vector<v1::SweepAxis> axes, v1::SweepMode mode = v1::GRID) {
  v1::SweepSpec s;
  s.mutable_base()->set_base_model("tiny");
  s.mutable_base()->set_method(v1::LORA);
  s.mutable_base()->mutable_lora()->set_r(8);
  s.mutable_base()->set_training_dataset_id("ds-1");
  for (auto& a : axes) *s.add_axes() = a;
  s.set_mode(mode);
  return s;
}

TEST(ExpandSweep, AGridTakesEveryCombinationWithTheLastAxisFastest) {
  auto points = ExpandSweep(
      Spec({Axis("token_gate.lambda", {"1e-6", "1e-5"}), Axis("lora.r", {"4", "8", "16"})}), 64);
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 6u);
  EXPECT_DOUBLE_EQ((*points)[0].spec.token_gate().lambda(), 1e-6);
  EXPECT_EQ((*points)[0].spec.lora().r(), 4);
  EXPECT_EQ((*points)[2].spec.lora().r(), 16);
  EXPECT_DOUBLE_EQ((*points)[3].spec.token_gate().lambda(), 1e-5);
  EXPECT_EQ((*points)[3].spec.lora().r(), 4);
  EXPECT_EQ(DescribeAssignments((*points)[5].assignments), "token_gate.lambda=1e-5, lora.r=16");
  // The rest of the base is kept.
  EXPECT_EQ((*points)[5].spec.base_model(), "tiny");
}

TEST(ExpandSweep, AListTakesTheIthValueOfEveryAxis) {
  auto points = ExpandSweep(
      Spec({Axis("learning_rate", {"1e-4", "2e-4"}), Axis("seed", {"1", "2"})}, v1::LIST), 64);
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 2u);
  EXPECT_DOUBLE_EQ((*points)[1].spec.learning_rate(), 2e-4);
  EXPECT_EQ((*points)[1].spec.seed(), 2u);
  EXPECT_TRUE((*points)[1].spec.has_seed());
}

TEST(ExpandSweep, MethodEnumsTargetModulesAndGateFieldsParse) {
  auto points =
      ExpandSweep(Spec({Axis("lora.alpha", {"32"}), Axis("method", {"dora", "HUT"}),
                        Axis("target_modules", {"q_proj+v_proj", "re:.*(q|k)_proj+"}),
                        Axis("token_gate.s", {"4e-5"}), Axis("token_gate.enabled", {"true"})}),
                  64);
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 4u);
  const v1::JobSpec& dora = (*points)[0].spec;
  EXPECT_EQ(dora.method(), v1::DORA);
  // The method axis is applied first, so the swept alpha lands in the method's params.
  EXPECT_FLOAT_EQ(dora.lora().alpha(), 32);
  EXPECT_EQ(dora.lora().r(), 8);
  EXPECT_EQ(std::vector<std::string>(dora.target_modules().begin(), dora.target_modules().end()),
            (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ((*points)[1].spec.target_modules_size(), 1);
  EXPECT_EQ((*points)[1].spec.target_modules(0), "re:.*(q|k)_proj+");
  EXPECT_TRUE(dora.token_gate().enabled());
  EXPECT_DOUBLE_EQ(dora.token_gate().s(), 4e-5);
  // HUT reads no LoRA parameters: the base's are dropped, the swept alpha sets them again, and
  // admission refuses that child (lora params with method HUT) naming it.
  const v1::JobSpec& hut = (*points)[2].spec;
  EXPECT_EQ(hut.method(), v1::HUT);
  EXPECT_EQ(hut.lora().r(), 0);
}

TEST(ExpandSweep, SettingTheMethodDropsParametersOfAnotherMethod) {
  v1::JobSpec spec;
  spec.set_method(v1::LORA);
  spec.mutable_lora()->set_r(4);
  ASSERT_TRUE(SetSpecField(&spec, "method", "dora").ok());
  EXPECT_EQ(spec.lora().r(), 4);
  ASSERT_TRUE(SetSpecField(&spec, "method", "adalora").ok());
  EXPECT_FALSE(spec.has_lora());
}

TEST(ExpandSweep, RefusalsNameTheAxisAndTheValue) {
  struct Case {
    v1::SweepSpec spec;
    int max_children;
    std::string prefix;
  };
  std::vector<Case> cases = {
      {Spec({}), 64, "spec.axes: a sweep needs at least one axis"},
      {Spec({Axis("lora.rank", {"4"})}), 64,
       "spec.axes[0].field: 'lora.rank': LoraParams has no field 'rank'"},
      {Spec({Axis("lora", {"4"})}), 64, "spec.axes[0].values[0]: lora: is a message"},
      {Spec({Axis("lora.r", {"4"}), Axis("seed", {"1", "x"})}), 64,
       "spec.axes[1].values[1]: seed: 'x' is not a non-negative integer"},
      {Spec({Axis("token_gate.lambda", {"nan"})}), 64,
       "spec.axes[0].values[0]: token_gate.lambda: 'nan' is not a finite number"},
      {Spec({Axis("lora.r", {"99999999999"})}), 64,
       "spec.axes[0].values[0]: lora.r: 99999999999 does not fit a 32-bit integer"},
      {Spec({Axis("method", {"qlora"})}), 64,
       "spec.axes[0].values[0]: method: 'qlora' is not one of lora, dora, adalora, hut, adadhp"},
      {Spec({Axis("lora.r", {"4"}), Axis("lora.r", {"8"})}), 64,
       "spec.axes[1].field: 'lora.r' is swept by an earlier axis too"},
      {Spec({Axis("lora.r", {})}), 64, "spec.axes[0].values: at least one value"},
      {Spec({Axis("lora.r", {"4", "8"}), Axis("seed", {"1"})}, v1::LIST), 64,
       "spec.axes[1].values: has 1 values and spec.axes[0] has 2"},
      {Spec({Axis("lora.r", {"1", "2", "3"}), Axis("seed", {"1", "2", "3"})}), 8,
       "spec.axes: the grid makes more than 8 children"},
      {Spec({Axis("seed", {"1", "2", "3"})}, v1::LIST), 2, "spec.axes: the list makes 3 children"},
  };
  for (const Case& c : cases) {
    auto points = ExpandSweep(c.spec, c.max_children);
    ASSERT_FALSE(points.ok()) << c.prefix;
    EXPECT_EQ(points.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(points.status().message(), c.prefix))
        << points.status().message() << "\nexpected to start with: " << c.prefix;
  }
}

}  // namespace
}  // namespace peftd::server

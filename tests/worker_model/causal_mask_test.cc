// MarkRightPadding: the positions after each sequence's last real token get first key =
// position + 1 (AttentionCore then skips their queries); every other entry stays as given.
#include "worker/model/causal_mask.h"

#include <gtest/gtest.h>

namespace peftd::model {
namespace {

TEST(MarkRightPadding, MarksOnlyThePositionsAfterTheLastRealToken) {
  // Row 0: 3 real then padding; row 1: no padding; row 2: a hole before its last real token
  // stays unmarked (the mask hides that key; its query attends as before).
  torch::Tensor real = torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}, {1, 0, 1, 0, 0}});
  torch::Tensor first_key =
      torch::tensor({{0, 0, 2, 2, 2}, {0, 1, 1, 3, 3}, {0, 0, 0, 0, 0}}, torch::kLong);
  torch::Tensor marked = MarkRightPadding(real, first_key);
  EXPECT_TRUE(torch::equal(
      marked, torch::tensor({{0, 0, 2, 4, 5}, {0, 1, 1, 3, 3}, {0, 0, 0, 4, 5}}, torch::kLong)))
      << marked;
  // Without first keys (an unpacked batch): zeros, then the marks.
  EXPECT_TRUE(torch::equal(
      MarkRightPadding(real, torch::Tensor()),
      torch::tensor({{0, 0, 0, 4, 5}, {0, 0, 0, 0, 0}, {0, 0, 0, 4, 5}}, torch::kLong)));
  // No padding at all: first_key itself (undefined stays undefined).
  EXPECT_FALSE(MarkRightPadding(torch::ones({2, 4}), torch::Tensor()).defined());
}

TEST(BuildCausalMask, RightPaddedBatchesMarkTheirPaddingForTheCausalSchedule) {
  torch::Tensor ids = torch::zeros({2, 4}, torch::kLong);
  torch::Tensor real = torch::tensor({{1, 1, 0, 0}, {1, 1, 1, 1}});
  CausalMask m = BuildCausalMask(ids, real, {}, {}, torch::zeros({2, 4, 8}));
  ASSERT_TRUE(m.every_row_sees_a_key);
  ASSERT_TRUE(m.first_key.defined());
  EXPECT_TRUE(torch::equal(m.first_key, torch::tensor({{0, 0, 3, 4}, {0, 0, 0, 0}}, torch::kLong)));
  // Left padding: no causal schedule, nothing marked.
  CausalMask left = BuildCausalMask(ids, torch::tensor({{0, 1, 1, 1}, {1, 1, 1, 1}}), {}, {},
                                    torch::zeros({2, 4, 8}));
  EXPECT_FALSE(left.every_row_sees_a_key);
  EXPECT_FALSE(left.first_key.defined());
}

}  // namespace
}  // namespace peftd::model

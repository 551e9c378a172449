// The importance averages (METHODS.md, AdaLoRA "Importance") of the CPU loop against the ATen
// composition they replace, over several steps in double precision, and the strided fallback.
#include "adapters/importance_ema.h"

#include <gtest/gtest.h>

namespace peftd::adapters {
namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

TEST(ImportanceEma, LoopEqualsTheComposition) {
  torch::manual_seed(12);
  torch::Tensor p = torch::randn({4, 6}, kDouble);
  torch::Tensor ipt = torch::zeros({4, 6}, kDouble), unc = torch::zeros({4, 6}, kDouble);
  torch::Tensor ref_ipt = ipt.clone(), ref_unc = unc.clone();
  const double b1 = 0.85, b2 = 0.8;
  for (int step = 0; step < 4; ++step) {
    torch::Tensor g = torch::randn({4, 6}, kDouble);
    UpdateImportanceEma(p, g, ipt, unc, b1, b2);
    torch::Tensor i = (p * g).abs();
    ref_ipt = b1 * ref_ipt + (1 - b1) * i;
    ref_unc = b2 * ref_unc + (1 - b2) * (i - ref_ipt).abs();  // the new Ī
  }
  EXPECT_TRUE(torch::allclose(ipt, ref_ipt, 1e-14, 1e-14));
  EXPECT_TRUE(torch::allclose(unc, ref_unc, 1e-14, 1e-14));
  EXPECT_GT(unc.abs().sum().item<double>(), 0);
}

TEST(ImportanceEma, StridedTensorsTakeTheComposition) {
  torch::manual_seed(13);
  torch::Tensor p = torch::randn({6, 4}, kDouble).t();  // not contiguous
  torch::Tensor g = torch::randn({4, 6}, kDouble);
  torch::Tensor ipt = torch::rand({4, 6}, kDouble), unc = torch::rand({4, 6}, kDouble);
  torch::Tensor ipt2 = ipt.clone(), unc2 = unc.clone();
  UpdateImportanceEma(p, g, ipt, unc, 0.85, 0.85);
  UpdateImportanceEma(p.contiguous(), g, ipt2, unc2, 0.85, 0.85);
  EXPECT_TRUE(torch::allclose(ipt, ipt2, 1e-14, 1e-14));
  EXPECT_TRUE(torch::allclose(unc, unc2, 1e-14, 1e-14));
}

}  // namespace
}  // namespace peftd::adapters

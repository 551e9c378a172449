#include "adapters/safetensors_torch.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace peftd::adapters {
namespace {

TEST(SafetensorsTorch, RoundTripIsBitExactForEveryDtype) {
  const auto path =
      (std::filesystem::temp_directory_path() / ("peftd_st_torch" + std::to_string(getpid())))
          .string();
  std::map<std::string, torch::Tensor> in;
  torch::manual_seed(3);
  for (auto type : {torch::kFloat64, torch::kFloat32, torch::kFloat16, torch::kBFloat16}) {
    in[c10::toString(type)] = torch::randn({3, 4}).to(type);
  }
  in["i64"] = torch::arange(6, torch::kInt64).reshape({2, 3});
  in["u8"] = torch::arange(5, torch::kUInt8);
  in["bool"] = torch::tensor({true, false, true});
  in["strided"] = torch::randn({4, 5}).t();  // non-contiguous input
  in["scalar"] = torch::tensor(2.5);
  ASSERT_TRUE(SaveTensors(path, in, {{"format", "pt"}}).ok());
  std::map<std::string, std::string> meta;
  auto out = LoadTensors(path, &meta);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(meta.at("format"), "pt");
  ASSERT_EQ(out->size(), in.size());
  for (const auto& [name, t] : in) {
    EXPECT_EQ(out->at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(out->at(name), t)) << name;
  }
}

TEST(SafetensorsTorch, ConvertsHalfPrecisionToTheComputeDtype) {
  torch::Tensor bf = torch::tensor({1.5f, -2.25f}).to(torch::kBFloat16);
  safetensors::TensorView view{
      safetensors::Dtype::kBF16, {2}, static_cast<const uint8_t*>(bf.data_ptr()), 4};
  auto t = ToTensor(view, torch::kFloat32);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(*t, torch::tensor({1.5f, -2.25f})));
}

TEST(SafetensorsTorch, RefusesUnsupportedDtypes) {
  auto st = SaveTensors("/tmp/never", {{"c", torch::zeros({2}, torch::kComplexFloat)}});
  EXPECT_NE(st.message().find("no safetensors equivalent"), std::string::npos);
}

}  // namespace
}  // namespace peftd::adapters

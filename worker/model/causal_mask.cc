#include "worker/model/causal_mask.h"

#include <limits>

#include "adapters/cpu_gemm.h"

namespace peftd::model {

CausalMask BuildCausalMask(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                           const torch::Tensor& position_ids, const torch::Tensor& sequence_ids,
                           const torch::Tensor& hidden) {
  const int64_t b = input_ids.size(0), t = input_ids.size(1);
  const auto device = input_ids.device();
  CausalMask out;
  torch::Tensor real =
      attention_mask.defined()
          ? attention_mask.to(device).to(torch::kBool)
          : torch::ones({b, t}, torch::TensorOptions().dtype(torch::kBool).device(device));
  // Positions count real tokens only, so a left-padded sequence sees the positions an unpadded
  // one sees (HF's generate passes the same); with right padding this is HF's arange.
  out.positions = position_ids.defined() ? position_ids.to(device).to(torch::kLong)
                                         : (real.to(torch::kLong).cumsum(1) - 1).clamp_min(0);
  torch::Tensor causal =
      torch::ones({t, t}, torch::TensorOptions().dtype(torch::kBool).device(device)).tril();
  torch::Tensor allowed = causal.view({1, t, t}).logical_and(real.view({b, 1, t}));
  if (sequence_ids.defined()) {
    torch::Tensor seq = sequence_ids.to(device);
    allowed = allowed.logical_and(seq.view({b, t, 1}).eq(seq.view({b, 1, t})));
  }
  const double lowest = std::numeric_limits<float>::lowest();
  out.mask = torch::zeros({b, t, t}, hidden.options()).masked_fill_(allowed.logical_not(), lowest);
  // A row that sees no key attends uniformly to every key in HF's arithmetic; the causal schedule
  // skips later keys, so it needs every sequence to start with a real token.
  out.every_row_sees_a_key = adapters::GemmCovers(hidden) && real.select(1, 0).all().item<bool>();
  if (position_ids.defined() && sequence_ids.defined()) {
    out.first_key = (torch::arange(t, torch::kLong).view({1, t}) - position_ids.to(torch::kCPU))
                        .clamp_min(0)
                        .contiguous();
  }
  if (out.every_row_sees_a_key) out.first_key = MarkRightPadding(real, out.first_key);
  return out;
}

torch::Tensor MarkRightPadding(const torch::Tensor& real, const torch::Tensor& first_key) {
  const torch::Tensor r = real.to(torch::kCPU).to(torch::kBool);
  if (r.all().item<bool>()) return first_key;
  const int64_t b = r.size(0), t = r.size(1);
  const torch::Tensor pos = torch::arange(t, torch::kLong).view({1, t});
  const torch::Tensor end = (r.to(torch::kLong) * (pos + 1)).amax(1, /*keepdim=*/true);
  const torch::Tensor first =
      first_key.defined() ? first_key.to(torch::kLong) : torch::zeros({b, t}, torch::kLong);
  return torch::where(pos >= end, pos + 1, first).contiguous();
}

}  // namespace peftd::model

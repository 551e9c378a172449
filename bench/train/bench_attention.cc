// CPU seconds of one attention forward + backward (AttentionCore, and the ATen composition it
// replaces) at the shapes a packed training step gives it: rows of records whose lengths are
// given, padded to the longest row. One JSON line per shape; for deciding what to optimise in
// worker/model/attention_core.cc on a shared machine, where wall time measures other work too.
#include <sys/resource.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "worker/model/attention_core.h"

namespace {

double CpuSeconds() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 8, heads = 4, kv_heads = 2, head_dim = 16, t = 512, reps = 10;
  std::string records = "400";
  CLI::App app{"CPU seconds of one attention forward + backward"};
  app.add_option("--batch", batch, "rows");
  app.add_option("--heads", heads, "query heads");
  app.add_option("--kv-heads", kv_heads, "key/value heads");
  app.add_option("--head-dim", head_dim, "head dimension");
  app.add_option("--seq", t, "row length (padding after the records)");
  app.add_option("--records", records, "record lengths of every row, comma-separated");
  app.add_option("--reps", reps, "repetitions (the median is printed)");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(1);

  // Block-diagonal causal mask of the records, right padding joining the last record.
  std::vector<int64_t> lengths;
  for (absl::string_view s : absl::StrSplit(records, ',', absl::SkipEmpty())) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(s, &n) || n <= 0) {
      std::cerr << "bench_attention: --records: not a length: " << s << "\n";
      return 2;
    }
    lengths.push_back(n);
  }
  torch::Tensor first_key = torch::zeros({batch, t}, torch::kLong);
  torch::Tensor record = torch::zeros({batch, t}, torch::kLong);
  torch::Tensor real = torch::zeros({batch, t}, torch::kBool);
  int64_t start = 0, id = 0;
  for (int64_t n : lengths) {
    n = std::min(n, t - start);
    if (n <= 0) break;
    first_key.slice(1, start, start + n).fill_(start);
    record.slice(1, start, start + n).fill_(id++);
    real.slice(1, start, start + n).fill_(true);
    start += n;
  }
  first_key.slice(1, start).fill_(start - lengths.back());
  record.slice(1, start).fill_(id - 1);
  torch::Tensor allowed = torch::ones({t, t}, torch::kBool).tril().view({1, t, t});
  allowed = allowed.logical_and(real.view({batch, 1, t}))
                .logical_and(record.view({batch, t, 1}).eq(record.view({batch, 1, t})));
  torch::Tensor mask =
      torch::zeros({batch, t, t})
          .masked_fill_(allowed.logical_not(), std::numeric_limits<float>::lowest());

  torch::manual_seed(1);
  torch::Tensor q = torch::randn({batch, heads, t, head_dim}).requires_grad_(true);
  torch::Tensor k = torch::randn({batch, kv_heads, t, head_dim}).requires_grad_(true);
  torch::Tensor v = torch::randn({batch, kv_heads, t, head_dim}).requires_grad_(true);
  torch::Tensor dout = torch::randn({batch, t, heads * head_dim});
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  auto time = [&](auto&& run) {
    std::vector<double> fwd, bwd;
    for (int64_t i = 0; i < reps; ++i) {
      const double c0 = CpuSeconds();
      torch::Tensor out = run();
      const double c1 = CpuSeconds();
      out.backward(dout);
      fwd.push_back(c1 - c0);
      bwd.push_back(CpuSeconds() - c1);
      q.mutable_grad().reset();
      k.mutable_grad().reset();
      v.mutable_grad().reset();
    }
    std::sort(fwd.begin(), fwd.end());
    std::sort(bwd.begin(), bwd.end());
    return nlohmann::json{{"forward_cpu_s", fwd[fwd.size() / 2]},
                          {"backward_cpu_s", bwd[bwd.size() / 2]}};
  };
  nlohmann::json out = {{"batch", batch},       {"heads", heads}, {"kv_heads", kv_heads},
                        {"head_dim", head_dim}, {"seq", t},       {"records", lengths}};
  out["packed_causal"] =
      time([&] { return peftd::model::AttentionCore(q, k, v, mask, scale, true, first_key); });
  // The right padding marked as the decoders mark it (MarkRightPadding): its queries skip.
  torch::Tensor marked = first_key.clone();
  marked.slice(1, start).copy_(torch::arange(start, t) + 1);
  out["packed_causal_padding_marked"] =
      time([&] { return peftd::model::AttentionCore(q, k, v, mask, scale, true, marked); });
  out["causal"] = time([&] { return peftd::model::AttentionCore(q, k, v, mask, scale, true); });
  out["general_mask"] = time([&] { return peftd::model::AttentionCore(q, k, v, mask, scale); });
  std::cout << out.dump() << std::endl;
  return 0;
}

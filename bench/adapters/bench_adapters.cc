// Forward + backward time of one adapted layer per method (and gated, "<method>_S"), as a ratio
// to the frozen Linear alone (forward + backward to the input) run interleaved with it in the same
// process (tokens N = 2048, fp32 CPU, rank 8), plus the memory held between forward and backward.
// gate_overhead = ratio(<method>_S) / ratio(<method>) − 1. Prints one JSON document.
// Usage: bench_adapters [--shapes 1024,4096] [--iters 7] [--threads N (default: all cores)]
//                       [--malloc retain|default]
// --malloc retain (the default) keeps freed memory in the process (no mmap, no trim): glibc's
// default returns every large freed tensor to the kernel and the next one page-faults in again,
// which costs more than the adapters' element-wise work itself. `default` shows that cost.
#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "adapters/adadhp.h"
#include "adapters/adalora.h"
#include "adapters/dora.h"
#include "adapters/hut.h"
#include "adapters/lora.h"
#include "adapters/token_gate.h"
#include "nlohmann/json.hpp"

using namespace peftd::adapters;

namespace {

constexpr int64_t kTokens = 2048;
constexpr int64_t kRank = 8;

// Bytes the process holds through malloc (heap + mmap'd blocks): the tensors alive right now.
double HeldMb() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd) / 1048576.0;
}

// One forward + backward to the input (and to the adapter's tensors), seconds; the memory held
// between them (the output plus what autograd keeps for backward) in MB.
struct Run {
  double seconds;
  double held_mb;
};

Run RunOnce(Linear& layer, const torch::Tensor& x_in) {
  torch::Tensor x = x_in.detach().requires_grad_(true);
  for (auto& p : layer->parameters()) p.mutable_grad() = torch::Tensor();
  const double before = HeldMb();
  auto t0 = std::chrono::steady_clock::now();
  torch::Tensor y = layer->forward(x);
  const double held = HeldMb() - before;
  y.backward(torch::ones_like(y));
  auto t1 = std::chrono::steady_clock::now();
  return {std::chrono::duration<double>(t1 - t0).count(), held};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  double seconds;         // median forward+backward of the adapted layer
  double frozen_seconds;  // median of the frozen layer, measured interleaved with it
  double held_mb;         // largest memory held after forward
};

// The machine is shared: runs of the frozen layer and the adapted one alternate, so both
// medians see the same background load and their ratio is meaningful.
Result Compare(Linear& frozen, Linear& adapted, const torch::Tensor& x, int iters) {
  std::vector<double> a, f;
  double held = 0;
  RunOnce(frozen, x);  // warm caches and the allocator
  RunOnce(adapted, x);
  for (int i = 0; i < iters; ++i) {
    f.push_back(RunOnce(frozen, x).seconds);
    const Run r = RunOnce(adapted, x);
    a.push_back(r.seconds);
    held = std::max(held, r.held_mb);
  }
  return {Median(a), Median(f), held};
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> shapes = {1024, 4096};
  int iters = 7;
  std::string malloc_mode = "retain";
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--iters")) iters = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--malloc")) malloc_mode = argv[i + 1];
    if (!std::strcmp(argv[i], "--shapes")) {
      shapes.clear();
      std::string s = argv[i + 1];
      for (size_t pos = 0; pos < s.size();) {
        size_t comma = s.find(',', pos);
        shapes.push_back(std::stoll(s.substr(pos, comma - pos)));
        pos = comma == std::string::npos ? s.size() : comma + 1;
      }
    }
  }
  if (malloc_mode == "retain") {
    mallopt(M_MMAP_MAX, 0);              // every block from the heap, reused after free
    mallopt(M_TRIM_THRESHOLD, 1 << 30);  // and the heap is not handed back to the kernel
    mallopt(M_TOP_PAD, 64 << 20);
  } else if (malloc_mode != "default") {
    std::cerr << "--malloc: retain or default, not '" << malloc_mode << "'\n";
    return 2;
  }
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  using Factory = std::function<std::shared_ptr<Adapter>(const LinearImpl&)>;
  const std::vector<std::pair<std::string, Factory>> methods = {
      {"lora",
       [](const LinearImpl& b) {
         return std::make_shared<LoraAdapter>(b, LoraOptions{.r = kRank});
       }},
      {"dora",
       [](const LinearImpl& b) {
         return std::make_shared<DoraAdapter>(b, LoraOptions{.r = kRank});
       }},
      {"adalora",
       [](const LinearImpl& b) {
         return std::make_shared<AdaLoraAdapter>(b, AdaLoraOptions{.init_r = kRank});
       }},
      {"hut",
       [](const LinearImpl& b) { return std::make_shared<HutAdapter>(b, HutOptions{.r = kRank}); }},
      {"adadhp", [](const LinearImpl& b) { return std::make_shared<AdaDhpAdapter>(b); }},
  };
  nlohmann::json out;
  out["benchmark"] = "adapter_layer_forward_backward";
  out["tokens"] = kTokens;
  out["rank"] = kRank;
  out["threads"] = threads;
  out["malloc"] = malloc_mode;
  out["dtype"] = "float32";
  out["results"] = nlohmann::json::array();
  for (int64_t dim : shapes) {
    // Two layers sharing one frozen weight: one stays plain, the other carries the adapter.
    Linear frozen(dim, dim, true);
    {
      torch::NoGradGuard no_grad;
      frozen->weight.normal_(0, 0.02);
      frozen->bias.normal_(0, 0.02);
    }
    Linear layer(dim, dim, true);
    {
      torch::NoGradGuard no_grad;
      layer->weight.copy_(frozen->weight);
      layer->bias.copy_(frozen->bias);
    }
    torch::Tensor x = torch::randn({kTokens, dim});
    const Result base = Compare(frozen, frozen, x, iters);
    out["results"].push_back({{"shape", {dim, dim}},
                              {"method", "frozen_linear"},
                              {"seconds", base.seconds},
                              {"ratio_to_frozen", 1.0},
                              {"forward_held_mb", base.held_mb}});
    std::map<std::string, double> ungated_seconds;
    for (const auto& [name, make] : methods) {
      for (bool gated : {false, true}) {
        std::shared_ptr<Adapter> adapter = make(*layer);
        {
          torch::NoGradGuard no_grad;  // off the identity, as after some training
          for (auto& p : adapter->parameters()) p.add_(torch::randn_like(p) * 0.01);
        }
        if (gated) adapter = std::make_shared<TokenGate>(adapter, GateOptions{}, nullptr);
        layer->Attach(adapter, "adapter");
        const Result r = Compare(frozen, layer, x, iters);
        layer->Detach();
        nlohmann::json row = {{"shape", {dim, dim}},
                              {"method", gated ? name + "_S" : name},
                              {"seconds", r.seconds},
                              {"frozen_seconds", r.frozen_seconds},
                              {"ratio_to_frozen", r.seconds / r.frozen_seconds},
                              {"forward_held_mb", r.held_mb},
                              {"held_ratio_to_frozen", r.held_mb / base.held_mb}};
        if (gated) {
          row["gate_overhead"] = r.seconds / r.frozen_seconds / ungated_seconds[name] - 1;
        } else {
          ungated_seconds[name] = r.seconds / r.frozen_seconds;
        }
        out["results"].push_back(row);
      }
    }
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

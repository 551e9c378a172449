// Forward + backward time of one adapted layer per method, as a ratio to the frozen Linear alone
// measured in the same run (tokens N = 2048, fp32 CPU, rank 8). Prints one JSON document.
// Usage: bench_adapters [--shapes 1024,4096] [--iters 5] [--threads N]
#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
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

struct Result {
  double seconds;     // median forward+backward
  double forward_mb;  // memory held after forward: output + what autograd keeps for backward
};

Result Time(Linear& layer, const torch::Tensor& x_in, int iters) {
  std::vector<double> times;
  double mem = 0;
  for (int i = 0; i < iters + 1; ++i) {
    torch::Tensor x = x_in.detach().requires_grad_(true);
    for (auto& p : layer->parameters()) p.mutable_grad() = torch::Tensor();
    const double before = HeldMb();
    auto t0 = std::chrono::steady_clock::now();
    torch::Tensor y = layer->forward(x);
    const double after = HeldMb();
    y.backward(torch::ones_like(y));
    auto t1 = std::chrono::steady_clock::now();
    if (i > 0) {  // the first run warms caches and the allocator
      times.push_back(std::chrono::duration<double>(t1 - t0).count());
      mem = std::max(mem, after - before);
    }
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], mem};
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> shapes = {1024, 4096};
  int iters = 5;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--iters")) iters = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
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
  out["dtype"] = "float32";
  out["results"] = nlohmann::json::array();
  for (int64_t dim : shapes) {
    Linear layer(dim, dim, true);
    {
      torch::NoGradGuard no_grad;
      layer->weight.normal_(0, 0.02);
      layer->bias.normal_(0, 0.02);
    }
    torch::Tensor x = torch::randn({kTokens, dim});
    const Result frozen = Time(layer, x, iters);
    out["results"].push_back({{"shape", {dim, dim}},
                              {"method", "frozen_linear"},
                              {"seconds", frozen.seconds},
                              {"ratio_to_frozen", 1.0},
                              {"forward_held_mb", frozen.forward_mb}});
    for (const auto& [name, make] : methods) {
      for (bool gated : {false, true}) {
        std::shared_ptr<Adapter> adapter = make(*layer);
        {
          torch::NoGradGuard no_grad;  // off the identity, as after some training
          for (auto& p : adapter->parameters()) p.add_(torch::randn_like(p) * 0.01);
        }
        if (gated) adapter = std::make_shared<TokenGate>(adapter, GateOptions{}, nullptr);
        layer->Attach(adapter, "adapter");
        const Result r = Time(layer, x, iters);
        layer->Detach();
        out["results"].push_back({{"shape", {dim, dim}},
                                  {"method", gated ? name + "_S" : name},
                                  {"seconds", r.seconds},
                                  {"ratio_to_frozen", r.seconds / frozen.seconds},
                                  {"forward_held_mb", r.forward_mb}});
      }
    }
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

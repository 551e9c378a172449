#include "bench/train/op_counts.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace peftd::bench {
namespace {

namespace profiler = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

// The configuration torch.autograd.profiler.profile(profile_memory=True) uses on the CPU.
impl::ProfilerConfig Config() {
  return impl::ProfilerConfig(impl::ProfilerState::KINETO, /*report_input_shapes=*/false,
                              /*profile_memory=*/true);
}

constexpr size_t kTopNames = 25;

nlohmann::json Top(const std::map<std::string, int64_t>& counts) {
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (sorted.size() > kTopNames) sorted.resize(kTopNames);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, n] : sorted) out.push_back({name, n});
  return out;
}

}  // namespace

OpCounter::OpCounter() = default;

OpCounter::~OpCounter() {
  if (running_) (void)profiler::disableProfiler();
}

void OpCounter::Start() {
  profiler::prepareProfiler(Config(), {impl::ActivityType::CPU});
  profiler::enableProfiler(Config(), {impl::ActivityType::CPU});
  running_ = true;
}

nlohmann::json OpCounter::Stop() {
  if (!running_) return nlohmann::json::object();
  running_ = false;
  std::unique_ptr<profiler::ProfilerResult> result = profiler::disableProfiler();
  // The classification baseline_pytorch_peft.py's count_ops() applies to the same events.
  static const std::string kEngine = "autograd::engine::evaluate_function";
  int64_t ops = 0, nodes = 0, allocations = 0, bytes = 0;
  std::map<std::string, int64_t> op_names, node_names;
  for (const auto& e : result->events()) {
    const std::string name = e.name();
    if (name == "[memory]") {
      if (e.nBytes() > 0) {
        ++allocations;
        bytes += e.nBytes();
      }
    } else if (e.scope() == static_cast<uint8_t>(at::RecordScope::BACKWARD_FUNCTION)) {
      ++nodes;
      ++node_names[name];
    } else if (e.scope() == static_cast<uint8_t>(at::RecordScope::FUNCTION) &&
               name.compare(0, kEngine.size(), kEngine) != 0) {
      ++ops;
      ++op_names[name];
    }
  }
  return {{"aten_ops", ops},          {"autograd_nodes", nodes},  {"allocations", allocations},
          {"allocated_bytes", bytes}, {"top_ops", Top(op_names)}, {"top_nodes", Top(node_names)}};
}

}  // namespace peftd::bench

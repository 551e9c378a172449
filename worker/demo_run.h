// `peftd-worker demo`: trains the built-in tiny model with every method, with and without the
// token gate, on a small built-in sequence task, and reports one line per run. What `make demo`
// shows until the service path (peftd + peftctl) lands.
#ifndef PEFTD_WORKER_DEMO_RUN_H_
#define PEFTD_WORKER_DEMO_RUN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace peftd::worker {

struct DemoRow {
  std::string variant;  // "lora", "lora_S", ...
  double initial_eval_loss = 0;
  double final_eval_loss = 0;
  int64_t trainable_parameters = 0;
  double trainable_percent = 0;
  double gate_sparsity = -1;  // gated runs only
  double tokens_per_second = 0;
  std::string adapter_dir;
};

// Writes the tiny model under `work_dir`, trains every variant for `steps` optimizer steps and
// saves each adapter under work_dir/adapters/<variant>.
absl::StatusOr<std::vector<DemoRow>> RunDemo(const std::string& work_dir, int64_t steps,
                                             int threads);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_DEMO_RUN_H_

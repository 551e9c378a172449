// `bench_train --arch gpt2|roberta|deberta-v2|t5`: training tokens/s of every method on the
// family's tiny model (the shapes `peftd-worker make-tiny-model --arch ARCH` writes) against the
// PyTorch eager peer of that family (bench/train/baseline_families.py: transformers' eager code +
// peft's LoRA on the same default targets), run in the same invocation on the same checkpoint.
#ifndef PEFTD_BENCH_TRAIN_FAMILY_BENCH_H_
#define PEFTD_BENCH_TRAIN_FAMILY_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace peftd::bench {

struct FamilyBenchOptions {
  std::string arch;  // gpt2, roberta, deberta-v2 or t5
  int64_t batch = 8;
  int64_t seq = 128;  // T5: inputs of seq tokens and targets of seq / 2
  int64_t steps = 20;
  int64_t warmup = 3;
  int threads = 1;
  std::vector<std::string> variants;  // "lora", "lora_S", ...
  bool baseline = true;
};

// The JSON document bench_train prints: per variant tokens/s, CPU s per step, peak RSS and the
// ratio to the peer's LoRA (the fastest of its four runs, with and without GLIBC_TUNABLES,
// before and after ours).
nlohmann::json RunFamilyBench(const FamilyBenchOptions& options);

}  // namespace peftd::bench

#endif  // PEFTD_BENCH_TRAIN_FAMILY_BENCH_H_

#include "worker/init_weights.h"

#include "absl/strings/str_cat.h"
#include "adapters/peft_files.h"
#include "common/status.h"

namespace peftd::worker {

absl::Status ApplyInitWeights(const InitWeights& init, torch::nn::Module& model,
                              adapters::PeftModel& peft, train::Trainer& trainer,
                              train::ProgressSink* sink) {
  if (init.adapter) {
    RETURN_IF_ERROR(Annotate(adapters::LoadAdapterWeights(&model, peft, init.dir),
                             absl::StrCat("init_from: ", init.what)));
  } else {
    RETURN_IF_ERROR(
        Annotate(trainer.InitWeightsFrom(init.dir), absl::StrCat("init_from: ", init.what)));
  }
  if (sink)
    sink->OnLog(train::LogLevel::kInfo, absl::StrCat("starting from the weights of ", init.what));
  return absl::OkStatus();
}

}  // namespace peftd::worker

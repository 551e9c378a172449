#include "worker/train/progress.h"

namespace peftd::train {

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kLoadingModel:
      return "loading_model";
    case Phase::kTraining:
      return "training";
    case Phase::kEvaluating:
      return "evaluating";
    case Phase::kCheckpointing:
      return "checkpointing";
    case Phase::kExporting:
      return "exporting";
  }
  return "unknown";
}

}  // namespace peftd::train

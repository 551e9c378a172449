#include "common/model_modules_encoders.h"

#include "absl/strings/str_cat.h"

namespace peftd::model {

std::vector<LinearModule> RobertaLinearModules(const ModelConfig& c) {
  const int64_t h = c.hidden_size, inner = c.intermediate_size;
  std::vector<LinearModule> out;
  out.reserve(static_cast<size_t>(c.num_hidden_layers) * 6);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string layer = absl::StrCat("roberta.encoder.layer.", i, ".");
    out.push_back({layer + "attention.self.query", h, h, true});
    out.push_back({layer + "attention.self.key", h, h, true});
    out.push_back({layer + "attention.self.value", h, h, true});
    out.push_back({layer + "attention.output.dense", h, h, true});
    out.push_back({layer + "intermediate.dense", h, inner, true});
    out.push_back({layer + "output.dense", inner, h, true});
  }
  return out;
}

}  // namespace peftd::model

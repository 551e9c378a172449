// Fuzzes the server's admission of CreateJob (server/job_admission.h) over serialized
// CreateJobRequest bytes, as a hostile client sends them: every request must be admitted or
// refused with a status, never crash, hang or reach undefined behaviour (the SIGSEGV of issue 12
// was std::regex recursing on a module pattern). The sources are fakes: two small models, a
// LLaMA-7B-shaped one (memory refusals), two datasets and one 8 GiB worker. An admitted spec must
// validate again unchanged, resolve on its model and fit the worker.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "common/job_spec.h"
#include "common/job_spec_model.h"
#include "common/memory_estimate.h"
#include "common/model_config.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/job_admission.h"

namespace {

using peftd::model::ModelConfig;

constexpr int64_t kWorkerBytes = int64_t{8} << 30;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

ModelConfig Parse(const std::string& json) {
  auto c = peftd::model::ParseModelConfig(json);
  Check(c.ok());
  return *c;
}

class FakeSources : public peftd::server::AdmissionSources {
 public:
  FakeSources() {
    const std::string dims =
        R"("vocab_size": 512, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256)";
    models_["tiny-llama"] = Parse(R"({"architectures": ["LlamaForCausalLM"], )" + dims + "}");
    models_["tiny-cls"] = Parse(R"({"architectures": ["LlamaForSequenceClassification"],
        "id2label": {"0": "neg", "1": "pos"}, )" +
                                dims + "}");
    models_["llama-7b"] = Parse(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 32000,
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "torch_dtype": "bfloat16"})");
    datasets_["ds-text"] = Dataset("ds-text", "text", 4000);
    datasets_["ds-cls"] = Dataset("ds-cls", "classification", 2000);
  }

  absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& base_model) override {
    auto it = models_.find(base_model);
    if (it == models_.end()) return absl::NotFoundError("base_model: no such model");
    return it->second;
  }
  absl::StatusOr<peftd::v1::Dataset> GetDataset(const std::string& id) override {
    auto it = datasets_.find(id);
    if (it == datasets_.end()) return absl::NotFoundError("no dataset");
    return it->second;
  }
  std::optional<peftd::server::WorkerMemory> LargestWorkerMemory() override {
    return peftd::server::WorkerMemory{kWorkerBytes, "the fuzz worker"};
  }

 private:
  static peftd::v1::Dataset Dataset(const std::string& id, const std::string& format,
                                    int64_t bytes) {
    peftd::v1::Dataset d;
    d.set_id(id);
    d.set_format(format);
    d.set_size_bytes(bytes);
    return d;
  }

  std::map<std::string, ModelConfig> models_;
  std::map<std::string, peftd::v1::Dataset> datasets_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FakeSources* const sources = new FakeSources();
  peftd::v1::CreateJobRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  absl::StatusOr<peftd::v1::JobSpec> spec = peftd::server::AdmitJob(request, *sources);
  if (!spec.ok()) {
    Check(!spec.status().message().empty());
    return 0;
  }
  // What was admitted is stored and later run by a worker that checks it the same way.
  Check(peftd::ValidateJobSpec(*spec).ok());
  Check(google::protobuf::util::MessageDifferencer::Equals(peftd::WithDefaults(*spec), *spec));
  auto config = sources->ReadModelConfig(spec->base_model());
  Check(config.ok());
  auto resolved = peftd::ResolveSpecOnModel(*spec, *config);
  Check(resolved.ok() && !resolved->adapted.empty());
  const peftd::MemoryEstimate estimate = peftd::EstimatePeakMemory(*spec, *resolved, 0);
  Check(estimate.total() > 0 && estimate.total() <= kWorkerBytes);
  return 0;
}

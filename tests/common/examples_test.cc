// The examples/ folder: every job file is a valid JobSpec in protobuf JSON form whose dataset
// paths (relative to the job file) hold valid records of a format that fits the job's task; every
// dataset is what scripts/make-example-datasets.py writes.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/dataset_records.h"
#include "common/job_spec.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;

const fs::path kExamples = fs::path(PEFTD_SOURCE_DIR) / "examples";

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<fs::path> Files(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void CheckDataset(const fs::path& path, const v1::JobSpec& spec) {
  SCOPED_TRACE(path.string());
  ASSERT_TRUE(fs::exists(path));
  data::RecordOptions options;
  if (spec.task() == v1::SEQ_CLS) {
    options.num_labels = spec.num_labels();
    options.label_names.assign(spec.label_names().begin(), spec.label_names().end());
    options.require_label_ids = true;
  }
  auto r = data::ValidateRecordFile(path.string(), options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << data::DescribeErrors(path.filename().string(), *r);
  EXPECT_EQ(data::IsClassification(r->format), spec.task() == v1::SEQ_CLS);
}

TEST(Examples, JobFilesAreValidSpecsWithValidDatasets) {
  const auto jobs = Files(kExamples / "jobs", ".json");
  ASSERT_GE(jobs.size(), 1u);
  bool gated = false;
  for (const fs::path& job : jobs) {
    SCOPED_TRACE(job.string());
    v1::JobSpec spec;
    google::protobuf::util::JsonParseOptions strict;  // unknown fields are errors
    const auto status = google::protobuf::util::JsonStringToMessage(Read(job), &spec, strict);
    ASSERT_TRUE(status.ok()) << status.ToString();
    spec = WithDefaults(spec);
    ASSERT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
    gated |= job.filename() == "lora-gated.json" && spec.token_gate().enabled();
    CheckDataset(job.parent_path() / spec.training_dataset_id(), spec);
    if (!spec.validation_dataset_id().empty()) {
      CheckDataset(job.parent_path() / spec.validation_dataset_id(), spec);
    }
  }
  EXPECT_TRUE(gated) << "examples/jobs/lora-gated.json with the token gate on";
}

TEST(Examples, DatasetsAreWhatTheScriptWrites) {
  if (std::system("python3 --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  const fs::path out = fs::temp_directory_path() / ("peftd_examples_" + std::to_string(getpid()));
  fs::remove_all(out);
  const std::string cmd =
      "python3 " + (fs::path(PEFTD_SOURCE_DIR) / "scripts" / "make-example-datasets.py").string() +
      " --out " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto generated = Files(out, ".jsonl");
  const auto committed = Files(kExamples / "datasets", ".jsonl");
  ASSERT_EQ(generated.size(), committed.size());
  for (size_t i = 0; i < generated.size(); ++i) {
    EXPECT_EQ(generated[i].filename(), committed[i].filename());
    EXPECT_TRUE(Read(generated[i]) == Read(committed[i]))
        << committed[i]
        << " differs from the script's output: run scripts/make-example-datasets.py";
  }
  fs::remove_all(out);
}

}  // namespace
}  // namespace peftd

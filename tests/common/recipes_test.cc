// examples/recipes and docs/recipes.md: every recipe is a valid JobSpec (unknown fields refused)
// that docs/recipes.md names, and scripts/convert-benchmark-data.py turns a real GLUE file (SST-2
// dev from ../shared/fixtures) into records that the dataset validator accepts for such a job.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/dataset_records.h"
#include "common/job_spec.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = fs::path(PEFTD_SOURCE_DIR);

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string FixturesDir() {
  const char* env = std::getenv("PEFTD_FIXTURES");
  return env != nullptr && *env != 0 ? env : PEFTD_FIXTURES_DIR;
}

v1::JobSpec ParseStrict(const fs::path& file) {
  v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions strict;  // unknown fields are errors
  const auto status = google::protobuf::util::JsonStringToMessage(Read(file), &spec, strict);
  EXPECT_TRUE(status.ok()) << file << ": " << status.ToString();
  return spec;
}

TEST(Recipes, EveryRecipeIsAValidSpecThatTheDocNames) {
  const std::string doc = Read(kSource / "docs" / "recipes.md");
  int recipes = 0;
  for (const auto& entry : fs::directory_iterator(kSource / "examples" / "recipes")) {
    if (entry.path().extension() != ".json") continue;
    ++recipes;
    SCOPED_TRACE(entry.path().string());
    const v1::JobSpec spec = WithDefaults(ParseStrict(entry.path()));
    const absl::Status valid = ValidateJobSpec(spec);
    EXPECT_TRUE(valid.ok()) << valid;
    // The doc names each file (in full, or as the `lora-s-…` shorthand of a pair).
    const std::string name = entry.path().filename().string();
    const std::string stem = name.substr(0, name.find('-', name.find('-') + 1));
    EXPECT_TRUE(doc.find(name) != std::string::npos || doc.find(stem + "-…") != std::string::npos)
        << "docs/recipes.md does not name " << name;
  }
  EXPECT_GE(recipes, 6);
}

TEST(Recipes, ConverterTurnsGlueSst2IntoValidClassificationRecords) {
  if (std::system("python3 --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  const fs::path out = fs::temp_directory_path() / ("peftd_recipes_" + std::to_string(getpid()));
  fs::create_directories(out);
  const std::string script = (kSource / "scripts" / "convert-benchmark-data.py").string();
  const std::string sst2 = FixturesDir() + "/data/sst2-glue-dev.tsv";
  ASSERT_EQ(std::system(("python3 " + script + " glue sst2 " + sst2 + " " +
                         (out / "sst2.jsonl").string() + " > /dev/null")
                            .c_str()),
            0);
  // The recipe's own options: two named labels, ids required.
  const v1::JobSpec spec =
      WithDefaults(ParseStrict(kSource / "examples" / "recipes" / "hut-roberta-large-sst2.json"));
  data::RecordOptions options;
  options.num_labels = spec.num_labels();
  options.label_names.assign(spec.label_names().begin(), spec.label_names().end());
  options.require_label_ids = true;
  auto report = data::ValidateRecordFile((out / "sst2.jsonl").string(), options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << data::DescribeErrors("sst2.jsonl", *report);
  EXPECT_TRUE(data::IsClassification(report->format));
  // 872 labelled rows in, 872 records out.
  std::ifstream in(out / "sst2.jsonl");
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  EXPECT_EQ(lines, 872);

  // A task whose columns the file lacks is refused naming the line and the column; no output.
  const std::string refused = (out / "mrpc.jsonl").string();
  EXPECT_NE(std::system(("python3 " + script + " glue mrpc " + sst2 + " " + refused +
                         " > /dev/null 2> " + (out / "err.txt").string())
                            .c_str()),
            0);
  EXPECT_FALSE(fs::exists(refused));
  EXPECT_NE(Read(out / "err.txt").find("sst2-glue-dev.tsv:1: no column '#1 String'"),
            std::string::npos)
      << Read(out / "err.txt");
  fs::remove_all(out);
}

}  // namespace
}  // namespace peftd

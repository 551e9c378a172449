// Model names resolve inside the model root only; listing finds nested HF folders; the built-in
// model is generated once, atomically, by the worker binary (a /bin/sh stand-in here).
#include "server/model_root.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/model_config.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string LlamaConfigJson() {
  model::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 256;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  return model::ModelConfigJson(c);
}

class ModelRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            absl::StrCat("peftd_model_root_test_", ::getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    root_ = base_ / "models";
    fs::create_directories(root_);
    outside_ = base_ / "outside";
    MakeModel(outside_, LlamaConfigJson());
  }
  void TearDown() override { fs::remove_all(base_); }

  static void MakeModel(const fs::path& dir, const std::string& config, int64_t weight_bytes = 10) {
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << config;
    std::ofstream(dir / "model.safetensors") << std::string(weight_bytes, 'w');
  }
  std::string Root() const { return root_.string(); }

  fs::path base_, root_, outside_;
};

TEST_F(ModelRootTest, ResolvesNamesAndPathsInsideTheRoot) {
  MakeModel(root_ / "tiny", LlamaConfigJson());
  MakeModel(root_ / "org" / "name", LlamaConfigJson());
  const std::string canonical_root = fs::canonical(root_).string();

  auto tiny = ResolveModelPath(Root(), "tiny");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ(*tiny, canonical_root + "/tiny");
  auto nested = ResolveModelPath(Root(), "org/name");
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_EQ(*nested, canonical_root + "/org/name");
  auto dotted = ResolveModelPath(Root(), "./org/./name/");
  ASSERT_TRUE(dotted.ok()) << dotted.status();
  EXPECT_EQ(*dotted, canonical_root + "/org/name");
  auto absolute = ResolveModelPath(Root(), (root_ / "tiny").string());
  ASSERT_TRUE(absolute.ok()) << absolute.status();
  EXPECT_EQ(*absolute, canonical_root + "/tiny");
  // A symlink that stays inside the root is fine.
  fs::create_directory_symlink(root_ / "org" / "name", root_ / "alias");
  auto alias = ResolveModelPath(Root(), "alias");
  ASSERT_TRUE(alias.ok()) << alias.status();
  EXPECT_EQ(*alias, canonical_root + "/org/name");
}

TEST_F(ModelRootTest, RefusesEverythingThatLeavesTheRoot) {
  MakeModel(root_ / "tiny", LlamaConfigJson());
  fs::create_directory_symlink(outside_, root_ / "escape");
  fs::create_directories(root_ / "sub");
  fs::create_directory_symlink("../../outside", root_ / "sub" / "up");

  for (const std::string& name :
       {std::string("../outside"), std::string("tiny/../../outside"), std::string(".."),
        outside_.string(), std::string("escape"), std::string("sub/up"),
        (root_ / ".." / "outside").string(), std::string("/etc")}) {
    auto r = ResolveModelPath(Root(), name);
    ASSERT_FALSE(r.ok()) << name << " resolved to " << *r;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << name << ": " << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("base_model")) << name;
  }
}

TEST_F(ModelRootTest, MissingFolderIsNotFoundAndFolderWithoutConfigIsFailedPrecondition) {
  fs::create_directories(root_ / "weights-only");
  std::ofstream(root_ / "weights-only" / "model.safetensors") << "w";
  std::ofstream(root_ / "file") << "x";

  auto missing = ResolveModelPath(Root(), "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("base_model \"nope\""));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("peftctl models list"));

  auto no_config = ResolveModelPath(Root(), "weights-only");
  EXPECT_EQ(no_config.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(no_config.status().message()), HasSubstr("config.json"));

  EXPECT_EQ(ResolveModelPath(Root(), "file").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ResolveModelPath(Root(), "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveModelPath((base_ / "no-root").string(), "tiny").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ModelRootTest, ListsNestedModelsWithArchitectureParametersAndSize) {
  MakeModel(root_ / "tiny", LlamaConfigJson(), 100);
  MakeModel(root_ / "org" / "name", LlamaConfigJson(), 50);
  MakeModel(root_ / "a" / "b" / "c", LlamaConfigJson());             // depth 3: listed
  MakeModel(root_ / "a" / "b" / "c2" / "d", LlamaConfigJson());      // depth 4: too deep
  MakeModel(root_ / "odd", "{\"architectures\": [\"BertModel\"]}");  // listed, unsupported
  MakeModel(root_ / ".hidden", LlamaConfigJson());
  MakeModel(root_ / "tiny-llama.tmp.123", LlamaConfigJson());  // half-made built-in model
  MakeModel(root_ / "tiny" / "nested-inside-a-model", LlamaConfigJson());
  fs::create_directory_symlink(outside_, root_ / "escape");  // outside: not listed
  fs::create_directory_symlink(root_ / "tiny", root_ / "alias");

  auto models = ListModels(Root());
  ASSERT_TRUE(models.ok()) << models.status();
  std::vector<std::string> names;
  for (const auto& m : *models) names.push_back(m.name());
  EXPECT_EQ(names, (std::vector<std::string>{"a/b/c", "alias", "odd", "org/name", "tiny"}));

  model::ModelConfig expected = *model::ParseModelConfig(LlamaConfigJson());
  const v1::Model& tiny = models->back();
  EXPECT_EQ(tiny.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(tiny.parameters(), expected.NumParameters());
  EXPECT_GT(tiny.parameters(), 0);
  // config.json + 100 bytes of weights + the nested folder's files.
  const int64_t config_bytes = static_cast<int64_t>(LlamaConfigJson().size());
  EXPECT_EQ(tiny.size_bytes(), 2 * config_bytes + 100 + 10);
  EXPECT_EQ((*models)[3].size_bytes(), config_bytes + 50);
  EXPECT_EQ((*models)[2].architecture(), "BertModel");
  EXPECT_EQ((*models)[2].parameters(), 0);
}

TEST_F(ModelRootTest, MissingRootListsNothing) {
  auto models = ListModels((base_ / "absent").string());
  ASSERT_TRUE(models.ok());
  EXPECT_TRUE(models->empty());
}

// A stand-in for `peftd-worker make-tiny-model DIR`: writes a config and counts its runs.
std::string FakeWorker(const fs::path& dir, const std::string& body) {
  const fs::path path = dir / "fake-worker.sh";
  std::ofstream(path) << "#!/bin/sh\n" << body;
  fs::permissions(path, fs::perms::owner_all);
  return path.string();
}

TEST_F(ModelRootTest, BuiltinModelIsGeneratedOnceAndAtomically) {
  const fs::path runs = base_ / "runs";
  const std::string worker =
      FakeWorker(base_, absl::StrCat("[ \"$1\" = make-tiny-model ] || exit 9\n", "echo run >> ",
                                     runs.string(), "\n", "mkdir -p \"$2\" && printf '%s' '",
                                     LlamaConfigJson(), "' > \"$2/config.json\"\n"));
  const fs::path root = base_ / "fresh-root";  // created by EnsureBuiltinModel
  ASSERT_TRUE(EnsureBuiltinModel(root.string(), worker).ok());
  ASSERT_TRUE(EnsureBuiltinModel(root.string(), worker).ok());
  std::ifstream in(runs);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(all, "run\n") << "generated twice";
  EXPECT_TRUE(ResolveModelPath(root.string(), kBuiltinModelName).ok());
  EXPECT_EQ(fs::status(root).permissions() & fs::perms::all, fs::perms::owner_all);
  // No temp folder left behind.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    EXPECT_EQ(e.path().filename(), kBuiltinModelName);
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST_F(ModelRootTest, FailingOrMissingWorkerBinaryNamesTheFlag) {
  const std::string failing = FakeWorker(base_, "mkdir -p \"$2\"; echo boom >&2; exit 3\n");
  absl::Status st = EnsureBuiltinModel(Root(), failing);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("--worker-binary"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("exit code 3"));
  EXPECT_FALSE(fs::exists(root_ / kBuiltinModelName));
  EXPECT_TRUE(fs::is_empty(root_)) << "temp folder left behind";

  st = EnsureBuiltinModel(Root(), (base_ / "no-such-worker").string());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("--worker-binary"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("no-such-worker"));
}

TEST_F(ModelRootTest, ExistingBuiltinModelNeedsNoWorker) {
  MakeModel(root_ / kBuiltinModelName, LlamaConfigJson());
  EXPECT_TRUE(EnsureBuiltinModel(Root(), "/nonexistent/peftd-worker").ok());
}

}  // namespace
}  // namespace peftd::server

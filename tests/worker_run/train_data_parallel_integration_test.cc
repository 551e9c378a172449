// `peftd-worker train --world-size 2 --rank R --rendezvous HOST:PORT` as a user runs it: two
// processes of batch 4 train the job one process of batch 8 trains (the same per-step losses
// within 1e-5 relative, the same adapter), share one --out where rank 0 alone writes the
// checkpoints and the adapter; a rank that never arrives makes rank 0 fail within the rendezvous
// timeout, naming it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "tests/worker_run/test_data.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::FreshDir;

const std::string kWorker = std::string(PEFTD_BINARY_DIR) + "/worker/peftd-worker";

pid_t Spawn(const std::vector<std::string>& args, const fs::path& log_prefix) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int out =
        open((log_prefix.string() + ".stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err =
        open((log_prefix.string() + ".stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(kWorker.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(kWorker.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Output(const fs::path& log_prefix) {
  return Slurp(log_prefix.string() + ".stderr") + Slurp(log_prefix.string() + ".stdout");
}

std::map<int64_t, double> StepLosses(const fs::path& log) {
  std::map<int64_t, double> out;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j["type"] == "step") out[j["step"].get<int64_t>()] = j["loss"];
  }
  return out;
}

uint16_t FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class TrainDataParallel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(FreshDir("train_dp"));
    ASSERT_EQ(WaitExit(Spawn({"make-tiny-model", (*dir_ / "tiny").string()}, *dir_ / "make")), 0)
        << Output(*dir_ / "make");
    testing::WriteAlphabetText(*dir_ / "train.jsonl", 44, 1);
    testing::WriteAlphabetText(*dir_ / "valid.jsonl", 8, 2);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  // A gated AdaLoRA job (the allocator's masks and the gate's τ both depend on reduced
  // statistics) with per-process batch `batch`.
  static fs::path WriteJob(const std::string& name, int batch, int steps = 12) {
    json job = {{"base_model", "tiny"},
                {"method", "ADALORA"},
                {"adalora",
                 {{"init_r", 6},
                  {"target_r", 3},
                  {"alpha", 12},
                  {"tinit", 2},
                  {"tfinal", 3},
                  {"delta_t", 2}}},
                {"token_gate", {{"enabled", true}, {"s", 1e-3}, {"lambda", 1e-4}}},
                {"target_modules", {"q_proj", "v_proj", "down_proj"}},
                {"training_dataset_id", "train.jsonl"},
                {"validation_dataset_id", "valid.jsonl"},
                {"max_steps", steps},
                {"batch_size", batch},
                {"gradient_accumulation_steps", 2},
                {"learning_rate", 2e-2},
                {"warmup_steps", 2},
                {"eval_interval_steps", 6},
                {"checkpoint_interval_steps", 4},
                {"num_threads", 1}};
    const fs::path p = *dir_ / (name + ".json");
    testing::WriteFile(p, job.dump(2));
    return p;
  }
  static fs::path* dir_;
};
fs::path* TrainDataParallel::dir_ = nullptr;

TEST_F(TrainDataParallel, TwoRanksOfBatch4TrainAsOneProcessOfBatch8) {
  const fs::path one_out = *dir_ / "one-out";
  ASSERT_EQ(WaitExit(Spawn({"train", WriteJob("one", 8).string(), "--out", one_out.string()},
                           *dir_ / "one")),
            0)
      << Output(*dir_ / "one");

  const fs::path job = WriteJob("two", 4);
  const fs::path out = *dir_ / "two-out";
  const std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(Spawn({"train", job.string(), "--out", out.string(), "--world-size", "2",
                          "--rank", std::to_string(rank), "--rendezvous", addr, "--rendezvous-key",
                          "dp-test", "--rendezvous-timeout", "60"},
                         *dir_ / ("rank" + std::to_string(rank))));
  }
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(WaitExit(pids[rank]), 0) << Output(*dir_ / ("rank" + std::to_string(rank)));
  }
  EXPECT_NE(Output(*dir_ / "rank1").find("rank 1 of 2 done: 12 steps"), std::string::npos)
      << Output(*dir_ / "rank1");

  const auto expected = StepLosses(one_out / "train_log.jsonl");
  ASSERT_EQ(expected.size(), 12u);
  for (const fs::path log : {out / "train_log.jsonl", out / "train_log.rank1.jsonl"}) {
    const auto got = StepLosses(log);
    ASSERT_EQ(got.size(), expected.size()) << log;
    for (const auto& [step, loss] : expected) {
      EXPECT_NEAR(got.at(step), loss, 1e-5 * loss) << log << " step " << step;
    }
  }
  // Rank 0 alone wrote the checkpoints (4 and 8; 2 kept) and the adapter.
  EXPECT_TRUE(fs::exists(out / "checkpoints" / "step-00000008" / "checkpoint.safetensors"));
  auto a = adapters::LoadTensors((one_out / "adapter" / "adapter_model.safetensors").string());
  auto b = adapters::LoadTensors((out / "adapter" / "adapter_model.safetensors").string());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->size(), b->size());
  for (const auto& [name, t] : *a) {
    ASSERT_TRUE(b->count(name)) << name;
    ASSERT_EQ(b->at(name).sizes(), t.sizes()) << name;
    if (t.numel() == 0) continue;  // a module AdaLoRA pruned to rank 0
    const double scale = std::max(1e-3, t.abs().max().item<double>());
    EXPECT_LE((b->at(name) - t).abs().max().item<double>(), 1e-4 * scale) << name;
  }
  const json config = json::parse(Slurp(out / "adapter" / "adapter_config.json"));
  const json config_one = json::parse(Slurp(one_out / "adapter" / "adapter_config.json"));
  EXPECT_EQ(config["rank_pattern"], config_one["rank_pattern"]);  // the same masking decisions
}

TEST_F(TrainDataParallel, RankThatNeverArrivesFailsRank0WithinTheTimeout) {
  const fs::path out = *dir_ / "lonely-out";
  const std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  const pid_t pid =
      Spawn({"train", WriteJob("lonely", 4).string(), "--out", out.string(), "--world-size", "2",
             "--rank", "0", "--rendezvous", addr, "--rendezvous-timeout", "2"},
            *dir_ / "lonely");
  EXPECT_EQ(WaitExit(pid), 1);
  const std::string err = Output(*dir_ / "lonely");
  EXPECT_NE(err.find("DEADLINE_EXCEEDED"), std::string::npos) << err;
  EXPECT_NE(err.find("rendezvous " + addr), std::string::npos) << err;
  EXPECT_NE(err.find("not every rank arrived within 2s"), std::string::npos) << err;
}

// kill -9 of rank 1 mid-run: rank 0 fails at its next collective (the peer's connection closes,
// or the timeout passes) instead of waiting for ever.
TEST_F(TrainDataParallel, KilledRankFailsTheOtherInsteadOfHanging) {
  const fs::path job = WriteJob("killed", 4, /*steps=*/100000);
  const fs::path out = *dir_ / "killed-out";
  const std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(
        Spawn({"train", job.string(), "--out", out.string(), "--world-size", "2", "--rank",
               std::to_string(rank), "--rendezvous", addr, "--rendezvous-timeout", "20"},
              *dir_ / ("killed" + std::to_string(rank))));
  }
  // Wait for rank 1 to finish a few steps.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (StepLosses(out / "train_log.rank1.jsonl").size() < 3 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(StepLosses(out / "train_log.rank1.jsonl").size(), 3u) << Output(*dir_ / "killed1");
  ::kill(pids[1], SIGKILL);
  EXPECT_EQ(WaitExit(pids[1]), 128 + SIGKILL);
  // Rank 0 ends by itself: a hang would keep this wait (and the test) running to ctest's timeout.
  EXPECT_EQ(WaitExit(pids[0]), 1);
  const std::string err = Output(*dir_ / "killed0");
  EXPECT_NE(err.find("allreduce of"), std::string::npos) << err;
  EXPECT_NE(err.find("(rank 0 of 2)"), std::string::npos) << err;
}

TEST_F(TrainDataParallel, WorldSizeWithoutRendezvousIsRefused) {
  const pid_t pid = Spawn({"train", WriteJob("norv", 4).string(), "--out",
                           (*dir_ / "norv-out").string(), "--world-size", "2", "--rank", "1"},
                          *dir_ / "norv");
  EXPECT_EQ(WaitExit(pid), 1);
  EXPECT_NE(Output(*dir_ / "norv").find("--rendezvous HOST:PORT is required"), std::string::npos)
      << Output(*dir_ / "norv");
}

}  // namespace
}  // namespace peftd

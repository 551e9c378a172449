// Data-parallel training with real processes: this binary starts itself twice as ranks 0 and 1
// (the DataParallelRank.Run case, which skips unless PEFTD_DP_RANK is set), they meet over a
// TCPStore on 127.0.0.1 and train with ProcessGroupGloo. For every method, gated and not,
// 2 ranks x batch b give the loss curve, the gate sparsity and the adapter of 1 process x batch
// 2b from the same seed. A rank that never arrives makes rank 0 fail with a clear error, not hang.
#include "worker/train/data_parallel.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include "common/status.h"
#include "worker/model/hf_loader.h"
#include "worker/model/tiny_model.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_llama.h"
#include "worker/train/tensor_file.h"
#include "worker/train/trainer.h"

extern char** environ;

namespace peftd::train {
namespace {

namespace fs = std::filesystem;
using adapters::MethodKind;

constexpr int64_t kSteps = 14;
constexpr int64_t kRankBatch = 3;  // per rank; one process reads 2 x 3
constexpr int kAccumulation = 2;

// Records of varying lengths (padding differs between a 3-row and a 6-row batch), following
// next = (3·prev + 7) mod 50 + 10. 40 records: the epoch ends on a short global batch of 4.
std::vector<Example> Records() {
  std::vector<Example> out;
  for (int i = 0; i < 40; ++i) {
    Example e;
    int64_t x = 10 + (i * 17) % 50;
    const int len = 12 + (i * 7) % 13;
    for (int j = 0; j < len; ++j) {
      e.input_ids.push_back(x);
      x = (3 * x + 7) % 50 + 10;
    }
    out.push_back(e);
  }
  return out;
}

adapters::AdapterConfig Config(MethodKind kind, bool gated) {
  adapters::AdapterConfig c;
  c.method = kind;
  c.lora = {.r = 4, .alpha = 8};
  c.adalora = {.init_r = 6, .alpha = 12};
  c.adalora_schedule = {.target_r = 3, .tinit = 3, .tfinal = 4, .delta_t = 2};
  c.hut = {.r = 4};
  // τ moves fast enough that the gates switch tokens off within the run.
  if (gated) c.gate = adapters::GateOptions{.s = 2e-2, .lambda = 1e-3};
  c.targets.target_modules = {"q_proj", "v_proj", "o_proj", "down_proj"};
  return c;
}

struct RunOutput {
  std::vector<double> losses;
  std::vector<double> gate_sparsity;
  std::map<std::string, torch::Tensor> trainable;
  int buckets = 0;  // data-parallel: gradient buckets per step
};

class RecordingSink : public ProgressSink {
 public:
  void OnStep(const StepMetrics& m) override {
    losses.push_back(m.loss);
    gate_sparsity.push_back(m.gate_sparsity);
    if (m.step == cancel_at && cancel) cancel->store(true);
  }
  std::vector<double> losses, gate_sparsity;
  int64_t cancel_at = -1;  // sets `cancel` after this step
  std::atomic<bool>* cancel = nullptr;
};

// PeftLlama whose masking checksum is its rank's own: what ranks that decided differently report.
class DivergingModel : public TrainableModel {
 public:
  DivergingModel(TrainableModel* inner, int rank) : inner_(inner), rank_(rank) {}
  LossOutput Forward(const Batch& batch) override { return inner_->Forward(batch); }
  std::vector<TrainableTensor> Trainable() override { return inner_->Trainable(); }
  void SetTraining(bool training) override { inner_->SetTraining(training); }
  void AfterOptimizerStep(int64_t step) override { inner_->AfterOptimizerStep(step); }
  uint64_t DecisionChecksum() override { return inner_->DecisionChecksum() + rank_; }

 private:
  TrainableModel* inner_;
  int rank_;
};

// One rank's (or the single process's) training run.
absl::StatusOr<RunOutput> Train(const std::string& tiny_dir, MethodKind kind, bool gated,
                                int64_t batch, DataParallel* dp, int accumulation = kAccumulation,
                                bool diverge = false, int64_t cancel_at = -1) {
  torch::set_num_threads(1);
  torch::manual_seed(7);
  ASSIGN_OR_RETURN(model::Llama llama, model::LoadLlama(tiny_dir));
  ASSIGN_OR_RETURN(auto peft, adapters::PeftModel::Apply(llama.get(), Config(kind, gated), kSteps));
  PeftLlama model(llama, std::move(peft));
  MemoryBatchSource data(Records(), batch, 511, /*seed=*/3);
  if (dp) data.SetShard(dp->rank(), dp->world_size());
  TrainerOptions o;
  o.total_steps = kSteps;
  o.gradient_accumulation_steps = accumulation;
  o.lr = {.peak_lr = 2e-2, .warmup_steps = 2, .total_steps = kSteps, .decay = LrDecay::kLinear};
  o.max_grad_norm = 0.5;  // low enough to clip: clipping must use the global norm
  o.data_parallel = dp;
  // Buckets of a few adapted modules each: every method's equivalence below covers gradients
  // summed bucket by bucket while the backward pass runs (the default would be one bucket here).
  o.allreduce_bucket_bytes = 4096;
  RecordingSink sink;
  std::atomic<bool> cancelled{false};
  sink.cancel_at = cancel_at;
  sink.cancel = &cancelled;
  DivergingModel diverging(&model, dp ? dp->rank() : 0);
  Trainer trainer(o, diverge ? static_cast<TrainableModel*>(&diverging) : &model, &data, nullptr,
                  &sink, &cancelled);
  ASSIGN_OR_RETURN(TrainResult result, trainer.Run(std::nullopt));
  RunOutput out;
  out.losses = result.losses;
  out.gate_sparsity = sink.gate_sparsity;
  out.buckets = result.allreduce_buckets;
  for (const auto& t : model.Trainable()) out.trainable[t.name] = t.tensor.detach().clone();
  for (const auto& [k, v] : model.peft().GateTaus()) {
    out.trainable["__tau__/" + k] = torch::tensor({v}, torch::kDouble);
  }
  return out;
}

const fs::path& TinyDir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("peftd_dp_tiny" + std::to_string(::getpid()));
    fs::remove_all(d);
    EXPECT_TRUE(model::WriteTinyModel(d.string()).ok());
    return d;
  }();
  return dir;
}

uint16_t FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// A rank, started by the tests below: trains and writes its losses, gate sparsity and adapter
// tensors to PEFTD_DP_OUT.
TEST(DataParallelRank, Run) {
  if (std::string(Env("PEFTD_DP_RANK")).empty()) GTEST_SKIP() << "started by the tests below";
  DataParallelOptions o;
  o.rank = std::atoi(Env("PEFTD_DP_RANK"));
  o.world_size = std::atoi(Env("PEFTD_DP_WORLD"));
  o.rendezvous = Env("PEFTD_DP_ADDR");
  o.key = "test-attempt";
  o.timeout = std::chrono::seconds(60);
  auto dp = DataParallel::Connect(o);
  ASSERT_TRUE(dp.ok()) << dp.status();
  if (std::string(Env("PEFTD_DP_DIE")) == "1") {  // rank 1 dies between collectives
    torch::Tensor big = torch::ones({16 << 20});
    ASSERT_TRUE((*dp)->Sum({big}, "big").ok());
    if (o.rank == 1) {
      // Dies in the middle of the next collective, while rank 0 is still writing to it; no
      // goodbye: as after kill -9, its sockets just close.
      auto pending = (*dp)->StartSum(big, "big");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      ::_exit(0);
    }
    absl::Status failed;
    for (int i = 0; i < 20 && failed.ok(); ++i) failed = (*dp)->Sum({big}, "big");
    ASSERT_FALSE(failed.ok());
    EXPECT_TRUE(failed.code() == absl::StatusCode::kUnavailable ||
                failed.code() == absl::StatusCode::kDeadlineExceeded)
        << failed;
    EXPECT_NE(failed.message().find("allreduce of big (rank 0 of 2)"), std::string::npos) << failed;
    return;
  }
  if (std::string(Env("PEFTD_DP_CANCEL")) == "1") {  // rank 1 alone is cancelled after step 3
    auto stopped = Train(Env("PEFTD_DP_TINY"), MethodKind::kLora, false, kRankBatch, dp->get(),
                         kAccumulation, false, o.rank == 1 ? 3 : -1);
    ASSERT_FALSE(stopped.ok());
    EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
    EXPECT_NE(stopped.status().message().find(
                  o.rank == 1 ? "cancelled at step 3" : "cancelled (on another rank) at step 3"),
              std::string::npos)
        << stopped.status();
    return;
  }
  if (std::string(Env("PEFTD_DP_DIVERGE")) == "1") {
    auto failed = Train(Env("PEFTD_DP_TINY"), MethodKind::kAdaLora, false, kRankBatch, dp->get(),
                        kAccumulation, /*diverge=*/true);
    ASSERT_FALSE(failed.ok());
    EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal) << failed.status();
    EXPECT_NE(failed.status().message().find("masking decisions (AdaLoRA rank pattern, AdaDHP "
                                             "active modules) differ after step 1"),
              std::string::npos)
        << failed.status();
    return;
  }
  auto out = Train(Env("PEFTD_DP_TINY"), static_cast<MethodKind>(std::atoi(Env("PEFTD_DP_METHOD"))),
                   std::string(Env("PEFTD_DP_GATED")) == "1", kRankBatch, dp->get());
  ASSERT_TRUE(out.ok()) << out.status();
  TensorFile file;
  file.tensors = out->trainable;
  file.tensors["__losses__"] = torch::tensor(out->losses, torch::kDouble);
  file.tensors["__gate_sparsity__"] = torch::tensor(out->gate_sparsity, torch::kDouble);
  file.tensors["__buckets__"] = torch::tensor({int64_t{out->buckets}}, torch::kLong);
  ASSERT_TRUE(WriteTensorFile(Env("PEFTD_DP_OUT"), file).ok());
}

// Starts this binary as one rank; returns its pid.
pid_t SpawnRank(int rank, int world, const std::string& addr, MethodKind kind, bool gated,
                const std::string& out, bool diverge = false, bool cancel = false,
                bool die = false) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.push_back(*e);
  env_strings.push_back("PEFTD_DP_RANK=" + std::to_string(rank));
  env_strings.push_back("PEFTD_DP_WORLD=" + std::to_string(world));
  env_strings.push_back("PEFTD_DP_ADDR=" + addr);
  env_strings.push_back("PEFTD_DP_TINY=" + TinyDir().string());
  env_strings.push_back("PEFTD_DP_METHOD=" + std::to_string(static_cast<int>(kind)));
  env_strings.push_back(std::string("PEFTD_DP_GATED=") + (gated ? "1" : "0"));
  env_strings.push_back("PEFTD_DP_OUT=" + out);
  if (diverge) env_strings.push_back("PEFTD_DP_DIVERGE=1");
  if (cancel) env_strings.push_back("PEFTD_DP_CANCEL=1");
  if (die) env_strings.push_back("PEFTD_DP_DIE=1");
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=DataParallelRank.Run";
  char* argv[] = {exe.data(), filter.data(), nullptr};
  pid_t pid = 0;
  EXPECT_EQ(::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, envp.data()), 0);
  return pid;
}

// Waits for every child; kills them all after `limit` (a hang is a failure, not a stuck test).
std::vector<int> WaitAll(const std::vector<pid_t>& pids, std::chrono::seconds limit) {
  std::vector<int> codes(pids.size(), -1);
  std::vector<bool> done(pids.size(), false);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  size_t left = pids.size();
  while (left > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (done[i]) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        done[i] = true;
        --left;
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    if (left > 0 && std::chrono::steady_clock::now() > deadline) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (!done[i]) {
          ::kill(pids[i], SIGKILL);
          ::waitpid(pids[i], nullptr, 0);
        }
      }
      ADD_FAILURE() << "ranks still running after " << limit.count() << "s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return codes;
}

struct Case {
  MethodKind kind;
  bool gated;
};

class DataParallelTest : public ::testing::TestWithParam<Case> {};

TEST_P(DataParallelTest, TwoRanksOfBatchBTrainAsOneProcessOfBatch2B) {
  const auto [kind, gated] = GetParam();
  // The reference: one process, batch 2b, no data parallelism.
  auto single = Train(TinyDir().string(), kind, gated, 2 * kRankBatch, nullptr);
  ASSERT_TRUE(single.ok()) << single.status();
  // The same training split into twice the micro-batches of half the size: the mathematically
  // identical run, whose distance from `single` is fp32 rounding alone. AdamW normalizes every
  // element's step, so rounding in a near-zero gradient moves a weight by up to the learning
  // rate: an adapter can only be compared against this yardstick, not bit for bit.
  auto resplit = Train(TinyDir().string(), kind, gated, kRankBatch, nullptr, 2 * kAccumulation);
  ASSERT_TRUE(resplit.ok()) << resplit.status();

  const fs::path out_dir =
      fs::temp_directory_path() / ("peftd_dp_out" + std::to_string(::getpid()));
  fs::create_directories(out_dir);
  const std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  std::vector<pid_t> pids;
  std::vector<std::string> outs;
  for (int rank = 0; rank < 2; ++rank) {
    outs.push_back((out_dir / ("rank" + std::to_string(rank) + ".safetensors")).string());
    fs::remove(outs.back());
    pids.push_back(SpawnRank(rank, 2, addr, kind, gated, outs.back()));
  }
  const std::vector<int> codes = WaitAll(pids, std::chrono::seconds(240));
  ASSERT_EQ(codes, (std::vector<int>{0, 0}));

  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    auto file = ReadTensorFile(outs[rank]);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_GT(file->tensors.at("__buckets__").item<int64_t>(), 1);
    torch::Tensor losses = file->tensors.at("__losses__");
    ASSERT_EQ(losses.numel(), static_cast<int64_t>(single->losses.size()));
    for (int64_t s = 0; s < losses.numel(); ++s) {
      const double expected = single->losses[s];
      EXPECT_NEAR(losses[s].item<double>(), expected, 1e-5 * std::abs(expected))
          << "loss of step " << s + 1;
    }
    torch::Tensor sparsity = file->tensors.at("__gate_sparsity__");
    ASSERT_EQ(sparsity.numel(), static_cast<int64_t>(single->gate_sparsity.size()));
    for (int64_t s = 0; s < sparsity.numel(); ++s) {
      EXPECT_NEAR(sparsity[s].item<double>(), single->gate_sparsity[s], 1e-9)
          << "gate sparsity of step " << s + 1;
    }
    for (const auto& [name, expected] : single->trainable) {
      auto it = file->tensors.find(name);
      ASSERT_NE(it, file->tensors.end()) << name;
      const double scale = std::max(1e-3, expected.abs().max().item<double>());
      const double diff = (it->second - expected).abs().max().item<double>();
      const double rounding = (resplit->trainable.at(name) - expected).abs().max().item<double>();
      // Threshold: within 10x the rounding yardstick of the same tensor, or 1e-4 of its scale.
      // fp32 sums of b and 2b rows round differently (the fused q/k/v GEMM and the gate's
      // threshold see other partial sums), and AdamW turns a near-zero gradient's rounding into a
      // step of up to lr: gated LoRA moved one lora_A element by 3.7e-5 of its scale.
      EXPECT_LE(diff, std::max(10 * rounding, 1e-4 * scale))
          << name << " (re-split run: " << rounding << ")";
    }
  }
  fs::remove_all(out_dir);
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, DataParallelTest,
    ::testing::Values(Case{MethodKind::kLora, false}, Case{MethodKind::kLora, true},
                      Case{MethodKind::kDora, false}, Case{MethodKind::kDora, true},
                      Case{MethodKind::kAdaLora, false}, Case{MethodKind::kAdaLora, true},
                      Case{MethodKind::kHut, false}, Case{MethodKind::kHut, true},
                      Case{MethodKind::kAdaDhp, false}, Case{MethodKind::kAdaDhp, true}),
    [](const auto& info) {
      return std::string(adapters::MethodName(info.param.kind)) + (info.param.gated ? "_S" : "");
    });

TEST(DataParallelConnect, RankThatNeverArrivesFailsWithinTheTimeout) {
  DataParallelOptions o;
  o.rank = 0;
  o.world_size = 2;
  o.rendezvous = "127.0.0.1:" + std::to_string(FreePort());
  o.key = "lonely";
  o.timeout = std::chrono::seconds(2);
  const auto start = std::chrono::steady_clock::now();
  auto dp = DataParallel::Connect(o);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(dp.ok());
  EXPECT_EQ(dp.status().code(), absl::StatusCode::kDeadlineExceeded) << dp.status();
  EXPECT_NE(dp.status().message().find("not every rank arrived within 2s"), std::string::npos)
      << dp.status();
  EXPECT_NE(dp.status().message().find(o.rendezvous), std::string::npos) << dp.status();
  // Bounded: not a hang (the bound is loose; the timeout is what the error reports).
  EXPECT_LT(seconds, 30);
}

// Ranks whose masking decisions differ stop at the first step, loudly, instead of training
// adapters that drift apart (each rank checks its own error and exits 0).
TEST(DataParallelTrainer, DifferentMaskingDecisionsStopTheRun) {
  const std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(SpawnRank(rank, 2, addr, MethodKind::kAdaLora, false, "", /*diverge=*/true));
  }
  EXPECT_EQ(WaitAll(pids, std::chrono::seconds(120)), (std::vector<int>{0, 0}));
}

// A cancel seen by one rank stops both at the same step, CANCELLED, with no rank left waiting in
// a collective.
TEST(DataParallelTrainer, CancelOnOneRankStopsEveryRank) {
  const std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(SpawnRank(rank, 2, addr, MethodKind::kLora, false, "", false, /*cancel=*/true));
  }
  EXPECT_EQ(WaitAll(pids, std::chrono::seconds(120)), (std::vector<int>{0, 0}));
}

// A rank whose peer died in the middle of a collective gets a failed collective naming it, which
// the worker reports and the server requeues; no hang. (That the process ignores SIGPIPE, so the
// failure is an error and not the end of the whole worker, RankZeroOnPortZero... checks: which of
// a dead socket's read and write fails first depends on timing, so this test cannot force it.)
TEST(DataParallelTrainer, APeerThatDiesMidCollectiveFailsItNamingTheCollective) {
  const std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(SpawnRank(rank, 2, addr, MethodKind::kLora, false, "", false, false,
                             /*die=*/true));
  }
  EXPECT_EQ(WaitAll(pids, std::chrono::seconds(120)), (std::vector<int>{0, 0}));
}

// The scheduler's rendezvous (issue 13): rank 0 asks for port 0, the system picks a free one,
// and `listening` reports it before rank 0 waits; rank 1 meets it there.
TEST(DataParallelConnect, RankZeroOnPortZeroReportsThePortItListensOn) {
  std::promise<uint16_t> port;
  std::thread rank0_thread;
  absl::StatusOr<std::unique_ptr<DataParallel>> rank0;
  rank0_thread = std::thread([&] {
    DataParallelOptions o;
    o.rank = 0;
    o.world_size = 2;
    o.rendezvous = "127.0.0.1:0";
    o.key = "ephemeral";
    o.timeout = std::chrono::seconds(60);
    o.listening = [&](uint16_t p) { port.set_value(p); };
    rank0 = DataParallel::Connect(o);
    if (!rank0.ok()) {
      try {
        port.set_value(0);
      } catch (const std::future_error&) {
      }
    }
  });
  const uint16_t p = port.get_future().get();
  ASSERT_GT(p, 0);
  DataParallelOptions o;
  o.rank = 1;
  o.world_size = 2;
  o.rendezvous = "127.0.0.1:" + std::to_string(p);
  o.key = "ephemeral";
  o.timeout = std::chrono::seconds(60);
  auto rank1 = DataParallel::Connect(o);
  rank0_thread.join();
  ASSERT_TRUE(rank0.ok()) << rank0.status();
  ASSERT_TRUE(rank1.ok()) << rank1.status();
  struct sigaction pipe_action {};
  ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &pipe_action), 0);
  EXPECT_EQ(pipe_action.sa_handler, SIG_IGN) << "a rank must survive a peer that died";
  torch::Tensor a = torch::full({2}, 1.0), b = torch::full({2}, 2.0);
  std::thread sum0([&] { EXPECT_TRUE((*rank0)->Sum({a}, "a").ok()); });
  EXPECT_TRUE((*rank1)->Sum({b}, "b").ok());
  sum0.join();
  EXPECT_TRUE(a.equal(torch::full({2}, 3.0)));
  EXPECT_TRUE(b.equal(torch::full({2}, 3.0)));
  // Port 0 is rank 0's alone: another rank cannot connect to it.
  DataParallelOptions bad = o;
  bad.rendezvous = "127.0.0.1:0";
  EXPECT_EQ(DataParallel::Connect(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DataParallelConnect, BadArgumentsNameTheField) {
  DataParallelOptions o;
  o.world_size = 2;
  o.rank = 2;
  EXPECT_EQ(DataParallel::Connect(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rank = 1;
  o.rendezvous = "no-port";
  auto bad = DataParallel::Connect(o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("rendezvous: 'no-port' is not host:port"),
            std::string::npos)
      << bad.status();
  o.world_size = 1;
  o.rank = 0;
  auto alone = DataParallel::Connect(o);  // a world of one needs no rendezvous
  ASSERT_TRUE(alone.ok()) << alone.status();
  torch::Tensor t = torch::ones({3});
  EXPECT_TRUE((*alone)->Sum({t}, "x").ok());
  EXPECT_TRUE(t.equal(torch::ones({3})));
}

// The ranks' shards of each global batch are the rows one process with the global batch reads.
TEST(MemoryBatchSourceShard, ShardsConcatenateToTheGlobalBatch) {
  MemoryBatchSource global(Records(), 6, 511, /*seed=*/3, false, /*group_by_length=*/true);
  MemoryBatchSource r0(Records(), 3, 511, 3, false, true), r1(Records(), 3, 511, 3, false, true);
  r0.SetShard(0, 2);
  r1.SetShard(1, 2);
  EXPECT_EQ(r0.BatchesPerEpoch(), global.BatchesPerEpoch());
  for (int i = 0; i < 2 * global.BatchesPerEpoch(); ++i) {
    Batch g = global.Next(), a = r0.Next(), b = r1.Next();
    EXPECT_EQ(a.num_targets + b.num_targets, g.num_targets) << "batch " << i;
    EXPECT_EQ(a.num_tokens + b.num_tokens, g.num_tokens) << "batch " << i;
    ASSERT_EQ(a.input_ids.size(0) + b.input_ids.size(0), g.input_ids.size(0)) << "batch " << i;
    // Row by row, the real tokens agree (a shard pads to its own longest record).
    int64_t row = 0;
    for (const Batch* part : {&a, &b}) {
      for (int64_t r = 0; r < part->input_ids.size(0); ++r, ++row) {
        const int64_t n = part->attention_mask[r].sum().item<int64_t>();
        EXPECT_TRUE(part->input_ids[r].narrow(0, 0, n).equal(g.input_ids[row].narrow(0, 0, n)))
            << "batch " << i << " row " << row;
      }
    }
  }
  EXPECT_EQ(r0.Position(), global.Position());
}

}  // namespace
}  // namespace peftd::train

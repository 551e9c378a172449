// The local worker supervisor: command lines and GPU assignment, restart backoff and shutdown on a
// fake launcher with a fake clock; then real children (/bin/sh scripts) through the real launcher.
#include "server/worker_supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// --- fake processes ---

struct FakeState {
  bool alive = true;
  bool ignore_term = false;
  bool terminated = false;
  bool killed = false;
  ExitStatus exit;
};

class FakeChild final : public ChildProcess {
 public:
  FakeChild(pid_t pid, std::shared_ptr<FakeState> s) : pid_(pid), s_(std::move(s)) {}
  pid_t pid() const override { return pid_; }
  std::optional<ExitStatus> Poll() override {
    if (s_->alive) return std::nullopt;
    return s_->exit;
  }
  void Terminate() override {
    s_->terminated = true;
    if (!s_->ignore_term) Die({0, SIGTERM});
  }
  void Kill() override {
    s_->killed = true;
    Die({0, SIGKILL});
  }
  void Die(ExitStatus e) {
    s_->alive = false;
    s_->exit = e;
  }

 private:
  pid_t pid_;
  std::shared_ptr<FakeState> s_;
};

class FakeLauncher final : public ProcessLauncher {
 public:
  struct Launched {
    LaunchSpec spec;
    std::shared_ptr<FakeState> state;  // null when the launch failed
  };
  absl::StatusOr<std::unique_ptr<ChildProcess>> Launch(const LaunchSpec& spec) override {
    if (fail_next > 0) {
      --fail_next;
      launched.push_back({spec, nullptr});
      return absl::FailedPreconditionError("cannot execute: injected");
    }
    auto s = std::make_shared<FakeState>();
    launched.push_back({spec, s});
    return std::unique_ptr<ChildProcess>(
        new FakeChild(1000 + static_cast<pid_t>(launched.size()), s));
  }
  static bool Of(const Launched& l, int i) { return l.spec.argv[4] == absl::StrCat("local-", i); }
  // The newest live process of worker `i` ("local-<i>").
  std::shared_ptr<FakeState> Latest(int i) {
    std::shared_ptr<FakeState> found;
    for (const auto& l : launched) {
      if (Of(l, i) && l.state != nullptr) found = l.state;
    }
    return found;
  }
  void Crash(int i, int code) {
    auto s = Latest(i);
    s->alive = false;
    s->exit = {code, 0};
  }
  int LaunchesOf(int i) const {
    return static_cast<int>(std::count_if(launched.begin(), launched.end(),
                                          [i](const Launched& l) { return Of(l, i); }));
  }

  std::vector<Launched> launched;
  int fail_next = 0;
};

class SupervisorTest : public ::testing::Test {
 protected:
  WorkerSupervisorOptions Options(int n) {
    WorkerSupervisorOptions o;
    o.num_workers = n;
    o.worker_binary = "/bin/sh";  // exists and is executable; the fake never runs it
    o.server_address = "127.0.0.1:5555";
    o.monitor_thread = false;
    o.min_backoff = absl::Seconds(1);
    o.max_backoff = absl::Seconds(5);
    o.stable_after = absl::Seconds(60);
    o.stop_grace = absl::Seconds(10);
    o.sleep = [this](absl::Duration d) { clock_.Advance(d); };
    return o;
  }
  std::unique_ptr<WorkerSupervisor> Make(const WorkerSupervisorOptions& o) {
    auto launcher = std::make_unique<FakeLauncher>();
    launcher_ = launcher.get();
    return std::make_unique<WorkerSupervisor>(o, std::move(launcher), &clock_);
  }
  FakeClock clock_;
  FakeLauncher* launcher_ = nullptr;
};

TEST_F(SupervisorTest, CommandLineTokenCacheAndRoundRobinGpus) {
  auto o = Options(3);
  o.gpus = {"0", "1"};
  o.token_file = "/etc/peftd/token";
  o.auth_token = "tok";
  o.model_root = "/models";
  o.cache_dir = "/data/workers";
  o.extra_args = {"--threads=2"};
  auto sup = Make(o);
  const LaunchSpec s1 = sup->SpecFor(1);
  EXPECT_THAT(s1.argv,
              ElementsAre("/bin/sh", "--server", "127.0.0.1:5555", "--worker-id", "local-1",
                          "--token-file", "/etc/peftd/token", "--model-root", "/models",
                          "--cache-dir", "/data/workers/local-1", "--threads=2"));
  // The token travels by file, never on argv, and not twice.
  EXPECT_EQ(s1.env.count("PEFTD_TOKEN"), 0u);
  EXPECT_EQ(sup->SpecFor(0).env.at("CUDA_VISIBLE_DEVICES"), "0");
  EXPECT_EQ(s1.env.at("CUDA_VISIBLE_DEVICES"), "1");
  EXPECT_EQ(sup->SpecFor(2).env.at("CUDA_VISIBLE_DEVICES"), "0");
}

TEST_F(SupervisorTest, InlineTokenGoesThroughTheEnvironmentAndGpusCanBeHidden) {
  auto o = Options(1);
  o.auth_token = "tok";
  o.hide_gpus = true;
  auto sup = Make(o);
  const LaunchSpec s = sup->SpecFor(0);
  EXPECT_THAT(s.argv,
              ElementsAre("/bin/sh", "--server", "127.0.0.1:5555", "--worker-id", "local-0"));
  EXPECT_EQ(s.env.at("PEFTD_TOKEN"), "tok");
  EXPECT_EQ(s.env.at("CUDA_VISIBLE_DEVICES"), "");

  auto plain = Make(Options(1));
  EXPECT_TRUE(plain->SpecFor(0).env.empty()) << "no GPU known: CUDA_VISIBLE_DEVICES untouched";
}

TEST_F(SupervisorTest, ChildrenOfATlsServerDialItOverTlsUnlessWorkerArgsSayOtherwise) {
  ServerOptions server;
  server.local_workers = 1;
  server.worker_binary = "/bin/sh";
  server.data_dir = "/data";
  server.tls_cert = "/etc/peftd/server.pem";
  server.tls_key = "/etc/peftd/server.key";
  WorkerSupervisorOptions o = SupervisorOptionsFrom(server, "127.0.0.1:5555");
  EXPECT_EQ(o.tls_ca, "/etc/peftd/server.pem");
  EXPECT_TRUE(o.tls_cert.empty()) << "no client certificate without --tls-client-ca";
  o.monitor_thread = false;
  EXPECT_THAT(
      Make(o)->SpecFor(0).argv,
      ElementsAre("/bin/sh", "--server", "127.0.0.1:5555", "--worker-id", "local-0", "--tls-ca",
                  "/etc/peftd/server.pem", "--cache-dir", "/data/workers/local-0"));

  server.model_root = "/models";
  server.tls_client_ca = "/etc/peftd/clients.pem";
  server.worker_args = {"--tls-ca=/etc/peftd/ca.pem"};
  o = SupervisorOptionsFrom(server, "127.0.0.1:5555");
  o.monitor_thread = false;
  EXPECT_THAT(
      Make(o)->SpecFor(0).argv,
      ElementsAre("/bin/sh", "--server", "127.0.0.1:5555", "--worker-id", "local-0", "--tls-cert",
                  "/etc/peftd/server.pem", "--tls-key", "/etc/peftd/server.key", "--model-root",
                  "/models", "--cache-dir", "/data/workers/local-0", "--tls-ca=/etc/peftd/ca.pem"));
}

TEST_F(SupervisorTest, InlineTokenIsWrittenToAPrivateFileForTheChildren) {
  const fs::path cache =
      fs::temp_directory_path() / absl::StrCat("peftd_supervisor_token_", ::getpid());
  fs::remove_all(cache);
  auto o = Options(2);
  o.auth_token = "tok-inline";
  o.cache_dir = cache.string();
  auto sup = Make(o);
  ASSERT_TRUE(sup->Start().ok());
  const std::string file = (cache / "token").string();
  EXPECT_THAT(launcher_->launched[1].spec.argv,
              ElementsAre("/bin/sh", "--server", "127.0.0.1:5555", "--worker-id", "local-1",
                          "--token-file", file, "--cache-dir", (cache / "local-1").string()));
  EXPECT_EQ(launcher_->launched[1].spec.env.count("PEFTD_TOKEN"), 0u);
  std::ifstream in(file);
  const std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "tok-inline");
  EXPECT_EQ(fs::status(file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(cache).permissions() & fs::perms::all, fs::perms::owner_all);
  sup->Stop();
  fs::remove_all(cache);
}

TEST_F(SupervisorTest, StartLaunchesEveryWorker) {
  auto sup = Make(Options(2));
  ASSERT_TRUE(sup->Start().ok());
  EXPECT_EQ(launcher_->launched.size(), 2u);
  const auto children = sup->Children();
  ASSERT_EQ(children.size(), 2u);
  EXPECT_EQ(children[0].worker_id, "local-0");
  EXPECT_GT(children[1].pid, 0);
  EXPECT_EQ(children[1].starts, 1);
  EXPECT_EQ(children[0].cuda_visible_devices, "<unset>");
  EXPECT_FALSE(sup->Start().ok()) << "second Start";
}

TEST_F(SupervisorTest, DeadWorkerIsRestartedWithDoublingBackoffThatResetsAfterAStableRun) {
  auto sup = Make(Options(2));
  ASSERT_TRUE(sup->Start().ok());
  // Crash loop: waits of 1s, 2s, 4s, then the 5s cap.
  for (absl::Duration wait :
       {absl::Seconds(1), absl::Seconds(2), absl::Seconds(4), absl::Seconds(5), absl::Seconds(5)}) {
    const int before = launcher_->LaunchesOf(0);
    launcher_->Crash(0, 3);
    sup->PollOnce();
    EXPECT_EQ(sup->Children()[0].pid, 0);
    EXPECT_EQ(sup->Children()[0].last_exit, "exit code 3");
    clock_.Advance(wait - absl::Milliseconds(1));
    sup->PollOnce();
    EXPECT_EQ(launcher_->LaunchesOf(0), before) << "restarted before its backoff of " << wait;
    clock_.Advance(absl::Milliseconds(1));
    sup->PollOnce();
    EXPECT_EQ(launcher_->LaunchesOf(0), before + 1) << "not restarted after " << wait;
  }
  // Worker 1 was never touched.
  EXPECT_EQ(launcher_->LaunchesOf(1), 1);

  // A worker that ran for stable_after before dying starts over at the minimum backoff.
  clock_.Advance(absl::Seconds(60));
  sup->PollOnce();
  const int before = launcher_->LaunchesOf(0);
  launcher_->Crash(0, 1);
  sup->PollOnce();
  clock_.Advance(absl::Seconds(1));
  sup->PollOnce();
  EXPECT_EQ(launcher_->LaunchesOf(0), before + 1);
}

TEST_F(SupervisorTest, ADeadWorkerIsToldWithHowItEndedButAStoppedOneIsNot) {
  auto o = Options(2);
  std::vector<std::pair<std::string, std::string>> told;
  o.on_exit = [&](const std::string& id, const std::string& how) { told.emplace_back(id, how); };
  auto sup = Make(o);
  ASSERT_TRUE(sup->Start().ok());
  const pid_t pid = sup->Children()[1].pid;
  launcher_->Latest(1)->alive = false;
  launcher_->Latest(1)->exit = {0, 9};
  sup->PollOnce();
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].first, "local-1");
  EXPECT_EQ(told[0].second, absl::StrCat("(pid ", pid, ") ended with signal 9 (Killed)"));
  sup->Stop();  // ending them on purpose is no death to report
  EXPECT_EQ(told.size(), 1u);
}

TEST_F(SupervisorTest, FailedLaunchIsRetriedWithBackoff) {
  auto sup = Make(Options(1));
  launcher_->fail_next = 1;
  ASSERT_TRUE(sup->Start().ok());
  EXPECT_EQ(sup->Children()[0].pid, 0);
  EXPECT_THAT(sup->Children()[0].last_exit, HasSubstr("injected"));
  sup->PollOnce();
  EXPECT_EQ(launcher_->launched.size(), 1u);
  clock_.Advance(absl::Seconds(1));
  sup->PollOnce();
  EXPECT_EQ(launcher_->launched.size(), 2u);
  EXPECT_GT(sup->Children()[0].pid, 0);
}

TEST_F(SupervisorTest, StopTerminatesThenKillsAfterTheGraceAndNeverRestarts) {
  auto sup = Make(Options(2));
  ASSERT_TRUE(sup->Start().ok());
  // Worker 1 ignores SIGTERM.
  launcher_->launched[1].state->ignore_term = true;
  const absl::Time t0 = clock_.Now();
  sup->Stop();
  EXPECT_TRUE(launcher_->launched[0].state->terminated);
  EXPECT_FALSE(launcher_->launched[0].state->killed);
  EXPECT_TRUE(launcher_->launched[1].state->terminated);
  EXPECT_TRUE(launcher_->launched[1].state->killed);
  EXPECT_GE(clock_.Now() - t0, absl::Seconds(10)) << "SIGKILL before the grace period";
  EXPECT_EQ(sup->Children()[1].pid, 0);
  EXPECT_THAT(sup->Children()[1].last_exit, HasSubstr("signal 9"));
  clock_.Advance(absl::Hours(1));
  sup->PollOnce();
  EXPECT_EQ(launcher_->launched.size(), 2u);
  sup->Stop();  // idempotent
}

TEST_F(SupervisorTest, MissingBinaryNamesTheFlag) {
  auto o = Options(1);
  o.worker_binary = "/nonexistent/peftd-worker";
  auto sup = Make(o);
  const absl::Status st = sup->Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("--worker-binary"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("/nonexistent/peftd-worker"));
}

TEST(RestartBackoff, DoublesAndCaps) {
  const auto min = absl::Milliseconds(100), max = absl::Seconds(1);
  EXPECT_EQ(RestartBackoff(0, min, max), absl::ZeroDuration());
  EXPECT_EQ(RestartBackoff(1, min, max), absl::Milliseconds(100));
  EXPECT_EQ(RestartBackoff(2, min, max), absl::Milliseconds(200));
  EXPECT_EQ(RestartBackoff(4, min, max), absl::Milliseconds(800));
  EXPECT_EQ(RestartBackoff(5, min, max), absl::Seconds(1));
  EXPECT_EQ(RestartBackoff(1000, min, max), absl::Seconds(1));
}

TEST(LocalDialAddress, WildcardsBecomeLoopback) {
  EXPECT_EQ(LocalDialAddress("0.0.0.0:50051", 50051), "127.0.0.1:50051");
  EXPECT_EQ(LocalDialAddress("127.0.0.1:0", 41234), "127.0.0.1:41234");
  EXPECT_EQ(LocalDialAddress("[::]:0", 7), "[::1]:7");
  EXPECT_EQ(LocalDialAddress("[::1]:0", 7), "[::1]:7");
  EXPECT_EQ(LocalDialAddress("myhost:50051", 50051), "myhost:50051");
  EXPECT_EQ(LocalDialAddress("unix:/tmp/s", 0), "unix:/tmp/s");
}

TEST(SupervisorOptionsFrom, TakesTheServerFlags) {
  ServerOptions s;
  s.local_workers = 4;
  s.worker_binary = "/w";
  s.data_dir = "/d";
  s.model_root = "/m";
  s.gpus = {"0"};
  s.auth_token_file = "/users";
  s.auth_token = "users";
  s.worker_token_file = "/t";
  s.worker_token = "x";
  s.shutdown_grace = absl::Seconds(3);
  const auto o = SupervisorOptionsFrom(s, "127.0.0.1:1");
  EXPECT_EQ(o.num_workers, 4);
  EXPECT_EQ(o.worker_binary, "/w");
  EXPECT_EQ(o.server_address, "127.0.0.1:1");
  EXPECT_EQ(o.cache_dir, "/d/workers");
  EXPECT_EQ(o.model_root, "/m");
  EXPECT_EQ(o.token_file, "/t");  // the workers' token, never the users'
  EXPECT_EQ(o.auth_token, "x");
  EXPECT_EQ(o.stop_grace, absl::Seconds(3));
  EXPECT_EQ(o.gpus, std::vector<std::string>{"0"});
}

// --- real processes ---

class RealProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("peftd_supervisor_test_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Script(const std::string& name, const std::string& body) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << "#!/bin/sh\n" << body;
    fs::permissions(p, fs::perms::owner_all);
    return p.string();
  }
  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Polls `done` every 10 ms for up to 20 s (a bound against hangs, not a timing assertion).
  static bool WaitFor(const std::function<bool()>& done) {
    for (int i = 0; i < 2000; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }
  WorkerSupervisorOptions Options(const std::string& binary) {
    WorkerSupervisorOptions o;
    o.num_workers = 1;
    o.worker_binary = binary;
    o.server_address = "127.0.0.1:9";
    o.min_backoff = absl::Milliseconds(20);
    o.max_backoff = absl::Milliseconds(80);
    o.poll_interval = absl::Milliseconds(10);
    o.stop_grace = absl::Milliseconds(300);
    return o;
  }
  fs::path dir_;
};

TEST_F(RealProcessTest, ChildGetsItsArgumentsAndEnvironmentAndStopsOnSigterm) {
  const fs::path out = dir_ / "seen";
  const std::string worker =
      Script("worker.sh",
             absl::StrCat("echo \"args=$*\" > ", out.string(), ".tmp\n",
                          "echo \"cuda=${CUDA_VISIBLE_DEVICES-unset}\" >> ", out.string(), ".tmp\n",
                          "echo \"token=$PEFTD_TOKEN\" >> ", out.string(), ".tmp\n", "mv ",
                          out.string(), ".tmp ", out.string(), "\n", "exec sleep 60\n"));
  auto o = Options(worker);
  o.gpus = {"GPU-abc"};
  o.auth_token = "tok";
  WorkerSupervisor sup(o, nullptr);
  ASSERT_TRUE(sup.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return fs::exists(out); }));
  EXPECT_EQ(Read(out), "args=--server 127.0.0.1:9 --worker-id local-0\ncuda=GPU-abc\ntoken=tok\n");
  const pid_t pid = sup.Children()[0].pid;
  ASSERT_GT(pid, 0);
  sup.Stop();
  EXPECT_THAT(sup.Children()[0].last_exit, HasSubstr("signal 15"));
  EXPECT_EQ(::kill(pid, 0), -1) << "child not reaped";
}

TEST_F(RealProcessTest, CrashingChildIsRestartedAndItsExitStatusKept) {
  const fs::path runs = dir_ / "runs";
  const std::string worker =
      Script("crash.sh", absl::StrCat("echo x >> ", runs.string(), "\nexit 3\n"));
  WorkerSupervisor sup(Options(worker), nullptr);
  ASSERT_TRUE(sup.Start().ok());
  // Two deaths seen and a third start made; Stop() may then catch the third run mid-way.
  ASSERT_TRUE(WaitFor([&] {
    const auto c = sup.Children()[0];
    return c.starts >= 3 && c.last_exit == "exit code 3";
  }));
  sup.Stop();
  const std::string all = Read(runs);
  EXPECT_GE(std::count(all.begin(), all.end(), 'x'), 2);
}

TEST_F(RealProcessTest, ChildIgnoringSigtermIsKilledWithItsHelpers) {
  const fs::path ready = dir_ / "ready";
  const std::string worker = Script(
      "stubborn.sh",
      absl::StrCat("trap '' TERM\ntouch ", ready.string(), "\nwhile :; do sleep 0.05; done\n"));
  WorkerSupervisor sup(Options(worker), nullptr);
  ASSERT_TRUE(sup.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return fs::exists(ready); }));
  const pid_t pid = sup.Children()[0].pid;
  sup.Stop();
  EXPECT_THAT(sup.Children()[0].last_exit, HasSubstr("signal 9"));
  EXPECT_EQ(::kill(pid, 0), -1);
  // The whole process group goes: no `sleep` of that group survives (a killed helper may stay a
  // zombie for a moment until init reaps it, hence the wait).
  EXPECT_TRUE(WaitFor([&] { return ::kill(-pid, 0) == -1; }));
}

TEST(RealLauncher, ExecFailuresAreReportedByLaunch) {
  auto launcher = MakeRealProcessLauncher();
  auto missing = launcher->Launch({{"/nonexistent/peftd-worker"}, {}});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/peftd-worker"));

  const fs::path plain = fs::temp_directory_path() / absl::StrCat("peftd_not_exec_", ::getpid());
  std::ofstream(plain) << "not a program";
  fs::permissions(plain, fs::perms::owner_read | fs::perms::owner_write);
  auto not_exec = launcher->Launch({{plain.string()}, {}});
  fs::remove(plain);
  ASSERT_FALSE(not_exec.ok());
  EXPECT_EQ(not_exec.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(RealLauncher, RunAndWaitReportsCodesSignalsAndEnvironmentChanges) {
  auto code = RunAndWait({{"/bin/sh", "-c", "exit 4"}, {}});
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(code->code, 4);
  EXPECT_EQ(code->ToString(), "exit code 4");
  auto sig = RunAndWait({{"/bin/sh", "-c", "kill -9 $$"}, {}});
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(sig->signal, 9);
  EXPECT_THAT(sig->ToString(), HasSubstr("signal 9"));

  setenv("PEFTD_TEST_REMOVED", "x", 1);
  setenv("PEFTD_TEST_KEPT", "k", 1);
  auto env = RunAndWait({{"/bin/sh", "-c",
                          "[ -z \"${PEFTD_TEST_REMOVED+set}\" ] && [ \"$PEFTD_TEST_KEPT\" = k ] && "
                          "[ \"$PEFTD_TEST_ADDED\" = a ]"},
                         {{"PEFTD_TEST_REMOVED", std::nullopt}, {"PEFTD_TEST_ADDED", "a"}}});
  unsetenv("PEFTD_TEST_REMOVED");
  unsetenv("PEFTD_TEST_KEPT");
  ASSERT_TRUE(env.ok());
  EXPECT_TRUE(env->ok()) << env->ToString();
}

TEST(RealLauncher, ChildDiesWhenTheLaunchingThreadEnds) {
  auto launcher = MakeRealProcessLauncher();
  std::unique_ptr<ChildProcess> child;
  std::thread t([&] {
    auto c = launcher->Launch({{"/bin/sh", "-c", "exec sleep 60"}, {}});
    ASSERT_TRUE(c.ok());
    child = std::move(*c);
  });
  t.join();
  ASSERT_NE(child, nullptr);
  std::optional<ExitStatus> exit;
  for (int i = 0; i < 2000 && !exit.has_value(); ++i) {
    exit = child->Poll();
    if (!exit.has_value()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exit.has_value()) child->Kill();
  ASSERT_TRUE(exit.has_value()) << "PR_SET_PDEATHSIG did not fire";
  EXPECT_EQ(exit->signal, SIGTERM);
}

}  // namespace
}  // namespace peftd::server

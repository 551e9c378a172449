// Flags, defaults, environment fallbacks and validation of `peftd`.
#include "server/options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace peftd::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class OptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The developer's shell may export some; the tests must not depend on it.
    for (const char* v :
         {"PEFTD_LISTEN", "PEFTD_METRICS_LISTEN", "PEFTD_DATA_DIR", "PEFTD_MODEL_ROOT",
          "PEFTD_LOCAL_WORKERS", "PEFTD_WORKER_BINARY", "PEFTD_GPUS", "PEFTD_AUTH_TOKEN",
          "PEFTD_AUTH_TOKEN_FILE", "PEFTD_TLS_CERT", "PEFTD_TLS_KEY", "PEFTD_TLS_CLIENT_CA",
          "PEFTD_EXAMPLES_DIR", "PEFTD_LOG_LEVEL", "PEFTD_WORKER_TOKEN", "PEFTD_WORKER_TOKEN_FILE",
          "PEFTD_INSECURE"}) {
      unsetenv(v);
    }
    dir_ = fs::temp_directory_path() /
           ("peftd_options_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    unsetenv("PEFTD_LISTEN");
    unsetenv("PEFTD_AUTH_TOKEN");
    fs::remove_all(dir_);
  }

  absl::StatusOr<ServerOptions> Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "peftd");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return ParseServerOptions(static_cast<int>(args.size()), argv.data());
  }

  std::string WriteFile(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << content;
    ::chmod(path.c_str(), mode);
    return path;
  }

  // The status of parsing `args`, which must fail, mentioning `flag`.
  void ExpectRefused(std::vector<std::string> args, const std::string& flag) {
    auto o = Parse(args);
    ASSERT_FALSE(o.ok()) << "accepted: " << args[0];
    EXPECT_THAT(std::string(o.status().message()), HasSubstr(flag)) << o.status();
  }

  fs::path dir_;
};

TEST_F(OptionsTest, DefaultsAreTheDocumentedOnes) {
  auto o = Parse({"--gpus", "none"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->listen, "127.0.0.1:50051");
  EXPECT_EQ(o->metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(o->data_dir, "./peftd-data");
  EXPECT_EQ(o->model_root, "./peftd-data/models");
  EXPECT_EQ(o->local_workers, 1);
  EXPECT_EQ(o->heartbeat_interval, absl::Seconds(2));
  EXPECT_EQ(o->lease_timeout, absl::Seconds(6));
  EXPECT_EQ(o->restart_grace, absl::Seconds(30));
  EXPECT_EQ(o->max_dataset_bytes, int64_t{1} << 30);
  EXPECT_EQ(o->max_message_bytes, int64_t{16} << 20);
  EXPECT_EQ(o->log_level, "info");
  EXPECT_TRUE(o->auth_token.empty());
  EXPECT_TRUE(o->exit_message.empty());
  // Next to the running executable (this test binary here).
  EXPECT_EQ(o->worker_binary, ExecutableDir() + "/peftd-worker");
  EXPECT_FALSE(ExecutableDir().empty());
}

TEST(DefaultWorkerBinary, NextToPeftdThenTheBuildTreeLayout) {
  const fs::path root =
      fs::temp_directory_path() / ("peftd_worker_binary_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "server");
  fs::create_directories(root / "worker");
  const std::string server = (root / "server").string();
  EXPECT_EQ(DefaultWorkerBinary(server), server + "/peftd-worker") << "none exists: the first";
  auto make_exe = [](const fs::path& p) {
    std::ofstream(p) << "#!/bin/sh\n";
    fs::permissions(p, fs::perms::owner_all);
  };
  make_exe(root / "worker" / "peftd-worker");
  EXPECT_EQ(DefaultWorkerBinary(server), (root / "worker" / "peftd-worker").string());
  make_exe(root / "server" / "peftd-worker");
  EXPECT_EQ(DefaultWorkerBinary(server), server + "/peftd-worker");
  EXPECT_EQ(DefaultWorkerBinary(""), "peftd-worker");
  fs::remove_all(root);
}

TEST_F(OptionsTest, HelpListsEveryFlagWithItsDefault) {
  auto o = Parse({"--help"});
  ASSERT_TRUE(o.ok()) << o.status();
  const std::string& help = o->exit_message;
  for (const char* flag : {"--listen",
                           "--metrics-listen",
                           "--port-file",
                           "--data-dir",
                           "--model-root",
                           "--examples-dir",
                           "--max-dataset-bytes",
                           "--max-message-bytes",
                           "--local-workers",
                           "--worker-binary",
                           "--worker-arg",
                           "--gpus",
                           "--heartbeat-interval",
                           "--lease-timeout",
                           "--restart-grace",
                           "--shutdown-grace",
                           "--auth-token",
                           "--auth-token-file",
                           "--worker-token",
                           "--worker-token-file",
                           "--insecure",
                           "--blob-sweep-interval",
                           "--blob-sweep-grace",
                           "--tls-cert",
                           "--tls-key",
                           "--tls-client-ca",
                           "--log-level",
                           "--version"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
  for (const char* value : {"127.0.0.1:50051", "127.0.0.1:9464", "./peftd-data", "1GiB", "16MiB",
                            "2s", "6s", "30s", "info", "auto", "PEFTD_AUTH_TOKEN"}) {
    EXPECT_THAT(help, HasSubstr(value));
  }
}

// --port-file holds "grpc=... metrics=..." (what main writes), not the whole first stdout line
// ("peftd: listening grpc=..."), which the help used to claim.
TEST_F(OptionsTest, PortFileHelpSaysWhatTheFileHolds) {
  auto o = Parse({"--help"});
  ASSERT_TRUE(o.ok()) << o.status();
  const std::string& help = o->exit_message;
  EXPECT_THAT(help, Not(HasSubstr("(the first stdout line)")));
  EXPECT_THAT(help, HasSubstr("metrics=off"));
}

TEST_F(OptionsTest, VersionIsPrinted) {
  auto o = Parse({"--version"});
  ASSERT_TRUE(o.ok());
  EXPECT_THAT(o->exit_message, HasSubstr("peftd "));
}

TEST_F(OptionsTest, FlagsOverrideDefaultsAndDeriveTheModelRoot) {
  auto o = Parse({"--listen",
                  "127.0.0.1:0",
                  "--metrics-listen",
                  "off",
                  "--data-dir",
                  "/srv/p",
                  "--local-workers",
                  "3",
                  "--worker-binary",
                  "/opt/w",
                  "--worker-arg=--threads=2",
                  "--worker-arg",
                  "-v",
                  "--gpus",
                  "0, 2",
                  "--heartbeat-interval",
                  "500ms",
                  "--lease-timeout",
                  "2s",
                  "--max-dataset-bytes",
                  "10MiB",
                  "--log-level",
                  "DEBUG",
                  "--port-file",
                  "/tmp/p"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->listen, "127.0.0.1:0");
  EXPECT_EQ(o->metrics_listen, "");
  EXPECT_EQ(o->model_root, "/srv/p/models");
  EXPECT_EQ(o->local_workers, 3);
  EXPECT_EQ(o->worker_binary, "/opt/w");
  EXPECT_EQ(o->worker_args, (std::vector<std::string>{"--threads=2", "-v"}));
  EXPECT_EQ(o->gpus, (std::vector<std::string>{"0", "2"}));
  EXPECT_FALSE(o->hide_gpus);
  EXPECT_EQ(o->heartbeat_interval, absl::Milliseconds(500));
  EXPECT_EQ(o->max_dataset_bytes, 10 << 20);
  EXPECT_EQ(o->log_level, "debug");
  EXPECT_EQ(o->port_file, "/tmp/p");

  auto explicit_root = Parse({"--data-dir", "/a", "--model-root", "/b"});
  ASSERT_TRUE(explicit_root.ok());
  EXPECT_EQ(explicit_root->model_root, "/b");
}

TEST_F(OptionsTest, GpusNoneHidesEveryGpu) {
  auto o = Parse({"--gpus", "none"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->hide_gpus);
  EXPECT_TRUE(o->gpus.empty());
}

TEST_F(OptionsTest, EnvironmentIsAFallbackAndFlagsWin) {
  setenv("PEFTD_LISTEN", "127.0.0.1:7000", 1);
  setenv("PEFTD_AUTH_TOKEN", "from-env", 1);
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->listen, "127.0.0.1:7000");
  EXPECT_EQ(o->auth_token, "from-env");
  auto f = Parse({"--listen", "127.0.0.1:7001"});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->listen, "127.0.0.1:7001");
}

TEST_F(OptionsTest, TokenFileWinsOverTheTokenFlag) {
  const std::string path = WriteFile("token", "  s3cret\n", 0600);
  auto o = Parse({"--auth-token", "flag-token", "--auth-token-file", path});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->auth_token, "s3cret");
  EXPECT_EQ(o->auth_token_file, path);
}

TEST_F(OptionsTest, WorldReadableTokenFileIsRefusedWithTheFix) {
  const std::string path = WriteFile("token", "s3cret\n", 0644);
  auto o = Parse({"--auth-token-file", path});
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("--auth-token-file"));
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("chmod 600"));
}

TEST_F(OptionsTest, EmptyOrMissingTokenFileIsRefused) {
  ExpectRefused({"--auth-token-file", WriteFile("empty", "\n", 0600)}, "is empty");
  ExpectRefused({"--auth-token-file", (dir_ / "nope").string()}, "--auth-token-file");
  ExpectRefused({"--auth-token-file", WriteFile("two", "a\nb\n", 0600)}, "more than one line");
}

TEST_F(OptionsTest, InvalidValuesNameTheFlag) {
  ExpectRefused({"--local-workers", "-1"}, "--local-workers");
  ExpectRefused({"--local-workers", "many"}, "--local-workers");
  ExpectRefused({"--listen", "localhost"}, "--listen");
  ExpectRefused({"--listen", "127.0.0.1:70000"}, "--listen");
  ExpectRefused({"--metrics-listen", "9464x"}, "--metrics-listen");
  ExpectRefused({"--heartbeat-interval", "soon"}, "--heartbeat-interval");
  ExpectRefused({"--heartbeat-interval", "0s"}, "--heartbeat-interval");
  ExpectRefused({"--lease-timeout", "1s"}, "--lease-timeout");
  ExpectRefused({"--restart-grace", "-3s"}, "--restart-grace");
  ExpectRefused({"--max-message-bytes", "1KiB"}, "--max-message-bytes");
  // Below the 1 MiB chunks that blobs travel in (was accepted down to 64KiB).
  ExpectRefused({"--max-message-bytes", "1MiB"}, "--max-message-bytes");
  ExpectRefused({"--blob-sweep-grace", "0s"}, "--blob-sweep-grace");
  ExpectRefused({"--max-dataset-bytes", "lots"}, "--max-dataset-bytes");
  ExpectRefused({"--max-dataset-bytes", "0"}, "--max-dataset-bytes");
  ExpectRefused({"--log-level", "loud"}, "--log-level");
  ExpectRefused({"--tls-cert", "/c.pem"}, "--tls-key");
  ExpectRefused({"--tls-key", "/k.pem"}, "--tls-cert");
  ExpectRefused({"--tls-client-ca", "/ca.pem"}, "--tls-client-ca");
  ExpectRefused({"--gpus", "0,,1"}, "--gpus");
  ExpectRefused({"--examples-dir", (dir_ / "none").string()}, "--examples-dir");
  ExpectRefused({"--no-such-flag"}, "--no-such-flag");
  ExpectRefused({"--auth-token", "has space"}, "--auth-token");
}

TEST_F(OptionsTest, ExplicitExamplesDirIsKept) {
  auto o = Parse({"--examples-dir", dir_.string()});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->examples_dir, dir_.string());
}

TEST(ParseByteSize, UnitsAreBinary) {
  EXPECT_EQ(*ParseByteSize("1000"), 1000);
  EXPECT_EQ(*ParseByteSize("512KiB"), 512 << 10);
  EXPECT_EQ(*ParseByteSize("16MiB"), 16 << 20);
  EXPECT_EQ(*ParseByteSize("16mb"), 16 << 20);
  EXPECT_EQ(*ParseByteSize("1G"), int64_t{1} << 30);
  EXPECT_EQ(*ParseByteSize(" 2 GiB "), int64_t{2} << 30);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("GiB").ok());
  EXPECT_FALSE(ParseByteSize("1.5GiB").ok());
  EXPECT_FALSE(ParseByteSize("3 parsecs").ok());
  EXPECT_FALSE(ParseByteSize("99999999999TiB").ok());
}

TEST_F(OptionsTest, UsersAndWorkersGetSeparateTokens) {
  auto none = Parse({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->worker_token.empty());
  EXPECT_FALSE(none->worker_token_generated);

  // A user token alone: the local workers get a random token of their own.
  auto generated = Parse({"--auth-token", "user"});
  ASSERT_TRUE(generated.ok()) << generated.status();
  EXPECT_TRUE(generated->worker_token_generated);
  EXPECT_EQ(generated->worker_token.size(), 64u);
  EXPECT_NE(generated->worker_token, "user");
  EXPECT_NE(Parse({"--auth-token", "user"})->worker_token, generated->worker_token);

  const std::string file = WriteFile("worker.token", "w-secret\n", 0600);
  auto from_file = Parse({"--auth-token", "user", "--worker-token-file", file});
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->worker_token, "w-secret");
  EXPECT_FALSE(from_file->worker_token_generated);

  ExpectRefused({"--auth-token", "same", "--worker-token", "same"}, "--worker-token");
  const std::string readable = WriteFile("open.token", "w", 0644);
  ExpectRefused({"--worker-token-file", readable}, "--worker-token-file");
}

TEST_F(OptionsTest, ListeningBeyondLoopbackNeedsAUserTokenOrInsecure) {
  ExpectRefused({"--listen", "0.0.0.0:50051"}, "--listen");
  auto refused = Parse({"--listen", "0.0.0.0:50051"});
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("--insecure"));
  auto insecure = Parse({"--listen", "0.0.0.0:50051", "--insecure"});
  ASSERT_TRUE(insecure.ok()) << insecure.status();
  EXPECT_THAT(InsecureListenWarning(*insecure), HasSubstr("no user token"));
  EXPECT_THAT(InsecureListenWarning(*insecure), HasSubstr("no TLS"));
  auto token = Parse({"--listen", "[::]:50051", "--auth-token", "t"});
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_THAT(InsecureListenWarning(*token), HasSubstr("no TLS"));
  EXPECT_THAT(InsecureListenWarning(*token), ::testing::Not(HasSubstr("no user token")));
  auto loopback = Parse({"--listen", "127.0.0.1:0"});
  ASSERT_TRUE(loopback.ok());
  EXPECT_EQ(InsecureListenWarning(*loopback), "");
}

TEST(IsLoopbackAddress, OnlyThisMachine) {
  for (const char* yes : {"127.0.0.1:1", "127.1.2.3:0", "localhost:5", "[::1]:50051",
                          "unix:/tmp/peftd.sock", "LOCALHOST:1"}) {
    EXPECT_TRUE(IsLoopbackAddress(yes)) << yes;
  }
  for (const char* no :
       {"0.0.0.0:1", "[::]:1", "10.0.0.1:50051", "peftd:50051", ":50051", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(no)) << no;
  }
}

}  // namespace
}  // namespace peftd::server

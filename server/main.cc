// peftd: the fine-tuning job server. Flags are in server/options.h. The first line on stdout is
// machine-readable: "peftd: listening grpc=HOST:PORT metrics=HOST:PORT" (metrics=off with
// --metrics-listen off; also written to --port-file when given), so that tests and scripts can
// start it on port 0.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "server/options.h"
#include "server/peftd_server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

bool WritePortFile(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content;
    if (!out) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);  // readers never see a half-written file
  return !ec;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals in every thread (gRPC's included); the main thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  umask(077);  // the job store and blobs are the users' data: owner-only, like the data dir

  // Logs go to stderr: stdout's first line is the machine-readable "listening" line.
  spdlog::set_default_logger(spdlog::stderr_color_mt("peftd"));
  auto options = peftd::server::ParseServerOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "peftd: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (!options->exit_message.empty()) {  // --help, --version
    std::printf("%s", options->exit_message.c_str());
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(options->log_level));
  auto server = peftd::server::PeftdServer::Start(*options);
  if (!server.ok()) {
    std::fprintf(stderr, "peftd: %s\n", server.status().ToString().c_str());
    return 1;
  }
  const std::string line = absl::StrCat(
      "grpc=", (*server)->grpc_address(),
      " metrics=", (*server)->metrics_address().empty() ? "off" : (*server)->metrics_address());
  std::printf("peftd: listening %s\n", line.c_str());
  std::fflush(stdout);
  if (!options->port_file.empty() && !WritePortFile(options->port_file, absl::StrCat(line, "\n"))) {
    std::fprintf(stderr, "peftd: --port-file: cannot write %s\n", options->port_file.c_str());
  }

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("{} received; shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->Stop();
  spdlog::info("stopped");
  return 0;
}

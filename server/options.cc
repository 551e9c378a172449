#include "server/options.h"

#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "server/gpu_detect.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

#ifndef PEFTD_VERSION
#define PEFTD_VERSION "unknown"
#endif
constexpr char kVersion[] = "peftd " PEFTD_VERSION;
// Datasets, checkpoints and adapters travel in 1 MiB chunks (server/blob_streams.h, the worker,
// peftctl); a limit below 2 MiB would refuse the chunks themselves.
constexpr int64_t kMinMessageBytes = int64_t{2} << 20;
// gRPC's message size limits are ints.
constexpr int64_t kMaxMessageBytes = INT_MAX;
constexpr int kMaxLocalWorkers = 256;

absl::Status FlagError(absl::string_view flag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", what));
}

absl::StatusOr<absl::Duration> ParsePositiveDuration(absl::string_view flag,
                                                     const std::string& text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d)) {
    return FlagError(flag,
                     absl::StrCat("\"", text, "\" is not a duration (write e.g. 2s, 500ms, 1m)"));
  }
  if (d <= absl::ZeroDuration()) {
    return FlagError(flag, absl::StrCat("must be positive, got ", text));
  }
  return d;
}

// "host:port", "[v6]:port" or "unix:path"; port 0 means any free port.
absl::Status CheckAddress(absl::string_view flag, const std::string& addr) {
  if (absl::StartsWith(addr, "unix:") && addr.size() > 5) return absl::OkStatus();
  const size_t colon = addr.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(addr).substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return FlagError(flag, absl::StrCat("\"", addr,
                                        "\" is not HOST:PORT (e.g. 127.0.0.1:50051, [::1]:0, "
                                        "0.0.0.0:50051 to listen on every interface)"));
  }
  return absl::OkStatus();
}

// 32 random bytes as hex (OpenSSL's CSPRNG; it aborts rather than return weak bytes).
std::string RandomToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes % (int64_t{1} << 30) == 0) return absl::StrCat(bytes >> 30, "GiB");
  if (bytes % (int64_t{1} << 20) == 0) return absl::StrCat(bytes >> 20, "MiB");
  if (bytes % (int64_t{1} << 10) == 0) return absl::StrCat(bytes >> 10, "KiB");
  return absl::StrCat(bytes);
}

std::string DefaultExamplesDir() {
  std::vector<std::string> candidates;
  const std::string exe_dir = ExecutableDir();
  if (!exe_dir.empty()) {
    candidates.push_back(exe_dir + "/../share/peftd/examples");  // installed layout
    candidates.push_back(exe_dir + "/../../examples");           // build/server/peftd in a checkout
    candidates.push_back(exe_dir + "/../examples");              // build/peftd in a checkout
  }
  candidates.push_back("./examples");
  for (const auto& c : candidates) {
    std::error_code ec;
    if (fs::is_directory(c, ec)) return fs::weakly_canonical(c, ec).string();
  }
  return "";
}

}  // namespace

std::string DefaultWorkerBinary(const std::string& exe_dir) {
  if (exe_dir.empty()) return "peftd-worker";
  // Installed side by side (bin/peftd, bin/peftd-worker), or a build tree (server/peftd,
  // worker/peftd-worker).
  for (const std::string& candidate :
       {exe_dir + "/peftd-worker", exe_dir + "/../worker/peftd-worker"}) {
    if (::access(candidate.c_str(), X_OK) == 0) {
      std::error_code ec;
      const fs::path canonical = fs::weakly_canonical(candidate, ec);
      return ec ? candidate : canonical.string();
    }
  }
  return exe_dir + "/peftd-worker";  // the error names where it was expected
}

std::string ExecutableDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  return exe.parent_path().string();
}

absl::StatusOr<int64_t> ParseByteSize(absl::string_view text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  size_t digits = 0;
  while (digits < t.size() && std::isdigit(static_cast<unsigned char>(t[digits]))) ++digits;
  int64_t value = 0;
  if (digits == 0 || !absl::SimpleAtoi(t.substr(0, digits), &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\" is not a size (write e.g. 1GiB, 16MiB, 512KiB or a number of bytes)"));
  }
  const std::string unit(absl::StripAsciiWhitespace(t.substr(digits)));
  int shift = 0;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    shift = 10;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    shift = 20;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    shift = 30;
  } else if (unit == "t" || unit == "tb" || unit == "tib") {
    shift = 40;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\": unknown unit \"", unit, "\" (use KiB, MiB, GiB or TiB)"));
  }
  // Units are binary whatever the spelling: a limit is about memory and disk, not marketing.
  if (value > (INT64_MAX >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is too large"));
  }
  return value << shift;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path, absl::string_view flag) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": cannot read \"", path, "\": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": \"", path, "\" is not a regular file"));
  }
  if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        flag, ": \"", path,
        "\" is readable or writable by every user; restrict it with `chmod 600 ", path, "`"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": cannot open \"", path, "\": ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(ss.str()));
  if (token.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": \"", path, "\" is empty; write the token into it"));
  }
  if (token.find_first_of("\r\n") != std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": \"", path, "\" holds more than one line; keep only the token"));
  }
  return token;
}

bool IsLoopbackAddress(const std::string& listen) {
  if (absl::StartsWith(listen, "unix:")) return true;
  const size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon == std::string::npos ? listen.size() : colon);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]"))
    host = host.substr(1, host.size() - 2);
  host = absl::AsciiStrToLower(host);
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

std::string InsecureListenWarning(const ServerOptions& o) {
  if (IsLoopbackAddress(o.listen)) return "";
  std::vector<std::string> missing;
  if (o.auth_token.empty()) {
    missing.push_back(
        "no user token (--auth-token-file): anyone who reaches the port can submit, read and "
        "cancel jobs");
  }
  if (o.tls_cert.empty()) {
    missing.push_back(
        "no TLS (--tls-cert/--tls-key): tokens, datasets and adapters travel in "
        "clear text");
  }
  if (missing.empty()) return "";
  return absl::StrCat("--listen ", o.listen, " accepts connections from other machines with ",
                      absl::StrJoin(missing, "; and "));
}

absl::StatusOr<ServerOptions> ParseServerOptions(int argc, char** argv) {
  ServerOptions o;
  const ServerOptions defaults;
  CLI::App app{
      "peftd: fine-tuning job server (gRPC JobService + WorkerService, Prometheus metrics).\n"
      "Every flag can also come from the environment variable shown next to it."};
  app.option_defaults()->always_capture_default();
  app.set_version_flag("--version", kVersion);

  std::string heartbeat = absl::FormatDuration(defaults.heartbeat_interval);
  std::string lease = absl::FormatDuration(defaults.lease_timeout);
  std::string restart_grace = absl::FormatDuration(defaults.restart_grace);
  std::string rendezvous_timeout = absl::FormatDuration(defaults.rendezvous_timeout);
  std::string shutdown_grace = absl::FormatDuration(defaults.shutdown_grace);
  std::string max_dataset = FormatBytes(defaults.max_dataset_bytes);
  std::string max_message = FormatBytes(defaults.max_message_bytes);
  std::string gpus = "auto";

  app.add_option("--listen", o.listen, "gRPC address (HOST:PORT; port 0 picks a free port)")
      ->envname("PEFTD_LISTEN")
      ->group("Network");
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Prometheus /metrics address (HOST:PORT; \"off\" disables)")
      ->envname("PEFTD_METRICS_LISTEN")
      ->group("Network");
  app.add_option(
         "--port-file", o.port_file,
         "once serving, write one line \"grpc=HOST:PORT metrics=HOST:PORT\" here (metrics=off "
         "when disabled): the ports port 0 picked, as on the first stdout line after \"peftd: "
         "listening \"")
      ->group("Network");

  app.add_option("--data-dir", o.data_dir, "database, blobs and worker caches (created 0700)")
      ->envname("PEFTD_DATA_DIR")
      ->group("Storage");
  app.add_option("--model-root", o.model_root,
                 "folder of base models (JobSpec.base_model resolves inside it) "
                 "[default: <data-dir>/models]")
      ->envname("PEFTD_MODEL_ROOT")
      ->group("Storage");
  app.add_option("--examples-dir", o.examples_dir,
                 "example datasets offered at startup [default: share/peftd/examples or "
                 "./examples when present]")
      ->envname("PEFTD_EXAMPLES_DIR")
      ->group("Storage");
  app.add_option("--max-dataset-bytes", max_dataset, "largest dataset UploadDataset accepts")
      ->group("Limits");
  app.add_option("--max-message-bytes", max_message, "largest gRPC message, both directions")
      ->group("Limits");
  app.add_option("--max-sweep-children", o.max_sweep_children,
                 "most child jobs one sweep may have (docs/sweeps.md)")
      ->group("Limits");

  app.add_option("--local-workers", o.local_workers,
                 "peftd-worker children to spawn and supervise (0 = remote workers only)")
      ->envname("PEFTD_LOCAL_WORKERS")
      ->group("Workers");
  app.add_option("--worker-binary", o.worker_binary,
                 "worker executable for --local-workers and the built-in model "
                 "[default: peftd-worker next to peftd, or ../worker/peftd-worker in a build "
                 "tree]")
      ->envname("PEFTD_WORKER_BINARY")
      ->group("Workers");
  app.add_option("--worker-arg", o.worker_args,
                 "extra argument for every local worker, repeatable (--worker-arg=--slots=2)")
      ->expected(1)
      ->take_all()
      ->group("Workers");
  app.add_option("--gpus", gpus,
                 "GPUs handed round-robin to local workers as CUDA_VISIBLE_DEVICES: auto "
                 "(detect), none (hide every GPU), or a list like 0,1 or GPU-<uuid>")
      ->envname("PEFTD_GPUS")
      ->group("Workers");
  app.add_option("--heartbeat-interval", heartbeat, "how often workers heartbeat")
      ->group("Scheduling");
  app.add_option("--lease-timeout", lease,
                 "a worker silent this long loses its jobs (requeued with attempt + 1)")
      ->group("Scheduling");
  app.add_option("--rendezvous-timeout", rendezvous_timeout,
                 "a gang whose ranks have not all met this long after rank 0 opened its "
                 "rendezvous is requeued; also bounds every collective")
      ->group("Scheduling");
  app.add_option("--restart-grace", restart_grace,
                 "after a server restart, time for workers to re-claim running jobs")
      ->group("Scheduling");
  app.add_option("--shutdown-grace", shutdown_grace,
                 "on shutdown, time for RPCs and local workers to end before SIGKILL")
      ->group("Scheduling");

  app.add_option("--auth-token", o.auth_token,
                 "require `authorization: Bearer <token>` on every RPC (prefer the file)")
      ->envname("PEFTD_AUTH_TOKEN")
      ->group("Security");
  app.add_option("--auth-token-file", o.auth_token_file,
                 "file holding the token (wins over --auth-token; must not be world-readable)")
      ->envname("PEFTD_AUTH_TOKEN_FILE")
      ->group("Security");
  app.add_option("--worker-token", o.worker_token,
                 "require this bearer token on WorkerService calls (prefer the file) [default: "
                 "with a user token, a random one handed to the local workers only]")
      ->envname("PEFTD_WORKER_TOKEN")
      ->group("Security");
  app.add_option("--worker-token-file", o.worker_token_file,
                 "file holding the workers' token (wins over --worker-token; must not be "
                 "world-readable); remote workers pass the same file with --token-file")
      ->envname("PEFTD_WORKER_TOKEN_FILE")
      ->group("Security");
  app.add_flag("--insecure", o.insecure,
               "allow --listen beyond loopback without a user token (a warning is logged at "
               "every start)")
      ->envname("PEFTD_INSECURE")
      ->group("Security");
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate chain: serve TLS")
      ->envname("PEFTD_TLS_CERT")
      ->group("Security");
  app.add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert")
      ->envname("PEFTD_TLS_KEY")
      ->group("Security");
  app.add_option("--tls-client-ca", o.tls_client_ca,
                 "PEM CA bundle: require client certificates signed by it (mutual TLS)")
      ->envname("PEFTD_TLS_CLIENT_CA")
      ->group("Security");

  std::string sweep_interval = absl::FormatDuration(defaults.blob_sweep_interval);
  std::string sweep_grace = absl::FormatDuration(defaults.blob_sweep_grace);
  app.add_option("--blob-sweep-interval", sweep_interval,
                 "how often blobs no record refers to (old checkpoints, discarded uploads) are "
                 "deleted")
      ->group("Storage");
  app.add_option("--blob-sweep-grace", sweep_grace,
                 "how long an unreferenced blob is kept before the sweep deletes it")
      ->group("Storage");

  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error, critical or off")
      ->envname("PEFTD_LOG_LEVEL")
      ->group("Logging");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    o.exit_message = app.help();
    return o;
  } catch (const CLI::CallForAllHelp&) {
    o.exit_message = app.help("", CLI::AppFormatMode::All);
    return o;
  } catch (const CLI::CallForVersion&) {
    o.exit_message = std::string(kVersion) + "\n";
    return o;
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(absl::StrCat(e.what(), " (see peftd --help)"));
  }

  // --- network ---
  RETURN_IF_ERROR(CheckAddress("listen", o.listen));
  if (o.metrics_listen == "off" || o.metrics_listen == "none") o.metrics_listen.clear();
  if (!o.metrics_listen.empty()) {
    if (absl::StartsWith(o.metrics_listen, "unix:")) {
      return FlagError("metrics-listen",
                       "must be HOST:PORT (the HTTP exporter has no unix sockets)");
    }
    RETURN_IF_ERROR(CheckAddress("metrics-listen", o.metrics_listen));
  }

  // --- storage ---
  if (o.data_dir.empty()) return FlagError("data-dir", "must not be empty");
  if (o.model_root.empty()) o.model_root = (fs::path(o.data_dir) / "models").string();
  if (o.examples_dir.empty()) {
    o.examples_dir = DefaultExamplesDir();
  } else {
    std::error_code ec;
    if (!fs::is_directory(o.examples_dir, ec)) {
      return FlagError("examples-dir", absl::StrCat("\"", o.examples_dir, "\" is not a folder"));
    }
  }

  // --- limits ---
  auto dataset_bytes = ParseByteSize(max_dataset);
  if (!dataset_bytes.ok()) return FlagError("max-dataset-bytes", dataset_bytes.status().message());
  if (*dataset_bytes <= 0) return FlagError("max-dataset-bytes", "must be positive");
  if (o.max_sweep_children < 1 || o.max_sweep_children > 10000) {
    return FlagError("max-sweep-children", "must be in [1, 10000]");
  }
  o.max_dataset_bytes = *dataset_bytes;
  auto message_bytes = ParseByteSize(max_message);
  if (!message_bytes.ok()) return FlagError("max-message-bytes", message_bytes.status().message());
  if (*message_bytes < kMinMessageBytes || *message_bytes > kMaxMessageBytes) {
    return FlagError("max-message-bytes",
                     absl::StrCat("must be between 2MiB and 2GiB (blobs travel in 1MiB chunks), "
                                  "got ",
                                  max_message));
  }
  o.max_message_bytes = *message_bytes;

  // --- workers ---
  if (o.local_workers < 0 || o.local_workers > kMaxLocalWorkers) {
    return FlagError("local-workers", absl::StrCat("must be between 0 and ", kMaxLocalWorkers,
                                                   ", got ", o.local_workers));
  }
  if (o.worker_binary.empty()) o.worker_binary = DefaultWorkerBinary(ExecutableDir());
  const std::string gpus_lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(gpus));
  if (gpus_lower == "none") {
    o.hide_gpus = true;
  } else if (gpus_lower == "auto" || gpus_lower.empty()) {
    o.gpus = DetectGpus();
  } else {
    for (absl::string_view g : absl::StrSplit(gpus, ',')) {
      g = absl::StripAsciiWhitespace(g);
      if (g.empty()) return FlagError("gpus", absl::StrCat("empty entry in \"", gpus, "\""));
      o.gpus.emplace_back(g);
    }
  }

  // --- scheduling ---
  ASSIGN_OR_RETURN(o.heartbeat_interval, ParsePositiveDuration("heartbeat-interval", heartbeat));
  ASSIGN_OR_RETURN(o.lease_timeout, ParsePositiveDuration("lease-timeout", lease));
  ASSIGN_OR_RETURN(o.restart_grace, ParsePositiveDuration("restart-grace", restart_grace));
  ASSIGN_OR_RETURN(o.rendezvous_timeout,
                   ParsePositiveDuration("rendezvous-timeout", rendezvous_timeout));
  ASSIGN_OR_RETURN(o.shutdown_grace, ParsePositiveDuration("shutdown-grace", shutdown_grace));
  ASSIGN_OR_RETURN(o.blob_sweep_interval,
                   ParsePositiveDuration("blob-sweep-interval", sweep_interval));
  ASSIGN_OR_RETURN(o.blob_sweep_grace, ParsePositiveDuration("blob-sweep-grace", sweep_grace));
  if (o.lease_timeout <= o.heartbeat_interval) {
    return FlagError("lease-timeout",
                     absl::StrCat(lease, " must be longer than --heartbeat-interval ", heartbeat,
                                  " (about 3 heartbeats is usual)"));
  }

  // --- security ---
  if (!o.auth_token_file.empty()) {
    ASSIGN_OR_RETURN(o.auth_token, ReadTokenFile(o.auth_token_file));
  } else if (o.auth_token.find_first_of(" \t\r\n") != std::string::npos) {
    return FlagError("auth-token", "must not contain whitespace");
  }
  if (!o.worker_token_file.empty()) {
    ASSIGN_OR_RETURN(o.worker_token, ReadTokenFile(o.worker_token_file, "--worker-token-file"));
  } else if (o.worker_token.find_first_of(" \t\r\n") != std::string::npos) {
    return FlagError("worker-token", "must not contain whitespace");
  }
  if (!o.worker_token.empty() && o.worker_token == o.auth_token) {
    return FlagError("worker-token",
                     "must differ from the user token (--auth-token): a user holding it could "
                     "take leases, upload adapters and complete jobs");
  }
  if (o.worker_token.empty() && !o.auth_token.empty()) {
    o.worker_token = RandomToken();
    o.worker_token_generated = true;
  }
  if (!IsLoopbackAddress(o.listen) && o.auth_token.empty() && !o.insecure) {
    return FlagError(
        "listen", absl::StrCat(o.listen,
                               " accepts connections from other machines, and this server has no "
                               "user token: anyone who reaches the port could submit and cancel "
                               "jobs and read adapters. Give it --auth-token-file (and "
                               "--tls-cert/--tls-key), or pass --insecure to accept that (a "
                               "warning is logged at every start)"));
  }
  if (!o.tls_cert.empty() && o.tls_key.empty()) {
    return FlagError("tls-key", "is required with --tls-cert (the certificate's private key)");
  }
  if (o.tls_cert.empty() && !o.tls_key.empty()) {
    return FlagError("tls-cert", "is required with --tls-key");
  }
  if (o.tls_cert.empty() && !o.tls_client_ca.empty()) {
    return FlagError("tls-client-ca",
                     "needs --tls-cert and --tls-key (client certificates are "
                     "only checked over TLS)");
  }

  // --- logging ---
  static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  o.log_level = absl::AsciiStrToLower(o.log_level);
  if (o.log_level == "warning") o.log_level = "warn";
  if (kLevels.count(o.log_level) == 0) {
    return FlagError("log-level", absl::StrCat("\"", o.log_level, "\" is not one of ",
                                               absl::StrJoin(kLevels, ", ")));
  }
  return o;
}

}  // namespace peftd::server

// Starts the real `peftd` binary for integration tests: on 127.0.0.1 port 0, waits for the
// machine-readable first line and for grpc.health.v1 to answer SERVING; kill -9 or SIGTERM it;
// start it again on the same data dir. Header-only so every integration test can include it.
#ifndef PEFTD_TESTS_INTEGRATION_PEFTD_PROCESS_H_
#define PEFTD_TESTS_INTEGRATION_PEFTD_PROCESS_H_

#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace peftd::testing {

class PeftdProcess {
 public:
  // `args` come after the defaults; a default flag they set too is dropped.
  explicit PeftdProcess(std::string data_dir, std::vector<std::string> args = {})
      : data_dir_(std::move(data_dir)), args_(std::move(args)) {}
  ~PeftdProcess() { Kill(); }

  // Starts peftd and returns once it is healthy; false (with `error`) otherwise.
  bool Start(std::string* error) {
    int out[2];
    if (pipe(out) != 0) return Fail(error, "pipe");
    std::vector<std::string> argv = {PEFTD_BINARY_DIR "/server/peftd"};
    // A default flag that `args` sets too is left out: peftd refuses a flag given twice.
    for (const std::string& d :
         {std::string("--listen=127.0.0.1:0"), std::string("--metrics-listen=127.0.0.1:0"),
          "--data-dir=" + data_dir_, std::string("--local-workers=0")}) {
      const std::string name = d.substr(0, d.find('='));
      bool overridden = false;
      for (const auto& a : args_)
        overridden = overridden || a == name || a.rfind(name + "=", 0) == 0;
      if (!overridden) argv.push_back(d);
    }
    argv.insert(argv.end(), args_.begin(), args_.end());
    pid_ = fork();
    if (pid_ < 0) return Fail(error, "fork");
    if (pid_ == 0) {
      if (!log_file_.empty()) {
        const int log = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (log >= 0) dup2(log, STDERR_FILENO);
      }
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    char buf[512] = {0};
    const bool got_line = std::fgets(buf, sizeof(buf), f) != nullptr;
    std::fclose(f);  // later output goes nowhere (peftd writes little to stdout)
    if (!got_line) return Fail(error, "peftd exited before printing its ports");
    first_line_ = buf;
    const std::string key = "grpc=";
    const size_t at = first_line_.find(key);
    if (first_line_.rfind("peftd: listening ", 0) != 0 || at == std::string::npos) {
      return Fail(error, "unexpected first line: " + first_line_);
    }
    address_ = first_line_.substr(at + key.size(), first_line_.find(' ', at) - at - key.size());
    const size_t m = first_line_.find("metrics=");
    if (m != std::string::npos) {
      metrics_address_ = first_line_.substr(m + 8);
      while (!metrics_address_.empty() && std::isspace(metrics_address_.back())) {
        metrics_address_.pop_back();
      }
    }
    if (!WaitHealthy()) return Fail(error, "peftd at " + address_ + " never became healthy");
    return true;
  }

  // kill -9: no cleanup at all, as a crash.
  void Kill() { Signal(SIGKILL); }
  // SIGTERM and wait; returns the exit status (or -1 when it did not exit within 20 s).
  int Terminate() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 2000; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Kill();
    return -1;
  }

  // Options for the next Start(): the CA the server certificate is checked with (TLS on), and a
  // file peftd's stderr (its log and its local workers') is appended to.
  void set_tls_root(std::string pem) { tls_root_pem_ = std::move(pem); }
  void set_log_file(std::string path) { log_file_ = std::move(path); }
  pid_t pid() const { return pid_; }

  const std::string& address() const { return address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  const std::string& first_line() const { return first_line_; }

  std::shared_ptr<grpc::Channel> Channel() const {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // A fresh channel per call site: channels to one address must not share a subchannel that
    // a killed server left in backoff.
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    if (tls_root_pem_.empty()) {
      return grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = tls_root_pem_;
    return grpc::CreateCustomChannel(address_, grpc::SslCredentials(ssl), args);
  }

 private:
  bool Fail(std::string* error, const std::string& what) {
    *error = what;
    Kill();
    return false;
  }

  void Signal(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // grpc.health.v1.Health/Check with an empty request (service ""): SERVING is bytes 08 01.
  bool WaitHealthy() {
    auto channel = Channel();
    grpc::GenericStub stub(channel);
    for (int i = 0; i < 200; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      grpc::ByteBuffer request, response;
      grpc::Slice empty("");
      request = grpc::ByteBuffer(&empty, 1);
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      grpc::Status status;
      stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                     [&](grpc::Status s) {
                       std::lock_guard<std::mutex> lock(mu);
                       status = s;
                       done = true;
                       cv.notify_all();
                     });
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return done; });
      }
      if (status.ok()) {
        std::vector<grpc::Slice> slices;
        response.Dump(&slices);
        std::string bytes;
        for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        if (bytes == std::string("\x08\x01", 2)) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::string data_dir_;
  std::vector<std::string> args_;
  pid_t pid_ = -1;
  std::string tls_root_pem_, log_file_;
  std::string first_line_, address_, metrics_address_;
};

}  // namespace peftd::testing

#endif  // PEFTD_TESTS_INTEGRATION_PEFTD_PROCESS_H_

// peftctl datasets inspect: how a dataset tokenizes under a model, before a long run. peftctl
// holds no tokenizer (it depends on proto/ and common/ only), so this runs the worker's
// `peftd-worker tokenize` on the local file and model folder and relays its report.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"

namespace peftd::cli {
namespace {

namespace fs = std::filesystem;

struct InspectArgs {
  std::string path;
  std::string model_dir;
  std::string worker_binary;  // "" = next to peftctl, in its build tree, else on PATH
  int64_t max_seq_len = 512;
  std::string chat_template = "chatml";
  int num_labels = 0;
  int64_t record = 0;
};

std::string Quote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

std::string FindWorker(const std::string& flag) {
  if (!flag.empty()) return flag;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& candidate :
         {self.parent_path() / "peftd-worker",
          self.parent_path().parent_path().parent_path() / "worker" / "peftd-worker"}) {
      if (fs::exists(candidate, ec)) return candidate.string();
    }
  }
  return "peftd-worker";  // PATH
}

int RunInspect(Cli& cli, const InspectArgs& a) {
  std::vector<std::string> argv = {FindWorker(a.worker_binary),
                                   "tokenize",
                                   a.path,
                                   "--model",
                                   a.model_dir,
                                   "--max-seq-len",
                                   std::to_string(a.max_seq_len),
                                   "--chat-template",
                                   a.chat_template,
                                   "--record",
                                   std::to_string(a.record)};
  if (a.num_labels > 0) {
    argv.push_back("--num-labels");
    argv.push_back(std::to_string(a.num_labels));
  }
  if (cli.json()) argv.push_back("--json");
  std::string command;
  for (const std::string& arg : argv)
    absl::StrAppend(&command, command.empty() ? "" : " ", Quote(arg));
  // The worker's stderr (a bad line, an unreadable model) goes straight to ours.
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    cli.err() << "error: cannot run " << argv[0] << "\n";
    return kExitError;
  }
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    cli.out().write(buffer.data(), static_cast<std::streamsize>(n));
  }
  const int status = ::pclose(pipe);
  if (!WIFEXITED(status)) return kExitError;
  switch (WEXITSTATUS(status)) {
    case 0:
      return kExitOk;
    case 1:
      return kExitInvalid;  // a bad dataset or model folder, already printed by the worker
    case 2:
      return kExitUsage;
    case 127:
      cli.err() << "error: " << argv[0]
                << " not found; install peftd-worker or give --worker-binary\n";
      return kExitError;
    default:
      return kExitError;
  }
}

}  // namespace

void AddDatasetInspectCommand(CLI::App& datasets, Cli& cli, Action* action) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* inspect = datasets.add_subcommand(
      "inspect",
      "How a JSONL file tokenizes under a model: tokens, tokens with loss, truncation, packing, "
      "one record with its loss mask (runs peftd-worker tokenize; no server)");
  inspect->add_option("FILE", args->path, "JSONL file")->required()->check(CLI::ExistingFile);
  inspect->add_option("--model", args->model_dir, "HF model folder whose tokenizer to use")
      ->required()
      ->check(CLI::ExistingDirectory);
  inspect->add_option("--max-seq-len", args->max_seq_len, "max_seq_len of the job (default 512)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  inspect->add_option("--chat-template", args->chat_template,
                      "chat_template of the job for messages records (default chatml)");
  inspect->add_option("--num-labels", args->num_labels, "classification records: num_labels")
      ->check(CLI::Range(2, 65536));
  inspect->add_option("--record", args->record, "0-based record to render (default 0)")
      ->check(CLI::NonNegativeNumber);
  inspect->add_option("--worker-binary", args->worker_binary,
                      "peftd-worker to run (default: next to peftctl, else on PATH)");
  inspect->callback([&cli, action, args] {
    action->needs_server = false;
    action->run = [&cli, args] { return RunInspect(cli, *args); };
  });
}

}  // namespace peftd::cli

// peftctl download: the adapter (or merged model) of a job, streamed to a file beside the target,
// verified, extracted, then moved into place.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "clients/cli/progress_bar.h"
#include "common/chunked_file.h"
#include "common/sha256.h"
#include "common/tar.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

namespace fs = std::filesystem;

struct DownloadArgs {
  std::string id;
  std::string output;  // -o: the adapter folder; default ./<name from the server>
  bool merged = false;
  bool force = false;
  int64_t step = 0;  // --step: the adapter of the job's kept checkpoint of this step
};

// A folder name from the server, kept to one plain path component.
std::string SafeName(const std::string& name, const std::string& job_id) {
  std::string out;
  for (char c : name) {
    out +=
        (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  }
  if (out.empty() || out == "." || out == ".." || out[0] == '.') out = "adapter-" + job_id;
  return out;
}

std::string TempSibling(const fs::path& target, const char* what) {
  std::random_device rd;
  return (target.parent_path() /
          absl::StrFormat(".%s.%s-%d-%08x", target.filename().string(), what, ::getpid(), rd()))
      .string();
}

int Refuse(Cli& cli, const std::string& message) {
  cli.err() << "error: " << message << "\n";
  return kExitError;
}

// Removes a temp file or folder on every way out unless it was moved into place.
struct TempPath {
  std::string path;
  ~TempPath() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

int RunDownload(Cli& cli, const DownloadArgs& args) {
  const std::string what =
      args.merged ? "merged model"
                  : (args.step > 0 ? absl::StrCat("adapter of step ", args.step) : "adapter");
  const std::string doing = "downloading the " + what + " of job " + args.id;
  // Refuse before transferring anything when the target is known up front.
  if (!args.output.empty() && fs::exists(args.output) && !args.force) {
    return Refuse(cli, absl::StrCat(args.output, " already exists: pass --force to replace it, ",
                                    "or -o another folder"));
  }
  auto context = cli.NewContext(/*stream=*/true);
  v1::DownloadAdapterRequest request;
  request.set_job_id(args.id);
  request.set_merged(args.merged);
  request.set_step(args.step);
  auto reader = cli.stub().DownloadAdapter(context.get(), request);

  v1::DownloadAdapterChunk message;
  v1::DownloadAdapterChunk::Header header;
  bool have_header = false;
  // The archive streams to a file next to the target (a merged model can be larger than memory),
  // is verified, then extracted from that file.
  fs::path target, absolute;
  TempPath archive_file;
  std::optional<ChunkedFileWriter> archive;
  Sha256 sha;
  const bool show_progress = cli.err_is_tty() && !cli.json();
  const auto start = std::chrono::steady_clock::now();
  std::string problem;
  std::error_code ec;
  while (reader->Read(&message)) {
    if (message.has_header()) {
      if (have_header) {
        problem = "the server sent a second header";
        break;
      }
      header = message.header();
      have_header = true;
      if (header.size_bytes() < 0) {
        problem =
            absl::StrCat("the server announced an archive of ", header.size_bytes(), " bytes");
        break;
      }
      // "-o my-adapter/" names the folder my-adapter.
      std::string output = args.output;
      while (output.size() > 1 && output.back() == '/') output.pop_back();
      target = output.empty() ? fs::path(SafeName(header.name(), args.id)) : fs::path(output);
      if (fs::exists(target, ec) && !args.force) {
        context->TryCancel();
        reader->Finish();
        return Refuse(cli, absl::StrCat(target.string(), " already exists: pass --force to ",
                                        "replace it, or -o another folder"));
      }
      absolute = fs::absolute(target, ec);
      fs::create_directories(absolute.parent_path(), ec);
      archive_file.path = TempSibling(absolute, "download");
      auto created = ChunkedFileWriter::Create(archive_file.path);
      if (!created.ok()) {
        problem = std::string(created.status().message());
        break;
      }
      archive.emplace(*std::move(created));
      continue;
    }
    if (!have_header) {
      problem = "the server sent bytes before the header";
      break;
    }
    sha.Update(message.chunk());
    if (absl::Status st = archive->Append(message.chunk()); !st.ok()) {
      problem = std::string(st.message());
      break;
    }
    if (archive->size() > header.size_bytes()) {
      problem = absl::StrCat("the server sent more than the ", header.size_bytes(),
                             " bytes it announced");
      break;
    }
    if (show_progress) {
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      cli.err() << "\r\x1b[2K"
                << RenderTransfer(what, archive->size(), header.size_bytes(), elapsed,
                                  cli.terminal_width() - 1);
      cli.err().flush();
    }
  }
  if (show_progress) cli.err() << "\r\x1b[2K";
  if (!problem.empty()) {
    context->TryCancel();
    reader->Finish();
    return Refuse(cli, absl::StrCat(doing, ": ", problem, "; nothing was written"));
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return cli.Fail(status, doing);
  if (!have_header) return Refuse(cli, doing + ": the server sent no header; nothing was written");
  const int64_t size = archive->size();
  if (absl::Status st = archive->Finish(); !st.ok()) {
    return Refuse(cli, absl::StrCat(doing, ": ", st.message(), "; nothing was written"));
  }

  // Verify before extracting: a corrupt transfer leaves nothing behind.
  if (size != header.size_bytes()) {
    return Refuse(cli, absl::StrCat(doing, ": got ", size, " bytes, the server announced ",
                                    header.size_bytes(), "; nothing was written, try again"));
  }
  const std::string digest = sha.HexDigest();
  if (digest != header.sha256()) {
    return Refuse(
        cli, absl::StrCat(doing, ": sha256 mismatch (got ", digest, ", the server ", "announced ",
                          header.sha256(), "); nothing was written, try again"));
  }

  // Extract next to the target, then rename: the folder appears whole or not at all.
  TempPath temp{TempSibling(absolute, "partial")};
  absl::Status extracted = ExtractTarFile(archive_file.path, temp.path);
  if (!extracted.ok()) {
    return Refuse(cli, absl::StrCat(doing, ": ", extracted.message(), "; nothing was written"));
  }
  fs::remove(archive_file.path, ec);  // before the rename: no two copies on disk for long
  std::string old;
  if (fs::exists(absolute, ec)) {
    old = TempSibling(absolute, "old");
    fs::rename(absolute, old, ec);
    if (ec) {
      return Refuse(cli, absl::StrCat("cannot replace ", target.string(), ": ", ec.message()));
    }
  }
  fs::rename(temp.path, absolute, ec);
  if (ec) {
    std::error_code ignored;
    if (!old.empty()) fs::rename(old, absolute, ignored);
    return Refuse(cli, absl::StrCat("cannot write ", target.string(), ": ", ec.message()));
  }
  temp.path.clear();  // moved into place
  if (!old.empty()) fs::remove_all(old, ec);

  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(absolute, ec)) {
    if (entry.is_regular_file()) files.push_back(fs::relative(entry.path(), absolute).string());
  }
  std::sort(files.begin(), files.end());
  if (cli.json()) {
    nlohmann::json j = {{"job_id", args.id},     {"path", target.string()}, {"name", header.name()},
                        {"merged", args.merged}, {"size_bytes", size},      {"sha256", digest},
                        {"step", args.step},     {"files", files}};
    cli.out() << j.dump(2) << "\n";
  } else {
    cli.out() << "downloaded the " << what << " of job " << args.id << " to " << target.string()
              << " (" << files.size() << (files.size() == 1 ? " file, " : " files, ")
              << FormatBytes(size) << ", sha256 " << digest.substr(0, 12) << ", verified)\n";
  }
  return kExitOk;
}

}  // namespace

void AddDownloadCommand(CLI::App& app, Cli& cli, Action* action) {
  auto args = std::make_shared<DownloadArgs>();
  CLI::App* sub = app.add_subcommand(
      "download", "Download a job's adapter folder (size and sha256 verified before writing)");
  sub->add_option("ID", args->id, "Job id")->required();
  sub->add_option("-o,--output", args->output,
                  "The adapter folder to create (default: ./<name given by the server>)");
  sub->add_flag("--merged", args->merged, "The merged full model instead (export_merged jobs)");
  sub->add_flag("--force", args->force, "Replace the folder if it exists");
  sub->add_option("--step", args->step,
                  "The adapter of the job's kept checkpoint of step N (any state; `get` lists "
                  "them)")
      ->check(CLI::PositiveNumber)
      ->excludes("--merged");
  sub->callback(
      [&cli, action, args] { action->run = [&cli, args] { return RunDownload(cli, *args); }; });
}

}  // namespace peftd::cli

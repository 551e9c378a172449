// peftd-worker: the training process. Every flag and its default is here.
//   peftd-worker --server ADDR [--token T | --token-file F] [--tls-ca F] [--tls-cert F --tls-key F]
//                [--tls-server-name N] [--worker-id ID] [--cache-dir D] [--model-root D]
//                [--slots N]                           pull jobs from a peftd server
//                (no --token / --token-file: the token is PEFTD_TOKEN when set, as for peftctl)
//   train JOB.json [--model-root D] [--out DIR] [--resume] [--json-log FILE] [--print-every N]
//         [--world-size N --rank R --rendezvous HOST:PORT [--rendezvous-key K]
//          [--rendezvous-timeout S]]                   run one job with no server (data-parallel
//                                                      over N processes with --world-size)
//   eval --model DIR [--adapter DIR] --inputs IDS.json [--dump-logits OUT] [--loss]
//                                                      logits of a model + adapter
//   make-tiny-model DIR [--arch llama|gpt2|roberta|deberta-v2|t5] [--shards N] [--bf16|--fp16]
//                                                      write a deterministic tiny model folder
//   demo [--dir DIR] [--steps N] [--json]              train the tiny model with every method
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "adapters/blas_kernel.h"
#include "nlohmann/json.hpp"
#include "worker/demo_run.h"
#include "worker/eval_command.h"
#include "worker/gang_runner.h"
#include "worker/lease_loop.h"
#include "worker/model/hf_loader.h"
#include "worker/model/tiny_deberta_v2.h"
#include "worker/model/tiny_gpt2.h"
#include "worker/model/tiny_model.h"
#include "worker/model/tiny_roberta.h"
#include "worker/model/tiny_t5.h"
#include "worker/run_job.h"
#include "worker/signal_watch.h"
#include "worker/tokenize_command.h"
#include "worker/train_command.h"

namespace {

constexpr int kExitCancelled = 130;

int RunDemoCommand(const std::string& dir, int64_t steps, int threads, bool json_out) {
  auto rows = peftd::worker::RunDemo(dir, steps, threads);
  if (!rows.ok()) {
    std::cerr << "peftd-worker demo: " << rows.status().message() << "\n";
    return 1;
  }
  if (json_out) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : *rows) {
      j.push_back({{"variant", r.variant},
                   {"initial_eval_loss", r.initial_eval_loss},
                   {"final_eval_loss", r.final_eval_loss},
                   {"trainable_parameters", r.trainable_parameters},
                   {"trainable_percent", r.trainable_percent},
                   {"gate_sparsity", r.gate_sparsity},
                   {"tokens_per_second", r.tokens_per_second},
                   {"adapter_dir", r.adapter_dir}});
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-10s %10s %10s %12s %9s %9s %10s\n", "method", "eval@0",
                               "eval@end", "trainable", "percent", "sparsity", "tokens/s");
  for (const auto& r : *rows) {
    std::cout << absl::StrFormat(
        "%-10s %10.4f %10.4f %12d %8.2f%% %9s %10.0f\n", r.variant, r.initial_eval_loss,
        r.final_eval_loss, r.trainable_parameters, r.trainable_percent,
        r.gate_sparsity >= 0 ? absl::StrFormat("%.3f", r.gate_sparsity) : "-", r.tokens_per_second);
  }
  for (const auto& r : *rows) {
    if (r.gate_sparsity >= 0 && r.gate_sparsity < 0.005) {
      std::cout << r.variant << ": sparsity 0 is the gate still fully open, not broken: tau rises "
                << "by at most s = 0.02 a step, and this method's changes are still larger than "
                   "tau relative to the layer's output (docs/token-gate.md, Reading it)\n";
    }
  }
  std::cout << "adapters (HF PEFT layout) in " << dir << "/adapters/\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "peftd-worker: trains parameter-efficient adapters with LibTorch.\n"
      "With --server it pulls jobs from a peftd scheduler; the subcommands work without one."};
  app.require_subcommand(0, 1);

  peftd::worker::LeaseLoopOptions lease;
  std::string token_file;
  app.add_option("--server", lease.server, "peftd address (host:port) to pull jobs from");
  auto* token = app.add_option("--token", lease.auth_token,
                               "bearer token the server expects (or --token-file, or PEFTD_TOKEN)");
  app.add_option("--token-file", token_file, "file holding the bearer token")
      ->check(CLI::ExistingFile)
      ->excludes(token);
  app.add_option("--tls-ca", lease.tls_ca_file,
                 "PEM file of the CA that signed the server (turns TLS on)");
  app.add_option("--tls-cert", lease.tls_cert_file,
                 "client certificate PEM (mutual TLS, with --tls-key)");
  app.add_option("--tls-key", lease.tls_key_file, "client private key PEM");
  app.add_option("--tls-server-name", lease.tls_server_name,
                 "name to check in the server certificate (default: the host of --server)");
  app.add_option("--worker-id", lease.worker_id, "stable worker id (default: hostname-pid)");
  app.add_option("--cache-dir", lease.cache_dir, "datasets and job scratch folders")
      ->capture_default_str();
  lease.model_root = "./peftd-data/models";
  app.add_option("--model-root", lease.model_root, "folder the jobs' base_model names resolve in")
      ->capture_default_str();
  app.add_option("--advertise-host", lease.advertise_host,
                 "host the other ranks of a gang reach this worker's rendezvous at (default: "
                 "127.0.0.1 when --server is on this machine, else the hostname)");
  app.add_option("--slots", lease.slots, "jobs run at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();

  peftd::worker::TrainCommandOptions train;
  auto* train_cmd = app.add_subcommand("train", "run one job file with no server");
  train_cmd->add_option("job", train.job_file, "job file: a JobSpec in protobuf JSON")
      ->required()
      ->check(CLI::ExistingFile);
  train_cmd->add_option("--model-root", train.model_root,
                        "resolve base_model as a name under this folder (default: a path "
                        "relative to the job file)");
  train_cmd->add_option("--out", train.out_dir,
                        "output folder: checkpoints, adapter, log (default ./<job>-out)");
  train_cmd->add_flag("--resume", train.resume, "continue from the newest checkpoint in --out");
  train_cmd->add_option("--json-log", train.json_log,
                        "JSON-lines log (default <out>/train_log.jsonl; '-' for none)");
  train_cmd
      ->add_option("--print-every", train.print_every,
                   "progress line every N steps when stderr is not a terminal (default 10)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  train_cmd
      ->add_option("--world-size", train.world_size,
                   "data-parallel processes (ranks) training this job together; batch_size is per "
                   "rank")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  train_cmd->add_option("--rank", train.rank, "this process's rank, 0 .. world-size - 1")
      ->check(CLI::Range(0, 1023))
      ->capture_default_str();
  train_cmd->add_option("--rendezvous", train.rendezvous,
                        "HOST:PORT where rank 0 listens and the other ranks connect (world size "
                        "> 1)");
  train_cmd
      ->add_option("--rendezvous-key", train.rendezvous_key,
                   "prefix of the rendezvous keys, unique to this run")
      ->capture_default_str();
  train_cmd
      ->add_option("--rendezvous-timeout", train.rendezvous_timeout_seconds,
                   "seconds to wait for every rank, and for any collective")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();

  peftd::worker::EvalCommandOptions eval;
  auto* eval_cmd = app.add_subcommand("eval", "logits of a model with an adapter applied");
  eval_cmd->add_option("--model", eval.model_dir, "HF model folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  eval_cmd->add_option("--adapter", eval.adapter_dir, "adapter folder to apply")
      ->check(CLI::ExistingDirectory);
  eval_cmd->add_option("--inputs", eval.inputs_file, "ids.json: [[token ids...], ...]")
      ->required()
      ->check(CLI::ExistingFile);
  eval_cmd->add_option("--dump-logits", eval.dump_logits,
                       "write logits and attention_mask to this .safetensors file");
  eval_cmd->add_flag("--loss", eval.print_loss, "print the mean next-token loss");
  eval_cmd->add_option("--threads", eval.threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(1, 1024));

  std::string tiny_dir;
  int shards = 1;
  bool bf16 = false;
  bool fp16 = false;
  std::string arch = "llama";
  peftd::worker::TokenizeCommandOptions tokenize;
  auto* tokenize_cmd = app.add_subcommand(
      "tokenize", "how a dataset tokenizes under a model: tokens, loss mask, packing");
  tokenize_cmd->add_option("data", tokenize.data_file, "dataset: JSONL records")
      ->required()
      ->check(CLI::ExistingFile);
  tokenize_cmd->add_option("--model", tokenize.model_dir, "HF model folder (its tokenizer)")
      ->required()
      ->check(CLI::ExistingDirectory);
  tokenize_cmd->add_option("--max-seq-len", tokenize.max_seq_len, "tokens per row (job spec)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  tokenize_cmd->add_option("--chat-template", tokenize.chat_template,
                           "for messages records: chatml, llama3 or plain");
  tokenize_cmd->add_flag("!--no-truncate", tokenize.truncate,
                         "refuse records longer than --max-seq-len");
  tokenize_cmd
      ->add_option("--num-labels", tokenize.num_labels,
                   "classification records (SEQ_CLS) with this many classes")
      ->check(CLI::Range(2, 65536));
  tokenize_cmd->add_option("--record", tokenize.record, "0-based record to render")
      ->check(CLI::NonNegativeNumber);
  tokenize_cmd->add_option("--seed", tokenize.seed, "packing seed (job spec)");
  tokenize_cmd->add_flag("--json", tokenize.json, "print JSON");

  auto* tiny = app.add_subcommand(
      "make-tiny-model",
      "write a deterministic tiny HF model folder (LLaMA, GPT-2, RoBERTa, DeBERTa-v3 or T5)");
  tiny->add_option("dir", tiny_dir, "output folder")->required();
  tiny->add_option("--arch", arch,
                   "architecture: llama (LlamaForCausalLM), gpt2 (GPT2LMHeadModel), roberta "
                   "(RobertaForSequenceClassification), deberta-v2 (DeBERTa-v3: "
                   "DebertaV2ForSequenceClassification) or t5 (T5ForConditionalGeneration, v1.1: "
                   "gated-gelu, untied head)")
      ->check(CLI::IsMember({"llama", "gpt2", "roberta", "deberta-v2", "t5"}));
  tiny->add_option("--shards", shards, "number of safetensors shards (1 = model.safetensors)")
      ->check(CLI::Range(1, 64));
  auto* bf16_flag = tiny->add_flag("--bf16", bf16, "store the weights as BF16");
  tiny->add_flag("--fp16", fp16,
                 "store the weights as FP16 (--arch gpt2, roberta, deberta-v2 or t5)")
      ->excludes(bf16_flag);

  std::string demo_dir = "./peftd-demo";
  int64_t steps = 60;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  bool json_out = false;
  auto* demo = app.add_subcommand(
      "demo", "train the tiny model with every method, with and without the token gate");
  demo->add_option("--dir", demo_dir, "working folder (model, adapters)");
  demo->add_option("--steps", steps, "optimizer steps per run")->check(CLI::Range(2, 100000));
  demo->add_option("--threads", threads, "CPU threads")->check(CLI::Range(1, 1024));
  demo->add_flag("--json", json_out, "print JSON instead of a table");

  CLI11_PARSE(app, argc, argv);

  if (*tiny) {
    absl::Status st;
    if (arch == "gpt2") {
      st = peftd::model::WriteTinyGpt2Model(tiny_dir, shards,
                                            bf16 ? "bfloat16" : (fp16 ? "float16" : "float32"));
    } else if (arch == "roberta") {
      st = peftd::model::WriteTinyRobertaModel(tiny_dir, shards,
                                               bf16 ? "bfloat16" : (fp16 ? "float16" : "float32"));
    } else if (arch == "deberta-v2") {
      st = peftd::model::WriteTinyDebertaV2Model(
          tiny_dir, shards, bf16 ? "bfloat16" : (fp16 ? "float16" : "float32"));
    } else if (arch == "t5") {
      st = peftd::model::WriteTinyT5Model(tiny_dir, shards,
                                          bf16 ? "bfloat16" : (fp16 ? "float16" : "float32"));
    } else if (fp16) {
      st = absl::InvalidArgumentError("--fp16: only with --arch gpt2, roberta, deberta-v2 or t5");
    } else {
      st = peftd::model::WriteTinyModel(tiny_dir, shards, bf16);
    }
    if (!st.ok()) {
      std::cerr << "peftd-worker make-tiny-model: " << st.message() << "\n";
      return 1;
    }
    std::cout << "wrote " << tiny_dir << "\n";
    return 0;
  }
  if (*demo) return RunDemoCommand(demo_dir, steps, threads, json_out);
  if (*eval_cmd) return peftd::worker::RunEvalCommand(eval);
  if (*tokenize_cmd) return peftd::worker::RunTokenizeCommand(tokenize);

  // Long runs: SIGINT / SIGTERM stop them cleanly. Blocked before any LibTorch or gRPC thread
  // exists, so that only the watcher receives them.
  peftd::worker::BlockTerminationSignals();
  if (const std::string advice = peftd::adapters::BlasFallbackAdvice(); !advice.empty()) {
    std::cerr << "peftd-worker: warning: " << advice << "\n";
  }
  if (*train_cmd) {
    std::atomic<bool> cancelled{false};
    peftd::worker::SignalWatcher watcher([&](int, int count) {
      if (count > 1) _exit(kExitCancelled);
      cancelled = true;
      const char msg[] = "\nstopping after this step (a checkpoint is kept); again to quit now\n";
      (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    });
    return peftd::worker::RunTrainCommand(train, &cancelled);
  }
  if (app.count("--server") == 0) {
    std::cerr << app.help() << "\npeftd-worker: give --server ADDR or a subcommand\n";
    return 2;
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    std::stringstream ss;
    ss << in.rdbuf();
    lease.auth_token = std::string(absl::StripAsciiWhitespace(ss.str()));
    if (lease.auth_token.empty()) {
      std::cerr << "peftd-worker: --token-file: '" << token_file << "' is empty\n";
      return 2;
    }
  } else if (lease.auth_token.empty()) {
    // Same order as peftctl: flag, file, then the environment (what --local-workers children get
    // when the server has no data dir to write a token file into).
    if (const char* env = std::getenv("PEFTD_TOKEN")) lease.auth_token = env;
  }
  if (auto channel = peftd::MakeChannelOrError(peftd::worker::ChannelOptionsOf(lease));
      !channel.ok()) {
    std::cerr << "peftd-worker: " << channel.status().message() << "\n";
    return 2;
  }
  lease.device = peftd::model::DefaultDevice().str();
  peftd::worker::LeaseLoop loop(lease, peftd::worker::MakeGangRunner());
  peftd::worker::SignalWatcher watcher([&](int, int count) {
    if (count > 1) _exit(kExitCancelled);
    loop.Stop();
  });
  std::cerr << "peftd-worker: pulling jobs from " << lease.server
            << (peftd::UsesTls(peftd::worker::ChannelOptionsOf(lease)) ? " over TLS" : "")
            << (lease.auth_token.empty() ? "" : " with a token") << " (model root "
            << lease.model_root << ", " << lease.slots << " slot(s), " << lease.device << ")\n";
  loop.Run();
  return 0;
}

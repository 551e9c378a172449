// Encode throughput of our tokenizers on Tiny Shakespeare, printed as JSON: the tokenizer.json BPE
// against libsentencepiece on the same Llama-2 vocabulary, and GPT-2 byte-level BPE. Each text is
// encoded one example at a time (lines, then paragraphs) as datasets are; "cold" is the first pass
// (empty word cache), "warm" the best of the later passes. Times are thread CPU seconds.
//
//   bench_tokenizer [--fixtures DIR] [--seconds S] [--only SUBSTRING-OF-TOKENIZER-NAME]
#include <time.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "worker/data/sentencepiece_tokenizer.h"
#include "worker/data/tokenizer.h"

namespace {

using peftd::data::Tokenizer;

std::vector<std::string> SplitOn(const std::string& text, const std::string& sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(sep, pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) out.push_back(text.substr(pos, end - pos));
    pos = end + sep.size();
  }
  return out;
}

struct Pass {
  double seconds;
  size_t tokens;
};

// CPU time of this thread: the build machines are shared, and wall time there measures the load
// as much as the code.
double ThreadSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

Pass EncodeAll(const Tokenizer& tok, const std::vector<std::string>& examples) {
  const double start = ThreadSeconds();
  size_t tokens = 0;
  for (const auto& e : examples) tokens += tok.Encode(e).size();
  return {ThreadSeconds() - start, tokens};
}

nlohmann::json Measure(const std::string& name, const Tokenizer& tok,
                       const std::vector<std::string>& examples, double min_seconds) {
  size_t bytes = 0;
  for (const auto& e : examples) bytes += e.size();
  const Pass cold = EncodeAll(tok, examples);
  Pass best = EncodeAll(tok, examples);
  double total = best.seconds;
  while (total < min_seconds) {
    const Pass p = EncodeAll(tok, examples);
    total += p.seconds;
    if (p.seconds < best.seconds) best = p;
  }
  auto rates = [&](const Pass& p) {
    return nlohmann::json{{"cpu_seconds", p.seconds},
                          {"mb_per_s", bytes / 1e6 / p.seconds},
                          {"tokens_per_s", p.tokens / p.seconds}};
  };
  return {{"tokenizer", name},     {"examples", examples.size()}, {"bytes", bytes},
          {"tokens", best.tokens}, {"cold", rates(cold)},         {"warm", rates(best)}};
}

}  // namespace

int main(int argc, char** argv) {
  std::string fixtures = PEFTD_FIXTURES_DIR;
  if (const char* env = std::getenv("PEFTD_FIXTURES"); env != nullptr && *env) fixtures = env;
  double seconds = 2.0;
  std::string only;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--fixtures") == 0) fixtures = argv[++i];
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[++i]);
    if (std::strcmp(argv[i], "--only") == 0) only = argv[++i];
  }
  std::ifstream in(fixtures + "/data/tinyshakespeare.txt", std::ios::binary);
  if (!in) {
    std::cout << nlohmann::json{{"bench", "tokenizer"},
                                {"error", "tinyshakespeare.txt not found; pass --fixtures DIR"}}
              << "\n";
    return 1;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();

  auto llama2_json = peftd::data::LoadTokenizer(fixtures + "/tok-llama2");
  auto llama2_sp =
      peftd::data::LoadSentencePieceTokenizer(fixtures + "/tok-llama2/tokenizer.model");
  auto gpt2 = peftd::data::LoadTokenizer(fixtures + "/tok-gpt2");
  if (!llama2_json.ok() || !llama2_sp.ok() || !gpt2.ok()) {
    std::cout << nlohmann::json{{"bench", "tokenizer"}, {"error", "loading the fixtures failed"}}
              << "\n";
    return 1;
  }
  nlohmann::json out = {{"bench", "tokenizer"},
                        {"corpus", "tinyshakespeare.txt"},
                        {"corpus_bytes", text.size()},
                        {"results", nlohmann::json::array()}};
  for (const auto& [unit, sep] : {std::pair{"line", "\n"}, std::pair{"paragraph", "\n\n"}}) {
    const std::vector<std::string> examples = SplitOn(text, sep);
    const std::vector<std::pair<std::string, const Tokenizer*>> tokenizers = {
        {"llama2 tokenizer.json (ours)", llama2_json->get()},
        {"llama2 tokenizer.model (libsentencepiece)", llama2_sp->get()},
        {"gpt2 tokenizer.json byte-level (ours)", gpt2->get()}};
    for (const auto& [name, tok] : tokenizers) {
      if (name.find(only) == std::string::npos) continue;
      nlohmann::json row = Measure(name, *tok, examples, seconds);
      row["unit"] = unit;
      out["results"].push_back(row);
    }
  }
  std::cout << out.dump() << "\n";
  return 0;
}

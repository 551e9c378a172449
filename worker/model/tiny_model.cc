#include "worker/model/tiny_model.h"

#include <torch/torch.h>

#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/checkpoint_writer.h"
#include "worker/model/llama.h"

namespace peftd::model {
namespace {

using nlohmann::json;

constexpr char kSpecials[3][20] = {"<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"};

// Original text the tiny tokenizer's merges are learnt from.
constexpr char kCorpus[] =
    "the quick brown fox jumps over the lazy dog. a small model learns to write short sentences "
    "about the weather, the sea, the city and the people who live there. it is sunny today and "
    "the wind is calm. the train leaves at nine and arrives at noon. she reads a book while he "
    "cooks dinner for the family. numbers like 1, 2, 3 and 42 appear in text too. what is the "
    "answer? the answer is in the question. good models are trained on good data, and the data "
    "is checked line by line before training starts. every step lowers the loss a little.";

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards.
std::string ByteToUnicode(int b) {
  static const std::map<int, int> table = [] {
    std::map<int, int> m;
    std::vector<int> bs;
    for (int i = '!'; i <= '~'; ++i) bs.push_back(i);
    for (int i = 0xA1; i <= 0xAC; ++i) bs.push_back(i);
    for (int i = 0xAE; i <= 0xFF; ++i) bs.push_back(i);
    int n = 0;
    for (int i = 0; i < 256; ++i) {
      if (std::find(bs.begin(), bs.end(), i) != bs.end()) {
        m[i] = i;
      } else {
        m[i] = 256 + n++;
      }
    }
    return m;
  }();
  const int cp = table.at(b);
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

}  // namespace

ModelConfig TinyConfig() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 1024;
  c.torch_dtype = "float32";
  c.bos_token_id = 509;
  c.eos_token_id = 510;
  c.pad_token_id = 511;
  return c;
}

ModelConfig BenchConfig100M() {
  ModelConfig c = TinyConfig();
  c.vocab_size = 32000;
  c.hidden_size = 768;
  c.intermediate_size = 2048;
  c.num_hidden_layers = 12;
  c.num_attention_heads = 12;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  c.max_position_embeddings = 4096;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 0;
  return c;
}

std::string TinyTokenizerJson(int64_t vocab_size) {
  // Words (with their leading space, as GPT-2's pre-tokenizer keeps it) as byte-unicode symbols.
  std::vector<std::vector<std::string>> words;
  std::string text = kCorpus;
  size_t start = 0;
  for (size_t i = 1; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ' ') {
      std::vector<std::string> w;
      for (size_t k = start; k < i; ++k)
        w.push_back(ByteToUnicode(static_cast<unsigned char>(text[k])));
      words.push_back(w);
      start = i;
    }
  }
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToUnicode(b)] = b;
  json merges = json::array();
  int64_t next = 256;
  const int64_t limit = vocab_size - 3;
  while (next < limit) {
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const auto& w : words) {
      for (size_t i = 0; i + 1 < w.size(); ++i) ++counts[{w[i], w[i + 1]}];
    }
    if (counts.empty()) break;
    // Most frequent pair; ties by the pair itself so the result is deterministic.
    auto best = counts.begin();
    for (auto it = counts.begin(); it != counts.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    if (best->second < 2) break;
    const auto [a, b] = best->first;
    const std::string merged = a + b;
    merges.push_back(a + " " + b);
    vocab[merged] = next++;
    for (auto& w : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(w[i]);
        }
      }
      w = out;
    }
  }
  // Unused ids up to the specials keep the vocabulary dense.
  while (next < limit) vocab[absl::StrFormat("<|reserved_%d|>", next)] = next, ++next;
  json added = json::array();
  for (int i = 0; i < 3; ++i) {
    vocab[kSpecials[i]] = limit + i;
    added.push_back({{"id", limit + i},
                     {"content", kSpecials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer",
               {{"type", "ByteLevel"},
                {"add_prefix_space", false},
                {"trim_offsets", true},
                {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder",
               {{"type", "ByteLevel"},
                {"add_prefix_space", true},
                {"trim_offsets", true},
                {"use_regex", true}}},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merges}}}};
  return tok.dump(1);
}

absl::Status WriteTinyModel(const std::string& dir, int shards, bool bf16) {
  RETURN_IF_ERROR(CreateModelFolder(dir));
  const ModelConfig config = TinyConfig();
  ModelConfig written = config;
  written.torch_dtype = bf16 ? "bfloat16" : "float32";
  RETURN_IF_ERROR(WriteModelText(dir, "config.json", ModelConfigJson(written)));
  RETURN_IF_ERROR(WriteModelText(dir, "tokenizer.json", TinyTokenizerJson(config.vocab_size)));
  RETURN_IF_ERROR(WriteModelText(dir, "tokenizer_config.json",
                                 json{{"bos_token", kSpecials[0]},
                                      {"eos_token", kSpecials[1]},
                                      {"pad_token", kSpecials[2]},
                                      {"add_bos_token", true},
                                      {"add_eos_token", false},
                                      {"model_max_length", config.max_position_embeddings},
                                      {"tokenizer_class", "PreTrainedTokenizerFast"}}
                                     .dump(2)));
  Llama model(config);
  InitRandomWeights(model);
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> tensors;
  for (auto& item : model->named_parameters()) {
    tensors[item.key()] = bf16 ? item.value().to(torch::kBFloat16) : item.value().clone();
  }
  return WriteCheckpointTensors(dir, tensors, shards);
}

}  // namespace peftd::model

// Shared by the tokenizer tests: the fixture folders, the llama.cpp vectors, and the Llama-3 /
// Qwen2 tokenizer.json files assembled in a temp dir from their stored parts (the real files are
// too big to store; tok-llama3/SOURCES.md and tok-qwen2/SOURCES.md give the exact settings).
#ifndef PEFTD_TESTS_WORKER_DATA_TOKENIZER_FIXTURES_H_
#define PEFTD_TESTS_WORKER_DATA_TOKENIZER_FIXTURES_H_

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace peftd::data::testing {

namespace fs = std::filesystem;
using nlohmann::json;

// PEFTD_FIXTURES (environment) overrides the build's path, for checkouts not beside shared/.
inline fs::path Fixtures() {
  const char* env = std::getenv("PEFTD_FIXTURES");
  return fs::path(env != nullptr && *env != 0 ? env : PEFTD_FIXTURES_DIR);
}

inline std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteAll(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

inline fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_tok_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

struct Vector {
  std::string text;
  std::vector<int64_t> ids;
};

// The 46 llama.cpp strings with the HF ids of `model`: llama-spm, llama-bpe, qwen2, gpt-2.
inline std::vector<Vector> LlamaCppVectors(const std::string& model) {
  const json all = json::parse(ReadAll(Fixtures() / "vectors" / "llamacpp-vectors.json"));
  std::vector<Vector> out;
  for (const json& c : all.at(model).at("cases")) {
    out.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<int64_t>>()});
  }
  return out;
}

// merges.txt / vocab.bpe lines ("a b"), without the "#version" header.
inline json MergeLines(const fs::path& p) {
  json merges = json::array();
  std::istringstream in(ReadAll(p));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    merges.push_back(line);
  }
  return merges;
}

inline json AddedToken(int64_t id, const std::string& content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

inline json SplitThenByteLevel(const std::string& regex) {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", regex}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"},
             {"add_prefix_space", false},
             {"trim_offsets", true},
             {"use_regex", false}}}}};
}

inline json ByteLevelBpe(json vocab, json merges, bool ignore_merges) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"ignore_merges", ignore_merges},
          {"vocab", std::move(vocab)},
          {"merges", std::move(merges)}};
}

// tok-llama3/SOURCES.md: Meta-Llama-3-8B's tokenizer.json from encoder.json + vocab.bpe.
inline fs::path AssembleLlama3(const fs::path& dir) {
  const fs::path src = Fixtures() / "tok-llama3";
  json added = json::array();
  const char* named[] = {"<|begin_of_text|>",
                         "<|end_of_text|>",
                         "<|reserved_special_token_0|>",
                         "<|reserved_special_token_1|>",
                         "<|reserved_special_token_2|>",
                         "<|reserved_special_token_3|>",
                         "<|start_header_id|>",
                         "<|end_header_id|>",
                         "<|reserved_special_token_4|>",
                         "<|eot_id|>"};
  for (int i = 0; i < 256; ++i) {
    const std::string name =
        i < 10 ? named[i] : "<|reserved_special_token_" + std::to_string(i - 5) + "|>";
    added.push_back(AddedToken(128000 + i, name));
  }
  const std::string regex =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", SplitThenByteLevel(regex)},
              {"post_processor",
               {{"type", "Sequence"},
                {"processors",
                 {{{"type", "ByteLevel"},
                   {"add_prefix_space", true},
                   {"trim_offsets", false},
                   {"use_regex", true}},
                  {{"type", "TemplateProcessing"},
                   {"single",
                    {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                   {"pair", json::array()},
                   {"special_tokens",
                    {{"<|begin_of_text|>",
                      {{"id", "<|begin_of_text|>"},
                       {"ids", {128000}},
                       {"tokens", {"<|begin_of_text|>"}}}}}}}}}}},
              {"decoder",
               {{"type", "ByteLevel"},
                {"add_prefix_space", true},
                {"trim_offsets", true},
                {"use_regex", true}}},
              {"model", ByteLevelBpe(json::parse(ReadAll(src / "encoder.json")),
                                     MergeLines(src / "vocab.bpe"), true)}};
  WriteAll(dir / "tokenizer.json", tok.dump());
  return dir;
}

// tok-qwen2/SOURCES.md: Qwen1.5/Qwen2's tokenizer.json from vocab.json + merges.txt, with the
// stored tokenizer_config.json beside it.
inline fs::path AssembleQwen2(const fs::path& dir) {
  const fs::path src = Fixtures() / "tok-qwen2";
  const std::string regex =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens",
               {AddedToken(151643, "<|endoftext|>"), AddedToken(151644, "<|im_start|>"),
                AddedToken(151645, "<|im_end|>")}},
              {"normalizer", {{"type", "NFC"}}},
              {"pre_tokenizer", SplitThenByteLevel(regex)},
              {"post_processor",
               {{"type", "ByteLevel"},
                {"add_prefix_space", false},
                {"trim_offsets", false},
                {"use_regex", false}}},
              {"decoder",
               {{"type", "ByteLevel"},
                {"add_prefix_space", false},
                {"trim_offsets", false},
                {"use_regex", false}}},
              {"model", ByteLevelBpe(json::parse(ReadAll(src / "vocab.json")),
                                     MergeLines(src / "merges.txt"), false)}};
  WriteAll(dir / "tokenizer.json", tok.dump());
  fs::copy_file(src / "tokenizer_config.json", dir / "tokenizer_config.json",
                fs::copy_options::overwrite_existing);
  return dir;
}

}  // namespace peftd::data::testing

#endif  // PEFTD_TESTS_WORKER_DATA_TOKENIZER_FIXTURES_H_

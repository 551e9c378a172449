// Datasets: exact input_ids and label masks for every format and template, BOS/EOS rules,
// truncation counting and refusal, skip_bad_lines, labels by name, task/format checks, thread
// count invariance, and the fixtures' real datasets converted to our formats.
#include "worker/data/dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "nlohmann/json.hpp"
#include "tests/worker_data/fake_tokenizer.h"

namespace peftd::data {
namespace {

using nlohmann::json;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr int64_t kBos = FakeTokenizer::kBos;
constexpr int64_t kEos = FakeTokenizer::kEos;
constexpr int64_t kNo = -100;

std::vector<int64_t> Cat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
std::vector<int64_t> Ids(std::initializer_list<int64_t> ids) { return ids; }
std::vector<int64_t> Ignored(std::string_view text) {
  return std::vector<int64_t>(FakeIds(text).size(), kNo);
}

absl::StatusOr<LoadedDataset> Load(const std::string& jsonl, const DatasetOptions& options = {},
                                   const Tokenizer& tokenizer = FakeTokenizer(),
                                   std::vector<LineError>* errors = nullptr) {
  return LoadDatasetFromBytes(jsonl, "train.jsonl", tokenizer, options, errors);
}

Example One(const std::string& line, const DatasetOptions& options = {},
            const Tokenizer& tokenizer = FakeTokenizer()) {
  auto d = Load(line, options, tokenizer);
  EXPECT_TRUE(d.ok()) << d.status();
  if (!d.ok() || d->examples.size() != 1) return {};
  return d->examples[0];
}

// PEFTD_FIXTURES (environment) overrides the build's path, for checkouts not beside shared/.
std::string FixturesDir() {
  const char* env = std::getenv("PEFTD_FIXTURES");
  return env != nullptr && *env != 0 ? env : PEFTD_FIXTURES_DIR;
}

std::string ReadFixture(const std::string& name) {
  std::ifstream in(FixturesDir() + "/data/" + name, std::ios::binary);
  EXPECT_TRUE(in) << "fixture missing: " << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Dataset, TextGetsBosAndEosAndLossEverywhere) {
  Example e = One(R"({"text": "hi"})");
  EXPECT_THAT(e.input_ids, ElementsAreArray(Ids({kBos, 'h', 'i', kEos})));
  EXPECT_TRUE(e.labels.empty());  // = input_ids
  // No BOS when the tokenizer does not add one; no EOS when the model has none.
  e = One(R"({"text": "hi"})", {}, FakeTokenizer(/*add_bos=*/false, /*has_eos=*/false));
  EXPECT_THAT(e.input_ids, ElementsAreArray(Ids({'h', 'i'})));
}

TEST(Dataset, PromptCompletionPutsTheLossOnTheCompletionAndEosOnly) {
  Example e = One(R"({"prompt": "Q: 1+1=", "completion": " 2"})");
  EXPECT_EQ(e.input_ids, Cat({{kBos}, FakeIds("Q: 1+1="), FakeIds(" 2"), {kEos}}));
  EXPECT_EQ(e.labels, Cat({{kNo}, Ignored("Q: 1+1="), FakeIds(" 2"), {kEos}}));
  EXPECT_EQ(e.class_label, -1);
}

TEST(Dataset, MessagesChatMlTrainsOnAssistantContentAndItsEndMarker) {
  const std::string line =
      R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},)"
      R"( {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"},)"
      R"( {"role": "assistant", "content": "B"}]})";
  Example e = One(line);
  const std::string s = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n";
  const std::string a_head = "<|im_start|>assistant\n";
  const std::string mid = "\n<|im_start|>user\nV<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(e.input_ids, Cat({{kBos},
                              FakeIds(s + a_head),
                              FakeIds("A<|im_end|>"),
                              FakeIds(mid),
                              FakeIds("B<|im_end|>"),
                              FakeIds("\n")}));
  EXPECT_EQ(e.labels, Cat({{kNo},
                           Ignored(s + a_head),
                           FakeIds("A<|im_end|>"),
                           Ignored(mid),
                           FakeIds("B<|im_end|>"),
                           {kNo}}));
}

TEST(Dataset, MessagesLlama3WritesItsOwnBosOnce) {
  DatasetOptions options;
  options.chat_template = "llama3";
  Example e = One(R"({"messages": [{"role": "user", "content": "U"},)"
                  R"( {"role": "assistant", "content": " A "}]})",
                  options);
  const std::string head =
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(e.input_ids, Cat({FakeIds(head), FakeIds("A<|eot_id|>")}));
  EXPECT_EQ(e.labels, Cat({Ignored(head), FakeIds("A<|eot_id|>")}));
  EXPECT_EQ(std::count(e.input_ids.begin(), e.input_ids.end(), kBos), 0);
}

TEST(Dataset, MessagesPlainEndsWithATrainableEos) {
  DatasetOptions options;
  options.chat_template = "plain";
  Example e = One(R"({"messages": [{"role": "user", "content": "U"},)"
                  R"( {"role": "assistant", "content": "A"}]})",
                  options);
  EXPECT_EQ(e.input_ids, Cat({{kBos}, FakeIds("User: U\nAssistant: A\n"), {kEos}}));
  EXPECT_EQ(e.labels, Cat({{kNo}, Ignored("User: U\nAssistant:"), FakeIds(" A\n"), {kEos}}));
}

TEST(Dataset, LongRecordsAreTruncatedAndCounted) {
  DatasetOptions options;
  options.max_seq_len = 8;
  auto d =
      Load("{\"text\": \"abcdefghijkl\"}\n{\"text\": \"abc\"}\n{\"text\": \"abcdef\"}\n", options);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->stats.records, 3);
  EXPECT_EQ(d->stats.truncated_records, 1);  // "abcdef" is exactly 8 tokens with BOS and EOS
  EXPECT_EQ(d->stats.tokens, 8 + 5 + 8);
  EXPECT_EQ(d->format, "text");
  EXPECT_THAT(d->examples[0].input_ids,
              ElementsAreArray(Ids({kBos, 'a', 'b', 'c', 'd', 'e', 'f', 'g'})));
}

TEST(Dataset, WithoutTruncationALongRecordIsABadLineWithItsTokenCount) {
  DatasetOptions options;
  options.max_seq_len = 8;
  options.truncate = false;
  std::vector<LineError> errors;
  auto d = Load("{\"text\": \"abc\"}\n{\"text\": \"abcdefghijkl\"}\n", options, FakeTokenizer(),
                &errors);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.status().message(),
            "train.jsonl: 1 bad line: line 2: record is 14 tokens, longer than max_seq_len 8; "
            "shorten the long records, raise max_seq_len or set truncate: true (keeps their "
            "first max_seq_len tokens)");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 2);
}

// Ten long records: the advice once at the end, not once per line (issue 18), and the file
// named as it was uploaded rather than by the worker cache's sha256 name.
TEST(Dataset, ManyLongRecordsGiveTheAdviceOnceUnderTheUploadedName) {
  DatasetOptions options;
  options.max_seq_len = 8;
  options.truncate = false;
  options.display_name = "my-train.jsonl";
  std::string file;
  for (int i = 0; i < 10; ++i) file += "{\"text\": \"abcdefghijkl\"}\n";
  auto d = Load(file, options);
  ASSERT_FALSE(d.ok());
  const std::string message(d.status().message());
  EXPECT_TRUE(absl::StartsWith(message,
                               "my-train.jsonl: 10 bad lines: line 1: record is 14 "
                               "tokens, longer than max_seq_len 8; line 2:"))
      << message;
  size_t advice = 0;
  for (size_t at = message.find("raise max_seq_len"); at != std::string::npos;
       at = message.find("raise max_seq_len", at + 1)) {
    ++advice;
  }
  EXPECT_EQ(advice, 1u) << message;
}

TEST(Dataset, APromptThatFillsMaxSeqLenLeavesNothingToTrainOn) {
  DatasetOptions options;
  options.max_seq_len = 4;
  auto d = Load("{\"prompt\": \"abcdef\", \"completion\": \"x\"}\n", options);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()),
              HasSubstr("line 1: no token to train on is left after truncation to max_seq_len 4 "
                        "(the record is 9 tokens)"));
}

TEST(Dataset, BadLinesAreListedOrSkippedAndCounted) {
  const std::string file =
      "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
      "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
      "{\"prompt\": \"a\"}\n"
      "{\"prompt\": \"a\", \"completion\": \"bbbbbbbbbbbbbbbbbbbbbb\"}\n"
      "{\"prompt\": 5, \"completion\": \"b\"}\n";
  DatasetOptions options;
  options.max_seq_len = 10;
  options.truncate = false;
  std::vector<LineError> errors;
  auto d = Load(file, options, FakeTokenizer(), &errors);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(),
            "train.jsonl: 3 bad lines: line 3: field \"completion\": missing; line 4: record is "
            "25 tokens, longer than max_seq_len 10; line 5: field \"prompt\": expected a string, "
            "got a number; shorten the long records, raise max_seq_len or set truncate: true "
            "(keeps their first max_seq_len tokens)");
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0], (LineError{3, "completion", "missing"}));
  EXPECT_EQ(errors[1].line, 4);
  EXPECT_EQ(errors[2], (LineError{5, "prompt", "expected a string, got a number"}));

  options.skip_bad_lines = true;
  errors.clear();
  d = Load(file, options, FakeTokenizer(), &errors);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->stats.records, 2);
  EXPECT_EQ(d->stats.skipped_lines, 3);
  EXPECT_EQ(errors.size(), 3u);  // still reported, for the job's log

  // Nothing valid left is an error even when skipping.
  d = Load("{\"prompt\": \"a\"}\n", options);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("no valid records"));
}

TEST(Dataset, ClassificationUsesIntegerLabelsOrNames) {
  DatasetOptions options;
  options.task = Task::kSequenceClassification;
  options.label_names = {"negative", "positive"};
  auto d =
      Load("{\"text\": \"good\", \"label\": \"positive\"}\n{\"text\": \"bad\", \"label\": 0}\n",
           options);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->format, "classification");
  ASSERT_EQ(d->examples.size(), 2u);
  EXPECT_EQ(d->examples[0].class_label, 1);
  EXPECT_EQ(d->examples[1].class_label, 0);
  EXPECT_EQ(d->examples[0].input_ids, Cat({{kBos}, FakeIds("good")}));
  EXPECT_TRUE(d->examples[0].labels.empty());

  d = Load("{\"text\": \"meh\", \"label\": \"neutral\"}\n", options);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(),
            "train.jsonl: 1 bad line: line 1: field \"label\": unknown label name \"neutral\" "
            "(known: negative, positive)");

  options.label_names.clear();
  options.num_labels = 2;
  d = Load("{\"text\": \"x\", \"label\": 2}\n{\"text\": \"x\", \"label\": \"pos\"}\n", options);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("line 1: field \"label\": label 2 is "
                                                           "out of range: num_labels is 2"));
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("line 2: field \"label\": label name "
                                                           "\"pos\" needs label_names"));
}

TEST(Dataset, PairsAreSeparatedAsTheHfPairTemplates) {
  DatasetOptions options;
  options.task = Task::kSequenceClassification;
  options.num_labels = 3;
  const std::string line = R"({"text": "ab", "text_pair": "cd", "label": 2})";
  // Llama style (add_bos): <s> A <s> B.
  Example e = One(line, options);
  EXPECT_THAT(e.input_ids, ElementsAreArray(Ids({kBos, 'a', 'b', kBos, 'c', 'd'})));
  EXPECT_EQ(e.class_label, 2);
  // No BOS (Qwen2 style): A EOS B.
  e = One(line, options, FakeTokenizer(/*add_bos=*/false));
  EXPECT_THAT(e.input_ids, ElementsAreArray(Ids({'a', 'b', kEos, 'c', 'd'})));
  // add_eos: each text ends with EOS.
  FakeTokenizer with_eos;
  with_eos.mutable_special().add_eos = true;
  e = One(line, options, with_eos);
  EXPECT_THAT(e.input_ids, ElementsAreArray(Ids({kBos, 'a', 'b', kEos, kBos, 'c', 'd', kEos})));
  // The model's own pair template (RobertaProcessing): <s> A </s></s> B </s>; single texts keep
  // <s> A </s>.
  FakeTokenizer roberta = with_eos;
  roberta.mutable_special().pair_middle = std::vector<int64_t>{kEos, kEos};
  e = One(line, options, roberta);
  EXPECT_THAT(e.input_ids, ElementsAreArray(Ids({kBos, 'a', 'b', kEos, kEos, 'c', 'd', kEos})));
  e = One(R"({"text": "ab", "label": 2})", options, roberta);
  EXPECT_THAT(e.input_ids, ElementsAreArray(Ids({kBos, 'a', 'b', kEos})));
  // Truncation keeps the beginning.
  options.max_seq_len = 4;
  auto d = Load(line, options);
  ASSERT_TRUE(d.ok());
  EXPECT_THAT(d->examples[0].input_ids, ElementsAreArray(Ids({kBos, 'a', 'b', kBos})));
  EXPECT_EQ(d->stats.truncated_records, 1);
}

TEST(Dataset, FormatsMustFitTheTask) {
  DatasetOptions cls;
  cls.task = Task::kSequenceClassification;
  cls.num_labels = 2;
  auto d = Load("{\"text\": \"a\"}\n", cls);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()),
              HasSubstr("train.jsonl: text records have no label, but the job's task is SEQ_CLS"));
  d = Load("{\"text\": \"a\", \"label\": 1}\n");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()),
              HasSubstr("train.jsonl: classification records need task SEQ_CLS"));
}

TEST(Dataset, UnknownChatTemplatesAndTinyMaxSeqLenAreRefused) {
  DatasetOptions options;
  options.chat_template = "vicuna";
  auto d = Load("{\"text\": \"a\"}\n", options);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("known: chatml, llama3, plain"));
  options = {};
  options.max_seq_len = 1;
  EXPECT_THAT(std::string(Load("{\"text\": \"a\"}\n", options).status().message()),
              HasSubstr("max_seq_len"));
}

TEST(Dataset, FilesAreReadByPathAndNamedInErrors) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("peftd_dataset_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "val.jsonl";
  {
    std::ofstream out(path);
    out << "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n";
  }
  auto d = LoadDataset(path.string(), FakeTokenizer(), {});
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("val.jsonl: 1 bad line: line 2: "));
  std::filesystem::remove_all(dir);
  EXPECT_EQ(LoadDataset(path.string(), FakeTokenizer(), {}).status().code(),
            absl::StatusCode::kNotFound);
}

// GSM8K {"question", "answer"} -> prompt_completion.
std::string Gsm8kAsPromptCompletion(int copies = 1) {
  std::string out;
  std::istringstream in(ReadFixture("gsm8k-test.jsonl"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    json q = json::parse(line);
    lines.push_back(json{{"prompt", "Question: " + q["question"].get<std::string>() + "\nAnswer:"},
                         {"completion", " " + q["answer"].get<std::string>()}}
                        .dump());
  }
  for (int c = 0; c < copies; ++c) {
    for (const auto& l : lines) out += l + "\n";
  }
  return out;
}

TEST(DatasetFixtures, Gsm8kAsPromptCompletionMasksEveryQuestion) {
  const std::string jsonl = Gsm8kAsPromptCompletion();
  DatasetOptions options;
  options.max_seq_len = 4096;
  auto d = Load(jsonl, options);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->stats.records, 1319);
  EXPECT_EQ(d->stats.truncated_records, 0);
  // Each example's targets are exactly its answer's bytes plus EOS.
  std::istringstream in(jsonl);
  std::string line;
  for (const Example& e : d->examples) {
    std::getline(in, line);
    const std::string answer = json::parse(line)["completion"];
    const int64_t targets =
        std::count_if(e.labels.begin(), e.labels.end(), [](int64_t l) { return l != kNo; });
    ASSERT_EQ(targets, static_cast<int64_t>(answer.size()) + 1);
    ASSERT_EQ(e.labels.back(), kEos);
  }
  // Threads change nothing.
  options.num_threads = 1;
  auto serial = Load(jsonl, options);
  ASSERT_TRUE(serial.ok());
  options.num_threads = 3;
  auto parallel = Load(jsonl, options);
  ASSERT_TRUE(parallel.ok());
  ASSERT_EQ(serial->examples.size(), parallel->examples.size());
  for (size_t i = 0; i < serial->examples.size(); ++i) {
    ASSERT_EQ(serial->examples[i].input_ids, parallel->examples[i].input_ids);
    ASSERT_EQ(serial->examples[i].labels, parallel->examples[i].labels);
  }
  EXPECT_EQ(serial->stats.tokens, parallel->stats.tokens);
}

TEST(DatasetFixtures, Sst2DevAsClassification) {
  std::istringstream in(ReadFixture("sst2-glue-dev.tsv"));
  std::string line, jsonl;
  std::getline(in, line);
  ASSERT_EQ(line, "sentence\tlabel");
  std::map<int, int> counts;
  while (std::getline(in, line)) {
    const size_t tab = line.rfind('\t');
    const int label = std::stoi(line.substr(tab + 1));
    ++counts[label];
    // Half with names, half with ids: both map to the same classes.
    json j = {{"text", line.substr(0, tab)}};
    if (counts[label] % 2) {
      j["label"] = label == 1 ? "positive" : "negative";
    } else {
      j["label"] = label;
    }
    jsonl += j.dump() + "\n";
  }
  DatasetOptions options;
  options.task = Task::kSequenceClassification;
  options.label_names = {"negative", "positive"};
  options.max_seq_len = 64;
  auto d = Load(jsonl, options);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->stats.records, 872);
  std::map<int, int> got;
  for (const Example& e : d->examples) ++got[static_cast<int>(e.class_label)];
  EXPECT_EQ(got, counts);
  EXPECT_GT(d->stats.truncated_records, 0);  // some reviews are longer than 64 bytes
  EXPECT_LT(d->stats.truncated_records, 872);
  for (const Example& e : d->examples) ASSERT_LE(e.input_ids.size(), 64u);
}

TEST(DatasetFixtures, SelfInstructAsMessages) {
  int instances = 0;
  std::string jsonl;
  std::vector<std::string> outputs;
  for (const char* name :
       {"self-instruct-seed_tasks.jsonl", "self-instruct-user_oriented_instructions.jsonl"}) {
    std::istringstream in(ReadFixture(name));
    for (std::string line; std::getline(in, line);) {
      json task = json::parse(line);
      for (const json& inst : task["instances"]) {
        std::string user = task["instruction"];
        const std::string input = inst["input"];
        if (!input.empty()) user += "\n\n" + input;
        json m = {{"messages",
                   {{{"role", "system"}, {"content", "You are a helpful assistant."}},
                    {{"role", "user"}, {"content", user}},
                    {{"role", "assistant"}, {"content", inst["output"]}}}}};
        jsonl += m.dump() + "\n";
        outputs.push_back(inst["output"]);
        ++instances;
      }
    }
  }
  for (const char* tmpl : {"chatml", "llama3", "plain"}) {
    SCOPED_TRACE(tmpl);
    DatasetOptions options;
    options.chat_template = tmpl;
    options.max_seq_len = 100000;
    auto d = Load(jsonl, options);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->format, "messages");
    EXPECT_EQ(d->stats.records, 427);
    EXPECT_EQ(instances, 427);
    // The trained tokens are exactly the assistant's answer and its end marker.
    FakeTokenizer tokenizer;
    for (size_t k = 0; k < d->examples.size(); ++k) {
      const Example& e = d->examples[k];
      std::vector<int64_t> trained;
      for (size_t t = 1; t < e.labels.size(); ++t) {
        if (e.labels[t] != kNo) trained.push_back(e.labels[t]);
      }
      std::string want = outputs[k];
      if (std::string(tmpl) == "chatml") want += "<|im_end|>";
      if (std::string(tmpl) == "llama3") {
        want = want.substr(0, want.find_last_not_of(" \n\t\r") + 1);
        want = want.substr(want.find_first_not_of(" \n\t\r")) + "<|eot_id|>";
      }
      if (std::string(tmpl) == "plain") want = " " + want + "\n</s>";
      ASSERT_EQ(tokenizer.Decode(trained), want) << "record " << k;
    }
  }
}

}  // namespace
}  // namespace peftd::data

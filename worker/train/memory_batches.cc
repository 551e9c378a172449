#include "worker/train/memory_batches.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "worker/train/seq2seq_batch.h"

namespace peftd::train {
namespace {

constexpr size_t kMegaBatchBatches = 50;  // HF LengthGroupedSampler's mega-batch multiplier

}  // namespace

Batch Collate(const std::vector<const Example*>& examples, int64_t pad_id, bool classification) {
  if (!examples.empty() && !examples.front()->target_ids.empty()) {
    return CollateSeq2Seq(examples, pad_id);
  }
  const int64_t b = static_cast<int64_t>(examples.size());
  int64_t t = 1;
  for (const Example* e : examples)
    t = std::max<int64_t>(t, static_cast<int64_t>(e->input_ids.size()));
  torch::Tensor ids = torch::full({b, t}, pad_id, torch::kLong);
  torch::Tensor mask = torch::zeros({b, t}, torch::kLong);
  torch::Tensor labels =
      classification ? torch::empty({b}, torch::kLong) : torch::full({b, t}, -100, torch::kLong);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  int64_t* label_data = labels.data_ptr<int64_t>();
  Batch batch;
  const bool packed = std::any_of(examples.begin(), examples.end(),
                                  [](const Example* e) { return e->record_starts.size() > 1; });
  if (packed) {
    // Positions restart at every record; each record, and the padding of each row, gets the
    // next number (Batch::sequence_ids).
    batch.position_ids = torch::zeros({b, t}, torch::kLong);
    batch.sequence_ids = torch::empty({b, t}, torch::kLong);
    auto pos_a = batch.position_ids.accessor<int64_t, 2>();
    auto seq_a = batch.sequence_ids.accessor<int64_t, 2>();
    int64_t sequence = -1;
    for (int64_t i = 0; i < b; ++i) {
      const Example& e = *examples[i];
      const int64_t n = static_cast<int64_t>(e.input_ids.size());
      size_t next = 0;  // index of the next record start
      int64_t start = 0;
      for (int64_t j = 0; j < n; ++j) {
        if (next < e.record_starts.size() && e.record_starts[next] == j) {
          start = j;
          ++next;
          ++sequence;
        } else if (j == 0) {
          ++sequence;  // an unpacked example: one record
        }
        pos_a[i][j] = j - start;
        seq_a[i][j] = sequence;
      }
      // Padding joins the row's last record (the mask hides it from that record's queries), so
      // every query sees a key and records start where positions restart.
      for (int64_t j = n; j < t; ++j) {
        pos_a[i][j] = j - start;
        seq_a[i][j] = sequence;
      }
    }
  }
  for (int64_t i = 0; i < b; ++i) {
    const Example& e = *examples[i];
    const auto& lab = e.labels.empty() ? e.input_ids : e.labels;
    for (size_t j = 0; j < e.input_ids.size(); ++j) {
      ids_a[i][j] = e.input_ids[j];
      mask_a[i][j] = 1;
      if (!classification) {
        label_data[i * t + static_cast<int64_t>(j)] = lab[j];
        // Position j carries loss when it predicts a real label at j + 1.
        if (j > 0 && lab[j] != -100) ++batch.num_targets;
      }
    }
    if (classification) {
      label_data[i] = e.class_label;
      ++batch.num_targets;
    }
    batch.num_tokens += static_cast<int64_t>(e.input_ids.size());
  }
  batch.input_ids = ids;
  batch.attention_mask = mask;
  batch.labels = labels;
  return batch;
}

MemoryBatchSource::MemoryBatchSource(std::vector<Example> examples, int64_t batch_size,
                                     int64_t pad_id, uint64_t seed, bool classification,
                                     bool group_by_length)
    : examples_(std::move(examples)),
      batch_size_(std::max<int64_t>(1, batch_size)),
      pad_id_(pad_id),
      seed_(seed),
      classification_(classification),
      group_by_length_(group_by_length) {
  Shuffle();
}

void MemoryBatchSource::Shuffle() {
  order_.resize(examples_.size());
  std::iota(order_.begin(), order_.end(), 0);
  std::mt19937_64 rng(seed_ + 1000003ULL * static_cast<uint64_t>(epoch_));
  std::shuffle(order_.begin(), order_.end(), rng);
  if (!group_by_length_) return;
  // HF's LengthGroupedSampler: mega-batches of 50 batches, each sorted longest first, so the
  // records of a batch have close lengths and little padding, while the order stays random.
  const size_t mega = static_cast<size_t>(GlobalBatch()) * kMegaBatchBatches;
  for (size_t begin = 0; begin < order_.size(); begin += mega) {
    const auto first = order_.begin() + static_cast<std::ptrdiff_t>(begin);
    const auto last =
        order_.begin() + static_cast<std::ptrdiff_t>(std::min(order_.size(), begin + mega));
    std::stable_sort(first, last, [this](size_t a, size_t b) {
      return examples_[a].input_ids.size() > examples_[b].input_ids.size();
    });
  }
}

int64_t MemoryBatchSource::BatchesPerEpoch() const {
  return (static_cast<int64_t>(examples_.size()) + GlobalBatch() - 1) / GlobalBatch();
}

void MemoryBatchSource::SetShard(int rank, int world_size) {
  shard_world_ = std::max(1, world_size);
  shard_rank_ = std::clamp(rank, 0, shard_world_ - 1);
  Shuffle();  // the length-grouping mega-batches are counted in global batches
}

Batch MemoryBatchSource::Next() {
  if (index_ >= BatchesPerEpoch()) {
    ++epoch_;
    index_ = 0;
    Shuffle();
  }
  std::vector<const Example*> picked;
  const size_t global_begin = static_cast<size_t>(index_ * GlobalBatch());
  const size_t n =
      std::min(order_.size(), global_begin + static_cast<size_t>(GlobalBatch())) - global_begin;
  const size_t begin = global_begin + n * shard_rank_ / shard_world_;
  const size_t end = global_begin + n * (shard_rank_ + 1) / shard_world_;
  for (size_t i = begin; i < end; ++i) picked.push_back(&examples_[order_[i]]);
  ++index_;
  return Collate(picked, pad_id_, classification_);
}

double MemoryBatchSource::Epoch() const {
  return static_cast<double>(epoch_) +
         static_cast<double>(index_) / static_cast<double>(BatchesPerEpoch());
}

std::map<std::string, int64_t> MemoryBatchSource::Position() const {
  return {{"epoch", epoch_}, {"index", index_}};
}

absl::Status MemoryBatchSource::Restore(const std::map<std::string, int64_t>& position) {
  auto e = position.find("epoch"), i = position.find("index");
  if (e == position.end() || i == position.end()) {
    return absl::InvalidArgumentError("data position: needs epoch and index");
  }
  if (i->second < 0 || i->second > BatchesPerEpoch()) {
    return absl::InvalidArgumentError(
        absl::StrCat("data position: index ", i->second, " is outside the epoch"));
  }
  epoch_ = e->second;
  index_ = i->second;
  Shuffle();
  return absl::OkStatus();
}

MemoryEvalSource::MemoryEvalSource(std::vector<Example> examples, int64_t batch_size,
                                   int64_t pad_id, bool classification)
    : examples_(std::move(examples)),
      batch_size_(std::max<int64_t>(1, batch_size)),
      pad_id_(pad_id),
      classification_(classification) {}

int64_t MemoryEvalSource::NumBatches() const {
  return (static_cast<int64_t>(examples_.size()) + batch_size_ - 1) / batch_size_;
}

Batch MemoryEvalSource::Get(int64_t index) const {
  std::vector<const Example*> picked;
  const size_t begin = static_cast<size_t>(index * batch_size_);
  for (size_t i = begin; i < std::min(examples_.size(), begin + static_cast<size_t>(batch_size_));
       ++i) {
    picked.push_back(&examples_[i]);
  }
  return Collate(picked, pad_id_, classification_);
}

}  // namespace peftd::train

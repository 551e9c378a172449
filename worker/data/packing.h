// Packing: several tokenized records share one max_seq_len row, so a dataset of short records
// trains on rows that are mostly real tokens instead of mostly padding. The model keeps the
// records apart (block-diagonal causal attention, positions restarting at each record; see
// train::Batch), so a packed row trains exactly as its records one by one would. LibTorch-free.
#ifndef PEFTD_WORKER_DATA_PACKING_H_
#define PEFTD_WORKER_DATA_PACKING_H_

#include <cstdint>
#include <vector>

#include "worker/data/example.h"

namespace peftd::data {

struct PackingStats {
  int64_t records = 0;     // records packed
  int64_t rows = 0;        // rows they fill
  int64_t tokens = 0;      // real tokens in the rows
  int64_t row_length = 0;  // max_seq_len
  // tokens / (rows × row_length): the share of the rows' positions that are real tokens.
  double Efficiency() const;
};

// Packs causal-LM examples (each at most `max_seq_len` tokens) into rows of at most
// `max_seq_len` tokens, best fit decreasing: records longest first (ties in a `seed`ed random
// order), each into the fullest row it still fits. The rows come out in the order they were
// opened; the trainer shuffles rows every epoch. Each row's record_starts says where its records
// begin, and every record's first label is −100 (nothing predicts across a boundary). Deterministic
// for a given input and seed.
std::vector<Example> PackExamples(std::vector<Example> examples, int64_t max_seq_len, uint64_t seed,
                                  PackingStats* stats = nullptr);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_PACKING_H_

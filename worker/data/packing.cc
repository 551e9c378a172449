#include "worker/data/packing.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <utility>

namespace peftd::data {
namespace {

constexpr int64_t kIgnore = -100;

}  // namespace

double PackingStats::Efficiency() const {
  const double positions = static_cast<double>(rows) * static_cast<double>(row_length);
  return positions > 0 ? static_cast<double>(tokens) / positions : 0;
}

std::vector<Example> PackExamples(std::vector<Example> examples, int64_t max_seq_len, uint64_t seed,
                                  PackingStats* stats) {
  std::vector<size_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return examples[a].input_ids.size() > examples[b].input_ids.size();
  });

  // Best fit: the open row with the least room that still takes the record. Rows keyed by
  // (room, row index) so ties go to the older row.
  std::vector<std::vector<size_t>> rows;
  std::vector<int64_t> room;
  std::multimap<int64_t, size_t> by_room;
  for (size_t i : order) {
    const int64_t n =
        std::min<int64_t>(static_cast<int64_t>(examples[i].input_ids.size()), max_seq_len);
    auto it = by_room.lower_bound(n);
    size_t row;
    if (it == by_room.end()) {
      row = rows.size();
      rows.emplace_back();
      room.push_back(max_seq_len);
    } else {
      row = it->second;
      by_room.erase(it);
    }
    rows[row].push_back(i);
    room[row] -= n;
    if (room[row] > 0) by_room.emplace(room[row], row);
  }

  std::vector<Example> out;
  out.reserve(rows.size());
  int64_t tokens = 0;
  for (const std::vector<size_t>& members : rows) {
    Example row;
    for (size_t i : members) {
      Example& e = examples[i];
      const size_t n = std::min<size_t>(e.input_ids.size(), static_cast<size_t>(max_seq_len));
      row.record_starts.push_back(static_cast<int32_t>(row.input_ids.size()));
      const std::vector<int64_t>& labels = e.labels.empty() ? e.input_ids : e.labels;
      row.labels.push_back(kIgnore);  // position 0 of a record is never a target
      row.labels.insert(row.labels.end(), labels.begin() + 1, labels.begin() + n);
      row.input_ids.insert(row.input_ids.end(), e.input_ids.begin(), e.input_ids.begin() + n);
      std::vector<int64_t>().swap(e.input_ids);
      std::vector<int64_t>().swap(e.labels);
    }
    tokens += static_cast<int64_t>(row.input_ids.size());
    out.push_back(std::move(row));
  }
  if (stats) {
    stats->records = static_cast<int64_t>(examples.size());
    stats->rows = static_cast<int64_t>(out.size());
    stats->tokens = tokens;
    stats->row_length = max_seq_len;
  }
  return out;
}

}  // namespace peftd::data

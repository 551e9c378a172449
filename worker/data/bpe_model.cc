#include "worker/data/bpe_model.h"

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/data/bpe_byte_level.h"
#include "worker/data/tokenizer_json_fields.h"
#include "worker/data/tokenizer_utf8.h"

namespace peftd::data {

using nlohmann::json;

namespace {

// Words longer than this are rare (long runs without a split) and not worth caching.
constexpr size_t kMaxCachedWordBytes = 128;
constexpr int kCacheShards = 16;
// Per shard; once full a shard keeps what it has (as HF's cache does), so memory stays bounded.
constexpr size_t kMaxCacheEntriesPerShard = 16384;
// Ids are dense in real vocabularies; this bounds memory for hostile files.
constexpr int64_t kMaxIdSlack = 1 << 16;
constexpr size_t kMaxKeptSymbols = 1 << 16;

absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

class BpeWordCache {
 public:
  bool Lookup(std::string_view word, std::vector<int64_t>* ids) const {
    Shard& s = shards_[ShardOf(word)];
    std::shared_lock<std::shared_mutex> lock(s.mu);
    auto it = s.map.find(Av(word));
    if (it == s.map.end()) return false;
    ids->insert(ids->end(), it->second.begin(), it->second.end());
    return true;
  }
  void Insert(std::string_view word, const int64_t* ids, size_t n) const {
    Shard& s = shards_[ShardOf(word)];
    std::unique_lock<std::shared_mutex> lock(s.mu);
    if (s.map.size() >= kMaxCacheEntriesPerShard) return;
    s.map.try_emplace(std::string(word), ids, ids + n);
  }

 private:
  struct Shard {
    // std::shared_mutex, not absl::Mutex: Debian's Abseil is built with deadlock detection,
    // which showed up in profiles of this per-word lock.
    std::shared_mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map;  // guarded by mu
  };
  static size_t ShardOf(std::string_view word) { return absl::HashOf(Av(word)) % kCacheShards; }
  mutable std::array<Shard, kCacheShards> shards_;
};

BpeModel::BpeModel() : cache_(std::make_unique<BpeWordCache>()) {}
BpeModel::~BpeModel() = default;

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& config,
                                                             const std::string& path) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  const std::string vocab_path = JoinPath(path, "vocab");
  const json* vocab = FindField(config, "vocab");
  if (vocab == nullptr || !vocab->is_object()) return FieldError(vocab_path, "must be an object");
  int64_t max_id = -1;
  m->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer()) {
      return FieldError(absl::StrCat(vocab_path, "[\"", it.key(), "\"]"), "must be an integer id");
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > INT32_MAX) {
      return FieldError(absl::StrCat(vocab_path, "[\"", it.key(), "\"]"),
                        absl::StrCat("has id ", id, ", outside [0, 2^31)"));
    }
    max_id = std::max(max_id, id);
    m->vocab_[it.key()] = static_cast<int32_t>(id);
  }
  if (max_id >= static_cast<int64_t>(vocab->size()) * 2 + kMaxIdSlack) {
    return FieldError(vocab_path, absl::StrCat("has id ", max_id, " for ", vocab->size(),
                                               " tokens; ids must be dense"));
  }
  m->id_to_token_.resize(max_id + 1);
  m->has_token_.assign(max_id + 1, false);
  for (const auto& [token, id] : m->vocab_) {
    m->id_to_token_[id] = token;
    m->has_token_[id] = true;
  }

  const std::string merges_path = JoinPath(path, "merges");
  const json* merges = FindField(config, "merges");
  if (merges != nullptr && !merges->is_array()) return FieldError(merges_path, "must be a list");
  if (merges != nullptr) {
    m->merges_.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const json& entry = (*merges)[i];
      const std::string entry_path = absl::StrCat(merges_path, "[", i, "]");
      std::string a;
      std::string b;
      // Old files write "a b", new ones ["a", "b"] (which allows spaces inside tokens).
      if (entry.is_string()) {
        const std::string& s = entry.get_ref<const std::string&>();
        const size_t space = s.find(' ');
        if (space == std::string::npos) {
          return FieldError(entry_path, "must be \"left right\" (two tokens and a space)");
        }
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
                 entry[1].is_string()) {
        a = entry[0].get<std::string>();
        b = entry[1].get<std::string>();
      } else {
        return FieldError(entry_path, "must be \"left right\" or [\"left\", \"right\"]");
      }
      const std::string merged = a + b;
      auto ia = m->vocab_.find(a);
      auto ib = m->vocab_.find(b);
      auto iab = m->vocab_.find(merged);
      const std::string* missing = ia == m->vocab_.end()    ? &a
                                   : ib == m->vocab_.end()  ? &b
                                   : iab == m->vocab_.end() ? &merged
                                                            : nullptr;
      if (missing != nullptr) {
        return FieldError(entry_path,
                          absl::StrCat("uses \"", *missing, "\", which is not in ", vocab_path));
      }
      // A repeated pair keeps its last rank, as HF's HashMap collect does.
      m->merges_[PairKey(ia->second, ib->second)] = {static_cast<int32_t>(i), iab->second};
    }
  }

  ASSIGN_OR_RETURN(m->byte_fallback_, BoolField(config, path, "byte_fallback", false));
  ASSIGN_OR_RETURN(m->ignore_merges_, BoolField(config, path, "ignore_merges", false));
  ASSIGN_OR_RETURN(m->fuse_unk_, BoolField(config, path, "fuse_unk", false));
  ASSIGN_OR_RETURN(const std::string unk, StringField(config, path, "unk_token", ""));
  if (!unk.empty()) {
    auto it = m->vocab_.find(unk);
    if (it == m->vocab_.end()) {
      return FieldError(JoinPath(path, "unk_token"),
                        absl::StrCat("\"", unk, "\" is not in ", vocab_path));
    }
    m->unk_id_ = it->second;
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    ASSIGN_OR_RETURN(const std::string affix, StringField(config, path, key, ""));
    if (!affix.empty()) {
      return FieldError(JoinPath(path, key), "is not supported (only null or \"\")");
    }
  }
  const json* dropout = FindField(config, "dropout");
  if (dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return FieldError(JoinPath(path, "dropout"),
                      "is not supported (BPE dropout makes encoding random; use null)");
  }
  for (int byte = 0; byte < 256; ++byte) {
    auto bl = m->vocab_.find(ByteLevelChar(static_cast<uint8_t>(byte)));
    m->byte_level_ids_[byte] = bl == m->vocab_.end() ? -1 : bl->second;
    auto fb = m->vocab_.find(absl::StrFormat("<0x%02X>", byte));
    m->fallback_ids_[byte] = fb == m->vocab_.end() ? -1 : fb->second;
  }
  return m;
}

std::optional<int64_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(Av(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size()) || !has_token_[id]) {
    return nullptr;
  }
  return &id_to_token_[id];
}

void BpeModel::InitialSymbols(std::string_view word, bool byte_level,
                              std::vector<Symbol>* syms) const {
  // HF's merge_word: a pending unknown is flushed before the next known character, so runs of
  // unknown characters fuse into one when fuse_unk is set.
  bool pending_unk = false;
  auto add = [syms](int32_t id) {
    const int32_t n = static_cast<int32_t>(syms->size());
    syms->push_back({id, n - 1, n + 1, true});
  };
  auto unknown = [&]() {
    if (unk_id_ < 0) return;  // no unknown token: the character is dropped, as in HF
    if (pending_unk && !fuse_unk_) add(unk_id_);
    pending_unk = true;
  };
  if (byte_level) {
    for (char c : word) {
      const int32_t id = byte_level_ids_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        if (pending_unk) add(unk_id_), pending_unk = false;
        add(id);
      } else {
        unknown();
      }
    }
  } else {
    size_t pos = 0;
    while (pos < word.size()) {
      const size_t start = pos;
      NextCodePoint(word, &pos);
      const std::string_view ch = word.substr(start, pos - start);
      auto it = vocab_.find(Av(ch));
      if (it != vocab_.end()) {
        if (pending_unk) add(unk_id_), pending_unk = false;
        add(it->second);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (char c : ch) all = all && fallback_ids_[static_cast<uint8_t>(c)] >= 0;
        if (all) {
          for (char c : ch) add(fallback_ids_[static_cast<uint8_t>(c)]);
          continue;
        }
      }
      unknown();
    }
  }
  if (pending_unk) add(unk_id_);
  if (!syms->empty()) syms->back().next = -1;
}

void BpeModel::MergeAll(std::vector<Symbol>* syms_ptr) const {
  std::vector<Symbol>& syms = *syms_ptr;
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // std::*_heap build a max-heap: "greater" puts the lowest (rank, pos) on top.
  auto later = [](const Candidate& x, const Candidate& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::vector<Candidate> heap;
  heap.reserve(syms.size());
  auto push = [&](int32_t pos) {
    const int32_t next = syms[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(syms[pos].id, syms[next].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.first, pos, it->second.second});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = syms[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = syms[left.next];
    // Stale entry: one side was merged since it was queued.
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
}

void BpeModel::Encode(std::string_view word, bool byte_level, std::vector<int64_t>* ids) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable && cache_->Lookup(word, ids)) return;
  const size_t first = ids->size();
  if (ignore_merges_) {
    std::optional<int64_t> whole;
    if (byte_level) {
      std::string mapped;
      mapped.reserve(word.size() * 2);
      for (char c : word) mapped += ByteLevelChar(static_cast<uint8_t>(c));
      whole = TokenToId(mapped);
    } else {
      whole = TokenToId(word);
    }
    if (whole) {
      ids->push_back(*whole);
      if (cacheable) cache_->Insert(word, ids->data() + first, 1);
      return;
    }
  }
  thread_local std::vector<Symbol> syms;
  syms.clear();
  InitialSymbols(word, byte_level, &syms);
  if (syms.size() > 1) MergeAll(&syms);
  for (const Symbol& s : syms) {
    if (s.alive) ids->push_back(s.id);
  }
  // A whole-document word (Llama-2's legacy layout has no pre-tokenizer) must not pin its buffer.
  if (syms.capacity() > kMaxKeptSymbols) std::vector<Symbol>().swap(syms);
  if (cacheable) cache_->Insert(word, ids->data() + first, ids->size() - first);
}

}  // namespace peftd::data

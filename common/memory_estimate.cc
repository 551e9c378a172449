#include "common/memory_estimate.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_config_deberta.h"
#include "common/module_pattern.h"

namespace peftd {
namespace {

constexpr double kFloatBytes = 4;  // fp32 on the CPU
// Each part saturates here (~0.9 EiB): no spec can overflow a sum of parts.
constexpr double kSaturateBytes = 1e18;
// lm_head_loss.cc: a chunk of logits holds at most 128 MiB, and at least 256 rows.
constexpr double kLossChunkBytes = double{int64_t{128} << 20};
constexpr double kLossChunkMinRows = 256;
// Tokenized data: one token per 2 bytes of file, 16 bytes a token (input id and label, int64).
constexpr double kDataBytesPerFileByte = 16.0 / 2 + 1;

int64_t Saturated(double bytes) {
  if (!(bytes < kSaturateBytes)) return static_cast<int64_t>(kSaturateBytes);
  return static_cast<int64_t>(std::ceil(std::max(bytes, 0.0)));
}

// Rank-like size of the method's parameters (r for LoRA/DoRA/HUT, init_r for AdaLoRA).
double Rank(const v1::JobSpec& spec) {
  switch (spec.method()) {
    case v1::LORA:
    case v1::DORA:
      return spec.lora().r();
    case v1::ADALORA:
      return spec.adalora().init_r();
    case v1::HUT:
      return spec.hut().r();
    default:
      return 0;
  }
}

// Trainable elements of one adapted module (METHODS.md, the counts of each method).
double AdapterParameters(const v1::JobSpec& spec, const model::LinearModule& m) {
  const double in = static_cast<double>(m.in_features), out = static_cast<double>(m.out_features);
  const double r = Rank(spec);
  double n = 0;
  switch (spec.method()) {
    case v1::LORA:
      n = r * (in + out);
      break;
    case v1::DORA:
      n = r * (in + out) + out;
      break;
    case v1::ADALORA:
      n = r * (in + out + 1);
      break;
    case v1::HUT:
      n = r * (in + out) + 2 * out;
      break;
    case v1::ADADHP:
      n = in + out;
      break;
    default:
      break;
  }
  return n + (spec.token_gate().enabled() ? 1 : 0);
}

// What the method keeps for backward in one adapted module at N tokens, in elements.
double AdapterActivations(const v1::JobSpec& spec, const model::LinearModule& m, double tokens) {
  const double in = static_cast<double>(m.in_features), out = static_cast<double>(m.out_features);
  double n = 0;
  switch (spec.method()) {
    case v1::LORA:
    case v1::ADALORA:
      n = tokens * Rank(spec);  // x·Aᵀ
      break;
    case v1::DORA:
      n = tokens * (Rank(spec) + out);  // x·Aᵀ and x·W0ᵀ (scaled by the gain)
      break;
    case v1::HUT:
    case v1::ADADHP:
      n = tokens * (in + out);  // the scaled input and the frozen product
      break;
    default:
      break;
  }
  if (spec.token_gate().enabled()) n += tokens * (out + 1);  // the delta and the on-mask
  return n;
}

// Which projection of a decoder layer a module is ("q_proj", ...), or "" for the head.
absl::string_view ProjectionOf(absl::string_view name) {
  const size_t dot = name.rfind('.');
  return dot == absl::string_view::npos ? absl::string_view() : name.substr(dot + 1);
}

std::string Parts(const MemoryEstimate& e) {
  auto g = [](int64_t b) { return absl::StrFormat("%.1f", static_cast<double>(b) / (1 << 30)); };
  const bool loading_peak =
      e.weights + e.loading > e.weights + e.adapter + e.activations + e.logits;
  return absl::StrCat("weights ", g(e.weights),
                      loading_peak ? absl::StrCat(" + ", g(e.loading), " while loading") : "",
                      ", adapter ", g(e.adapter), ", activations ", g(e.activations),
                      " for batch_size ", e.batch_size, " x max_seq_len ", e.max_seq_len,
                      ", logits ", g(e.logits), ", data ", g(e.data), ", runtime ", g(e.runtime),
                      " GiB");
}

// T5's activations and logits, conservatively: every encoder and decoder block is recorded
// (an adapter in the encoder needs the decoder's cross-attention gradients, one in the decoder
// needs its self-attention's), each with its inputs, attention probabilities (and the cross
// attention's in the decoder) and feed-forward; the encoder over max_seq_len tokens, the decoder
// over max_target_len; the loss over the targets.
void EstimateT5(const v1::JobSpec& spec, const SpecOnModel& resolved, MemoryEstimate* e) {
  const model::ModelConfig& c = resolved.config;
  const double b = std::max<int32_t>(spec.batch_size(), 1);
  const double t = std::max<int32_t>(spec.max_seq_len(), 1);
  const double u = std::max<int32_t>(spec.max_target_len(), 1);
  const double hidden = static_cast<double>(c.hidden_size);
  const double inner = static_cast<double>(c.num_attention_heads * c.head_dim);
  const double heads = static_cast<double>(c.num_attention_heads);
  const double ff = static_cast<double>(c.intermediate_size) * (c.gated_feed_forward ? 3 : 2);
  const double vocab = static_cast<double>(c.vocab_size);
  auto attention = [&](double queries, double keys) {
    return b * (queries * (2 * hidden + 2 * inner) + keys * 2 * inner) +
           2 * b * heads * queries * keys;
  };
  const double encoder_block = attention(t, t) + b * t * (2 * hidden + ff);
  const double decoder_block = attention(u, u) + attention(u, t) + b * u * (2 * hidden + ff);
  double saved = static_cast<double>(c.num_hidden_layers) * encoder_block +
                 static_cast<double>(c.num_decoder_layers) * decoder_block;
  for (const auto& m : resolved.adapted) {
    const bool decoder = absl::StartsWith(m.name, "decoder.") || m.name == "lm_head";
    saved += AdapterActivations(spec, m, b * (decoder ? u : t));
  }
  e->activations = Saturated(saved * kFloatBytes);
  const double targets = b * u;
  const double rows =
      std::min(targets, std::max(kLossChunkMinRows, kLossChunkBytes / (vocab * kFloatBytes)));
  e->logits = Saturated((rows * vocab + 2 * targets * hidden) * kFloatBytes);
}

}  // namespace

std::string GiB(int64_t bytes) {
  return absl::StrFormat("%.1f GiB", static_cast<double>(bytes) / (int64_t{1} << 30));
}

int64_t MemoryEstimate::total() const {
  const int64_t load = weights + loading;
  const int64_t train = weights + adapter + activations + logits;
  return std::max(load, train) + data + runtime;
}

std::string MemoryEstimate::Summary() const {
  return absl::StrCat(GiB(total()), " (", Parts(*this), ")");
}

MemoryEstimate EstimatePeakMemory(const v1::JobSpec& spec, const SpecOnModel& resolved,
                                  int64_t dataset_bytes) {
  const model::ModelConfig& c = resolved.config;
  const double b = std::max<int32_t>(spec.batch_size(), 1);
  const double t = std::max<int32_t>(spec.max_seq_len(), 1);
  const double tokens = b * t;
  const double hidden = static_cast<double>(c.hidden_size);
  const double q = static_cast<double>(c.num_attention_heads * c.head_dim);
  const double kv = static_cast<double>(c.num_key_value_heads * c.head_dim);
  const double inter = static_cast<double>(c.intermediate_size);
  const double heads = static_cast<double>(c.num_attention_heads);
  const double vocab = static_cast<double>(c.vocab_size);
  const double params = static_cast<double>(c.NumParameters());

  MemoryEstimate e;
  e.batch_size = spec.batch_size();
  e.max_seq_len = spec.max_seq_len();
  e.weights = Saturated(params * kFloatBytes);
  const bool half = c.torch_dtype == "bfloat16" || c.torch_dtype == "float16";
  e.loading = Saturated(params * (half ? 2 : 4));

  // Adapter: parameters, gradients and two AdamW moments, the copy AdamW makes into its flat
  // buffers, and the importance EMAs of the adaptive methods.
  double trainable = 0;
  for (const auto& m : resolved.adapted) trainable += AdapterParameters(spec, m);
  if (c.IsRoberta()) {
    // RoBERTa's classifier: dense (hidden x hidden) and out_proj, with biases, all trained.
    trainable += (hidden + 1) * (hidden + static_cast<double>(c.num_labels));
  } else if (c.IsDebertaV2()) {
    // DeBERTa's classifier (hidden -> num_labels, with bias); its pooler stays frozen, as PEFT's
    // modules_to_save ["classifier"] leaves it.
    trainable += (hidden + 1) * static_cast<double>(c.num_labels);
  } else if (c.sequence_classification) {
    trainable += hidden * static_cast<double>(c.num_labels);
  }
  const bool emas = spec.method() == v1::ADALORA || spec.method() == v1::ADADHP;
  e.adapter = Saturated(trainable * kFloatBytes * (4 + 1 + (emas ? 2 : 0)));

  if (c.IsT5()) {
    EstimateT5(spec, resolved, &e);
    e.data =
        Saturated(static_cast<double>(std::max<int64_t>(dataset_bytes, 0)) * kDataBytesPerFileByte);
    e.runtime = kRuntimeOverheadBytes;
    return e;
  }
  // Activations of the decoder layers autograd records: from the first adapted layer up (a layer
  // below it has no input or parameter that needs a gradient).
  std::map<int64_t, std::vector<const model::LinearModule*>> by_layer;
  int64_t first = c.num_hidden_layers;
  for (const auto& m : resolved.adapted) {
    const int64_t layer = LayerIndexOf(m.name);
    if (layer < 0) continue;
    by_layer[layer].push_back(&m);
    first = std::min(first, layer);
  }
  const double probs = b * heads * t * t;
  double layer_base = tokens * (2 * hidden + q + 2 * kv + 3 * inter) + probs;
  if (c.IsDebertaV2() && c.relative_attention) {
    // Disentangled attention: the relative embeddings through query_proj and key_proj, the c2p
    // and p2c scores against every relative position, and both gathered to (B, heads, T, T).
    const double span = static_cast<double>(model::DebertaV2RelEmbeddingRows(c));
    layer_base += 2 * span * hidden + 2 * b * heads * t * span + 2 * probs;
  }
  double saved = 0, largest_layer = layer_base;
  for (int64_t layer = first; layer < c.num_hidden_layers; ++layer) {
    double n = layer_base;
    bool qkv = false, o = false, gate_up = false, down = false;
    for (const model::LinearModule* m : by_layer[layer]) {
      const absl::string_view p = ProjectionOf(m->name);
      // GPT-2: c_attn is q, k and v fused, attn.c_proj the output, c_fc the up projection and
      // mlp.c_proj the down projection.
      const bool mlp = absl::StrContains(m->name, ".mlp.");
      qkv = qkv || p == "q_proj" || p == "k_proj" || p == "v_proj" || p == "c_attn";
      o = o || p == "o_proj" || (p == "c_proj" && !mlp);
      gate_up = gate_up || p == "gate_proj" || p == "up_proj" || p == "c_fc";
      down = down || p == "down_proj" || (p == "c_proj" && mlp);
      // RoBERTa: query, key, value; attention.output.dense; intermediate.dense; output.dense.
      const bool attention_dense = absl::StrContains(m->name, ".attention.output.");
      qkv = qkv || p == "query" || p == "key" || p == "value";
      // DeBERTa: query_proj, key_proj, value_proj; the dense layers as RoBERTa's.
      qkv = qkv || p == "query_proj" || p == "key_proj" || p == "value_proj";
      o = o || (p == "dense" && attention_dense);
      gate_up = gate_up || (p == "dense" && absl::StrContains(m->name, ".intermediate."));
      down = down || (p == "dense" && !attention_dense && absl::StrContains(m->name, ".output."));
      n += AdapterActivations(spec, *m, tokens);
    }
    // An adapted projection keeps its input (shared by q, k and v, and by gate and up).
    n += tokens * ((qkv ? hidden : 0) + (o ? q : 0) + (gate_up ? hidden : 0) + (down ? inter : 0));
    saved += n;
    largest_layer = std::max(largest_layer, n);
  }
  if (first < c.num_hidden_layers) saved += 2 * tokens * hidden;  // the final norm's input, output
  // The additive float mask with its boolean helpers lives through the forward; one layer's
  // temporaries (dP is as large as the probabilities) through its backward.
  const double mask = b * t * t * 6 + t * t;
  e.activations = Saturated((saved + std::max(mask / kFloatBytes, largest_layer)) * kFloatBytes);

  // Logits and the loss.
  double logits = 0;
  const model::LinearModule* adapted_head = nullptr;
  for (const auto& m : resolved.adapted) {
    if (m.name == "lm_head") adapted_head = &m;
  }
  if (c.sequence_classification) {
    logits = b * (hidden + 3 * static_cast<double>(c.num_labels));
  } else if (adapted_head != nullptr) {
    // F::cross_entropy over full logits: the logits, their log-softmax and its gradient.
    logits = tokens * (3 * vocab + hidden) + AdapterActivations(spec, *adapted_head, tokens);
  } else {
    const double rows =
        std::min(tokens, std::max(kLossChunkMinRows, kLossChunkBytes / (vocab * kFloatBytes)));
    logits = rows * vocab + 2 * tokens * hidden;  // the chunk, dhidden and the row selection
  }
  e.logits = Saturated(logits * kFloatBytes);
  e.data =
      Saturated(static_cast<double>(std::max<int64_t>(dataset_bytes, 0)) * kDataBytesPerFileByte);
  e.runtime = kRuntimeOverheadBytes;
  return e;
}

absl::Status CheckMemoryFits(const MemoryEstimate& estimate, int64_t available_bytes,
                             absl::string_view available_what) {
  if (estimate.total() <= available_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the job needs an estimated ", GiB(estimate.total()), " of memory at its peak (",
      Parts(estimate), "), more than ", available_what, " has: ", GiB(available_bytes),
      ". Lower batch_size (raise gradient_accumulation_steps to keep the effective batch) or "
      "max_seq_len, adapt fewer modules or use a lower rank, or use a smaller base_model"));
}

}  // namespace peftd

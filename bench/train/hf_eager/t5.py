"""transformers' eager T5 (T5LayerNorm, T5DenseActDense / T5DenseGatedActDense, T5Attention with
_relative_position_bucket and compute_bias, T5LayerSelfAttention, T5LayerCrossAttention, T5LayerFF,
T5Block, T5Stack, T5ForConditionalGeneration.forward with labels and _shift_right) in eval mode.

Two upcasts of transformers that exist for half precision are kept at the working dtype here:
T5LayerNorm's variance and the attention's softmax are taken in float32 by transformers
(`.to(torch.float32)`, `.float()`), which is the identity in float32 and would round a float64
run to float32.
"""
import math

import torch
import torch.nn.functional as F

from hf_eager.common import ACT2FN


def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
    # T5Attention._relative_position_bucket.
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


def forward(cfg, w, input_ids, attention_mask, labels, linear=None):
    """(logits (B, T_labels, vocab), mean cross-entropy over labels != -100). linear(name, x)
    replaces the bias-free Linear `name` (e.g. "encoder.block.0.layer.0.SelfAttention.q");
    default: the checkpoint's."""
    if linear is None:
        def linear(name, x):
            return F.linear(x, w[name + ".weight"])
    dtype = w["shared.weight"].dtype
    d_model, d_kv, n_heads = cfg["d_model"], cfg["d_kv"], cfg["num_heads"]
    inner = n_heads * d_kv
    eps = cfg.get("layer_norm_epsilon", 1e-6)
    num_buckets = cfg.get("relative_attention_num_buckets", 32)
    max_distance = cfg.get("relative_attention_max_distance", 128)
    proj = cfg.get("feed_forward_proj", "relu")
    act_info = proj.split("-")
    is_gated = act_info[0] == "gated"
    act = ACT2FN["gelu_new" if proj == "gated-gelu" else act_info[-1]]
    tie = cfg.get("tie_word_embeddings", True)
    min_value = torch.finfo(dtype).min

    def layer_norm(x, weight):
        # T5LayerNorm: no mean subtraction, no bias.
        variance = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(variance + eps))

    def compute_bias(p, q_len, k_len, bidirectional):
        context = torch.arange(q_len, dtype=torch.long)[:, None]
        memory = torch.arange(k_len, dtype=torch.long)[None, :]
        bucket = relative_position_bucket(memory - context, bidirectional, num_buckets, max_distance)
        values = F.embedding(bucket, w[p + "relative_attention_bias.weight"])
        return values.permute([2, 0, 1]).unsqueeze(0)

    def attention(p, x, kv, position_bias):
        bsz, q_len = x.shape[:2]
        source = x if kv is None else kv

        def shape(t):
            return t.view(bsz, -1, n_heads, d_kv).transpose(1, 2)

        q = shape(linear(p + "q", x))
        k = shape(linear(p + "k", source))
        v = shape(linear(p + "v", source))
        scores = torch.matmul(q, k.transpose(3, 2))  # no 1/sqrt(d_kv) in T5
        scores = scores + position_bias
        probs = F.softmax(scores, dim=-1).type_as(scores)
        out = torch.matmul(probs, v).transpose(1, 2).contiguous().view(bsz, q_len, inner)
        return linear(p + "o", out)

    def feed_forward(p, x):
        h = layer_norm(x, w[p + "layer_norm.weight"])
        p = p + "DenseReluDense."
        if is_gated:
            h = act(linear(p + "wi_0", h)) * linear(p + "wi_1", h)
        else:
            h = act(linear(p + "wi", h))
        return x + linear(p + "wo", h)

    def stack(name, ids, self_mask, n_layers, is_decoder, enc=None, enc_ext=None):
        hidden = F.embedding(ids, w["shared.weight"])
        seq = ids.shape[1]
        position_bias = None
        for i in range(n_layers):
            p = f"{name}.block.{i}.layer."
            if position_bias is None:
                # Only block 0 has relative_attention_bias; the bias (mask included) is shared.
                position_bias = compute_bias(p + "0.SelfAttention.", seq, seq, not is_decoder)
                position_bias = position_bias + self_mask
            x = layer_norm(hidden, w[p + "0.layer_norm.weight"])
            hidden = hidden + attention(p + "0.SelfAttention.", x, None, position_bias)
            if is_decoder:
                x = layer_norm(hidden, w[p + "1.layer_norm.weight"])
                # Cross-attention has no relative bias: zeros plus the encoder's mask.
                hidden = hidden + attention(p + "1.EncDecAttention.", x, enc, enc_ext)
            hidden = feed_forward(p + ("2." if is_decoder else "1."), hidden)
        return layer_norm(hidden, w[f"{name}.final_layer_norm.weight"])

    # Encoder: extended mask (1 - m) * min on the keys.
    enc_ext = (1.0 - attention_mask[:, None, None, :].to(dtype)) * min_value
    enc = stack("encoder", input_ids, enc_ext, cfg["num_layers"], False)
    # _shift_right: decoder_start_token_id first, -100 -> pad_token_id.
    dec_ids = labels.new_zeros(labels.shape)
    dec_ids[..., 1:] = labels[..., :-1].clone()
    dec_ids[..., 0] = cfg["decoder_start_token_id"]
    dec_ids.masked_fill_(dec_ids == -100, cfg["pad_token_id"])
    t = dec_ids.shape[1]
    causal = torch.full((t, t), min_value, dtype=dtype).triu(1)[None, None, :, :]
    n_dec = cfg.get("num_decoder_layers") or cfg["num_layers"]
    dec = stack("decoder", dec_ids, causal, n_dec, True, enc, enc_ext)
    if tie:
        dec = dec * (d_model ** -0.5)
        out = F.linear(dec, w["shared.weight"])
    else:
        out = linear("lm_head", dec)
    loss = F.cross_entropy(out.view(-1, out.size(-1)), labels.view(-1), ignore_index=-100)
    return out, loss

"""transformers' eager DeBERTa-v2/v3 (DebertaV2Embeddings, DebertaV2Encoder with get_rel_embedding /
get_attention_mask / build_relative_position / make_log_bucket_position, DisentangledSelfAttention
with share_att_key and its disentangled_attention_bias, XSoftmax, DebertaV2SelfOutput,
DebertaV2Intermediate, DebertaV2Output, ContextPooler and the classifier) in eval mode. It follows
the semantics of transformers 4.3x-4.4x's modeling_deberta_v2.py (the torch
make_log_bucket_position, whose logarithm is float32; the attention scale sqrt(head_size *
scale_factor) taken in float32 and cast to the scores' dtype; XSoftmax, which zeroes the rows of
padding queries). `w`: the checkpoint's tensors under DebertaV2ForSequenceClassification's names.

share_att_key: query_proj and key_proj also project the relative embeddings, through the same
`linear` hook as the tokens (a LoRA on them changes both, as peft's does).
"""
import torch
import torch.nn.functional as F

from hf_eager.common import ACT2FN as _ACT2FN

# ContextPooler may use tanh (pooler_hidden_act), which the other families do not.
ACT2FN = dict(_ACT2FN, tanh=torch.tanh)


def make_log_bucket_position(relative_pos, bucket_size, max_position):
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where(
        (relative_pos < mid) & (relative_pos > -mid),
        torch.tensor(mid - 1).type_as(relative_pos),
        torch.abs(relative_pos),
    )
    log_pos = (
        torch.ceil(torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1))
        + mid
    )
    bucket_pos = torch.where(abs_pos <= mid, relative_pos.type_as(log_pos), log_pos * sign)
    return bucket_pos


def build_relative_position(query_size, key_size, bucket_size=-1, max_position=-1):
    q_ids = torch.arange(0, query_size)
    k_ids = torch.arange(0, key_size)
    rel_pos_ids = q_ids[:, None] - k_ids[None, :]
    if bucket_size > 0 and max_position > 0:
        rel_pos_ids = make_log_bucket_position(rel_pos_ids, bucket_size, max_position)
    rel_pos_ids = rel_pos_ids.to(torch.long)
    rel_pos_ids = rel_pos_ids[:query_size, :]
    rel_pos_ids = rel_pos_ids.unsqueeze(0)
    return rel_pos_ids


def xsoftmax(scores, mask, dim):
    # XSoftmax's values; its zeroing out of place (transformers' in-place one sits inside an
    # autograd.Function of its own), so that the peer's backward runs: the same gradient, 0 on
    # masked pairs.
    rmask = ~(mask.to(torch.bool))
    output = scores.masked_fill(rmask, torch.tensor(torch.finfo(scores.dtype).min))
    output = torch.softmax(output, dim)
    return output.masked_fill(rmask, 0)


def forward(cfg, w, input_ids, attention_mask, linear=None):
    """(last hidden states (B, T, H), class logits (B, num_labels)). linear(name, x) replaces the
    Linear `name` (e.g. "deberta.encoder.layer.0.attention.self.query_proj"); default: the
    checkpoint's."""
    if linear is None:
        def linear(name, x):
            return F.linear(x, w[name + ".weight"], w[name + ".bias"])
    hidden_size, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg.get("layer_norm_eps", 1e-7)
    act = ACT2FN[cfg.get("hidden_act", "gelu")]
    bsz, seq = input_ids.shape

    # DebertaV2Embeddings.
    e = "deberta.embeddings."
    embeddings = F.embedding(input_ids, w[e + "word_embeddings.weight"])
    if cfg.get("position_biased_input", True):
        position_ids = torch.arange(seq)[None, :]
        embeddings = embeddings + F.embedding(position_ids, w[e + "position_embeddings.weight"])
    if cfg.get("type_vocab_size", 0) > 0:
        token_type_ids = torch.zeros_like(input_ids)
        embeddings = embeddings + F.embedding(token_type_ids, w[e + "token_type_embeddings.weight"])
    embeddings = F.layer_norm(embeddings, (hidden_size,), w[e + "LayerNorm.weight"],
                              w[e + "LayerNorm.bias"], eps)
    embeddings = embeddings * attention_mask.unsqueeze(2).to(embeddings.dtype)

    # DebertaV2Encoder.
    relative_attention = cfg.get("relative_attention", False)
    max_relative_positions = cfg.get("max_relative_positions", -1)
    if max_relative_positions < 1:
        max_relative_positions = cfg["max_position_embeddings"]
    position_buckets = cfg.get("position_buckets", -1)
    pos_ebd_size = position_buckets if position_buckets > 0 else max_relative_positions
    norm_rel_ebd = [x.strip() for x in cfg.get("norm_rel_ebd", "none").lower().split("|")]
    pos_att_type = cfg.get("pos_att_type") or []
    if isinstance(pos_att_type, str):
        pos_att_type = [x.strip() for x in pos_att_type.lower().split("|")]
    assert cfg.get("share_att_key", False)

    rel_embeddings = None
    if relative_attention:
        rel_embeddings = w["deberta.encoder.rel_embeddings.weight"]
        if "layer_norm" in norm_rel_ebd:
            rel_embeddings = F.layer_norm(rel_embeddings, (hidden_size,),
                                          w["deberta.encoder.LayerNorm.weight"],
                                          w["deberta.encoder.LayerNorm.bias"], eps)
    extended = attention_mask.unsqueeze(1).unsqueeze(2)
    pair_mask = extended * extended.squeeze(-2).unsqueeze(-1)  # (B, 1, T, T)
    relative_pos = None
    if relative_attention:
        relative_pos = build_relative_position(seq, seq, position_buckets, max_relative_positions)

    def transpose_for_scores(x):
        new_x_shape = x.size()[:-1] + (n_head, -1)
        x = x.view(new_x_shape)
        return x.permute(0, 2, 1, 3).contiguous().view(-1, x.size(1), x.size(-1))

    hidden = embeddings
    for i in range(cfg["num_hidden_layers"]):
        p = f"deberta.encoder.layer.{i}."
        s = p + "attention.self."
        query_layer = transpose_for_scores(linear(s + "query_proj", hidden))
        key_layer = transpose_for_scores(linear(s + "key_proj", hidden))
        value_layer = transpose_for_scores(linear(s + "value_proj", hidden))
        scale_factor = 1
        if "c2p" in pos_att_type:
            scale_factor += 1
        if "p2c" in pos_att_type:
            scale_factor += 1
        scale = torch.sqrt(torch.tensor(query_layer.size(-1), dtype=torch.float) * scale_factor)
        attention_scores = torch.bmm(query_layer, key_layer.transpose(-1, -2) / scale.to(dtype=query_layer.dtype))
        if relative_attention:
            # disentangled_attention_bias with share_att_key.
            rel_pos = relative_pos.unsqueeze(1)  # (1, 1, q, k)
            att_span = pos_ebd_size
            rel = rel_embeddings[0:att_span * 2, :].unsqueeze(0)
            pos_query_layer = transpose_for_scores(linear(s + "query_proj", rel)).repeat(
                query_layer.size(0) // n_head, 1, 1)
            pos_key_layer = transpose_for_scores(linear(s + "key_proj", rel)).repeat(
                query_layer.size(0) // n_head, 1, 1)
            score = 0
            if "c2p" in pos_att_type:
                scale2 = torch.sqrt(torch.tensor(pos_key_layer.size(-1), dtype=torch.float) * scale_factor)
                c2p_att = torch.bmm(query_layer, pos_key_layer.transpose(-1, -2))
                c2p_pos = torch.clamp(rel_pos + att_span, 0, att_span * 2 - 1)
                c2p_att = torch.gather(
                    c2p_att, dim=-1,
                    index=c2p_pos.squeeze(0).expand([query_layer.size(0), query_layer.size(1), rel_pos.size(-1)]))
                score += c2p_att / scale2.to(dtype=c2p_att.dtype)
            if "p2c" in pos_att_type:
                scale2 = torch.sqrt(torch.tensor(pos_query_layer.size(-1), dtype=torch.float) * scale_factor)
                r_pos = rel_pos
                p2c_pos = torch.clamp(-r_pos + att_span, 0, att_span * 2 - 1)
                p2c_att = torch.bmm(key_layer, pos_query_layer.transpose(-1, -2))
                p2c_att = torch.gather(
                    p2c_att, dim=-1,
                    index=p2c_pos.squeeze(0).expand([query_layer.size(0), key_layer.size(-2), key_layer.size(-2)]),
                ).transpose(-1, -2)
                score += p2c_att / scale2.to(dtype=p2c_att.dtype)
            attention_scores = attention_scores + score
        attention_scores = attention_scores.view(-1, n_head, attention_scores.size(-2), attention_scores.size(-1))
        attention_probs = xsoftmax(attention_scores, pair_mask, -1)
        context = torch.bmm(attention_probs.view(-1, attention_probs.size(-2), attention_probs.size(-1)),
                            value_layer)
        context = context.view(-1, n_head, context.size(-2), context.size(-1)).permute(0, 2, 1, 3).contiguous()
        context = context.view(context.size()[:-2] + (-1,))
        # DebertaV2SelfOutput: LayerNorm(dense(context) + input).
        attn = F.layer_norm(linear(p + "attention.output.dense", context) + hidden, (hidden_size,),
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
        inner = act(linear(p + "intermediate.dense", attn))
        hidden = F.layer_norm(linear(p + "output.dense", inner) + attn, (hidden_size,),
                              w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    # ContextPooler on the first token ([CLS]), then the classifier.
    pooled = ACT2FN[cfg.get("pooler_hidden_act", "gelu")](linear("pooler.dense", hidden[:, 0]))
    return hidden, linear("classifier", pooled)

#!/usr/bin/env python3
"""Test-only reference for DeBERTa-v2/v3: a transcription of the math of Hugging Face
transformers' eager DebertaV2ForSequenceClassification (DebertaV2Embeddings, DebertaV2Encoder with
get_rel_embedding / get_attention_mask / build_relative_position / make_log_bucket_position,
DisentangledSelfAttention with share_att_key and its disentangled_attention_bias, XSoftmax,
DebertaV2SelfOutput, DebertaV2Intermediate, DebertaV2Output, ContextPooler and the classifier) in
eval mode on plain PyTorch, since transformers is not installed here. It follows the semantics of
transformers 4.3x-4.4x's modeling_deberta_v2.py (the torch make_log_bucket_position, whose
logarithm is float32; the attention scale sqrt(head_size * scale_factor) taken in float32 and cast
to the scores' dtype; XSoftmax, which zeroes the rows of padding queries). Used by
deberta_reference_test.cc.

Usage: deberta_reference.py MODEL_DIR INPUT.json OUT.bin DTYPE
INPUT.json: {"input_ids": [[...]], "attention_mask": [[...]]}; DTYPE float32 or float64.
OUT.bin: the encoder's last hidden states (B, T, hidden), then the classifier's logits
(B, num_labels), as little-endian float64.
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[begin:end]), dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACT2FN = {"gelu": F.gelu, "gelu_new": gelu_new, "gelu_pytorch_tanh": gelu_new, "tanh": torch.tanh,
          "relu": F.relu}


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
    rmask = ~(mask.to(torch.bool))
    output = scores.masked_fill(rmask, torch.tensor(torch.finfo(scores.dtype).min))
    output = torch.softmax(output, dim)
    output.masked_fill_(rmask, 0)
    return output


def main():
    model_dir, input_path, out_path, dtype_name = sys.argv[1:5]
    dtype = {"float32": torch.float32, "float64": torch.float64}[dtype_name]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = {k: v.to(dtype)
         for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    inputs = json.load(open(input_path))
    input_ids = torch.tensor(inputs["input_ids"], dtype=torch.long)
    attention_mask = torch.tensor(inputs["attention_mask"], dtype=torch.long)
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

    def lin(x, name):
        return F.linear(x, w[name + ".weight"], w[name + ".bias"])

    def transpose_for_scores(x):
        new_x_shape = x.size()[:-1] + (n_head, -1)
        x = x.view(new_x_shape)
        return x.permute(0, 2, 1, 3).contiguous().view(-1, x.size(1), x.size(-1))

    hidden = embeddings
    for i in range(cfg["num_hidden_layers"]):
        p = f"deberta.encoder.layer.{i}."
        s = p + "attention.self."
        query_layer = transpose_for_scores(lin(hidden, s + "query_proj"))
        key_layer = transpose_for_scores(lin(hidden, s + "key_proj"))
        value_layer = transpose_for_scores(lin(hidden, s + "value_proj"))
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
            pos_query_layer = transpose_for_scores(lin(rel, s + "query_proj")).repeat(
                query_layer.size(0) // n_head, 1, 1)
            pos_key_layer = transpose_for_scores(lin(rel, s + "key_proj")).repeat(
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
        attn = F.layer_norm(lin(context, p + "attention.output.dense") + hidden, (hidden_size,),
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
        inner = act(lin(attn, p + "intermediate.dense"))
        hidden = F.layer_norm(lin(inner, p + "output.dense") + attn, (hidden_size,),
                              w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    # ContextPooler on the first token, then the classifier.
    pooled = ACT2FN[cfg.get("pooler_hidden_act", "gelu")](lin(hidden[:, 0], "pooler.dense"))
    logits = lin(pooled, "classifier")
    with open(out_path, "wb") as f:
        f.write(hidden.to(torch.float64).contiguous().numpy().tobytes())
        f.write(logits.to(torch.float64).contiguous().numpy().tobytes())


if __name__ == "__main__":
    main()

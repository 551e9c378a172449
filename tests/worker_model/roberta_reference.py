#!/usr/bin/env python3
"""Test-only reference for RoBERTa: a transcription of the math of Hugging Face transformers'
eager RobertaForSequenceClassification (RobertaEmbeddings with create_position_ids_from_input_ids,
RobertaSelfAttention, RobertaSelfOutput, RobertaIntermediate, RobertaOutput,
RobertaClassificationHead) in eval mode on plain PyTorch, since transformers is not installed
here. Used by roberta_reference_test.cc.

Usage: roberta_reference.py MODEL_DIR INPUT.json OUT.bin DTYPE
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
    head_dim = hidden_size // n_head
    eps = cfg["layer_norm_eps"]
    act = gelu_new if cfg["hidden_act"] in ("gelu_new", "gelu_pytorch_tanh") else F.gelu
    padding_idx = cfg["pad_token_id"]
    bsz, seq = input_ids.shape

    # RobertaEmbeddings: create_position_ids_from_input_ids, token_type_ids all 0 (the buffer).
    m = input_ids.ne(padding_idx).int()
    position_ids = (torch.cumsum(m, dim=1).type_as(m) * m).long() + padding_idx
    token_type_ids = torch.zeros_like(input_ids)
    e = "roberta.embeddings."
    hidden = F.embedding(input_ids, w[e + "word_embeddings.weight"])
    hidden = hidden + F.embedding(token_type_ids, w[e + "token_type_embeddings.weight"])
    hidden = hidden + F.embedding(position_ids, w[e + "position_embeddings.weight"])
    hidden = F.layer_norm(hidden, (hidden_size,), w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"],
                          eps)
    # get_extended_attention_mask: (1 - mask) * finfo(dtype).min on (B, 1, 1, T).
    extended = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def lin(x, name):
        return F.linear(x, w[name + ".weight"], w[name + ".bias"])

    def heads(t):
        return t.view(bsz, seq, n_head, head_dim).permute(0, 2, 1, 3)

    for i in range(cfg["num_hidden_layers"]):
        p = f"roberta.encoder.layer.{i}."
        q = heads(lin(hidden, p + "attention.self.query"))
        k = heads(lin(hidden, p + "attention.self.key"))
        v = heads(lin(hidden, p + "attention.self.value"))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim)
        scores = scores + extended
        probs = F.softmax(scores, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(bsz, seq, hidden_size)
        # RobertaSelfOutput: LayerNorm(dense(context) + input).
        attn = F.layer_norm(lin(context, p + "attention.output.dense") + hidden, (hidden_size,),
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
        inner = act(lin(attn, p + "intermediate.dense"))
        # RobertaOutput: LayerNorm(dense(inner) + attention output).
        hidden = F.layer_norm(lin(inner, p + "output.dense") + attn, (hidden_size,),
                              w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    # RobertaClassificationHead on <s> (the first token).
    x = hidden[:, 0, :]
    x = torch.tanh(lin(x, "classifier.dense"))
    logits = lin(x, "classifier.out_proj")
    with open(out_path, "wb") as f:
        f.write(hidden.to(torch.float64).contiguous().numpy().tobytes())
        f.write(logits.to(torch.float64).contiguous().numpy().tobytes())


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Test-only reference for GPT-2 logits: a transcription of the math of Hugging Face transformers'
eager GPT-2 (GPT2Attention, GPT2MLP, GPT2Block, GPT2Model, GPT2LMHeadModel forward in eval mode)
on plain PyTorch, since transformers is not installed here. Used by gpt2_reference_test.cc.

Usage: gpt2_reference.py MODEL_DIR INPUT.json OUT.bin DTYPE
INPUT.json: {"input_ids": [[...]], "attention_mask": [[...]]}; DTYPE float32 or float64.
OUT.bin: the logits (B, T, vocab) as little-endian float64.
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
    # transformers' NewGELUActivation.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def conv1d(x, weight, bias):
    # transformers' Conv1D: weight stored (in, out); y = x @ weight + bias via addmm.
    size_out = x.size()[:-1] + (weight.size(-1),)
    return torch.addmm(bias, x.view(-1, x.size(-1)), weight).view(size_out)


def main():
    model_dir, input_path, out_path, dtype_name = sys.argv[1:5]
    dtype = {"float32": torch.float32, "float64": torch.float64}[dtype_name]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = {k.removeprefix("transformer."): v.to(dtype)
         for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    inputs = json.load(open(input_path))
    input_ids = torch.tensor(inputs["input_ids"], dtype=torch.long)
    attention_mask = torch.tensor(inputs["attention_mask"], dtype=torch.long)
    n_embd, n_head = cfg["n_embd"], cfg["n_head"]
    head_dim = n_embd // n_head
    eps = cfg["layer_norm_epsilon"]
    act = gelu_new if cfg.get("activation_function", "gelu_new") in ("gelu_new", "gelu_pytorch_tanh") \
        else F.gelu
    bsz, seq = input_ids.shape
    min_value = torch.finfo(dtype).min

    # GPT2Model: position_ids default to arange; the 2-D mask becomes additive (1 - m) * min.
    position_ids = torch.arange(seq, dtype=torch.long).unsqueeze(0)
    extended = (1.0 - attention_mask[:, None, None, :].to(dtype)) * min_value
    causal = torch.tril(torch.ones((seq, seq), dtype=torch.bool)).view(1, 1, seq, seq)
    hidden = F.embedding(input_ids, w["wte.weight"]) + F.embedding(position_ids, w["wpe.weight"])

    def split_heads(t):
        return t.view(bsz, seq, n_head, head_dim).permute(0, 2, 1, 3)

    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        # GPT2Block: pre-LN attention with residual, then pre-LN MLP with residual.
        residual = hidden
        x = F.layer_norm(hidden, (n_embd,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = conv1d(x, w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"])
        q, k, v = qkv.split(n_embd, dim=2)
        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        # GPT2Attention._attn (eager): scaled scores, causal mask to the dtype's min, additive
        # padding mask, softmax, weighted values.
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores / torch.full([], v.size(-1) ** 0.5, dtype=scores.dtype)
        scores = torch.where(causal, scores, torch.full([], min_value, dtype=scores.dtype))
        scores = scores + extended
        probs = F.softmax(scores, dim=-1).type(v.dtype)
        attn = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(bsz, seq, n_embd)
        attn = conv1d(attn, w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"])
        hidden = attn + residual
        residual = hidden
        x = F.layer_norm(hidden, (n_embd,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = act(conv1d(x, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"]))
        x = conv1d(x, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"])
        hidden = residual + x
    hidden = F.layer_norm(hidden, (n_embd,), w["ln_f.weight"], w["ln_f.bias"], eps)
    # GPT2LMHeadModel: lm_head tied to wte unless the checkpoint has its own.
    head = w.get("lm_head.weight", w["wte.weight"])
    logits = F.linear(hidden, head)
    with open(out_path, "wb") as f:
        f.write(logits.to(torch.float64).contiguous().numpy().tobytes())


if __name__ == "__main__":
    main()

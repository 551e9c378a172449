#!/usr/bin/python3
"""PyTorch eager + HF-PEFT-style LoRA training baseline, for bench/train's comparison.

The machine has no PyPI, so neither `transformers` nor `peft` can be installed: this file mirrors,
line for line, what they execute for a LlamaForCausalLM with eager attention (torch 1.13 has no
scaled_dot_product_attention, so transformers would pick "eager" too) wrapped by peft's
LoraModel (lora.Linear: result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling), trained
the way transformers.Trainer does (AdamW, clip_grad_norm_, linear schedule, zero_grad(set_to_none)).

Prints one JSON line: {"impl":"pytorch_eager_peft", "config":..., "method":"lora", "tokens_per_s":...}.
With --count-ops it also counts what the last warmup step executes (ATen ops, autograd nodes, CPU
allocations) with torch.autograd.profiler, by the rules of bench/train/op_counts.cc.
"""
import argparse
import json
import math
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    # Mirrors worker/model/tiny_model (the default embedded model) and the ~100M bench config.
    "tiny": dict(hidden=64, inter=176, layers=4, heads=4, kv_heads=2, vocab=512),
    "100m": dict(hidden=768, inter=2048, layers=12, heads=12, kv_heads=4, vocab=32000),
}


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim, base=10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class LoraLinear(nn.Module):
    """peft.tuners.lora.layer.Linear, one adapter, dropout 0 (nn.Identity)."""

    def __init__(self, base_layer, r, alpha):
        super().__init__()
        self.base_layer = base_layer
        self.lora_dropout = nn.Identity()
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        result = self.base_layer(x)
        torch_result_dtype = result.dtype
        x = x.to(self.lora_A.weight.dtype)
        result = result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        return result.to(torch_result_dtype)


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.head_dim = c["hidden"] // c["heads"]
        self.num_heads = c["heads"]
        self.num_key_value_groups = c["heads"] // c["kv_heads"]
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(c["hidden"], c["heads"] * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c["hidden"], c["kv_heads"] * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c["hidden"], c["kv_heads"] * self.head_dim, bias=False)
        self.o_proj = nn.Linear(c["heads"] * self.head_dim, c["hidden"], bias=False)

    def forward(self, hidden_states, position_embeddings, attention_mask):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        # eager_attention_forward
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) * self.scaling
        attn_weights = attn_weights + attention_mask
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output)


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["hidden"], c["inter"], bias=False)
        self.up_proj = nn.Linear(c["hidden"], c["inter"], bias=False)
        self.down_proj = nn.Linear(c["inter"], c["hidden"], bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c["hidden"])
        self.post_attention_layernorm = LlamaRMSNorm(c["hidden"])

    def forward(self, hidden_states, position_embeddings, attention_mask):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(hidden_states, position_embeddings, attention_mask)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList([LlamaDecoderLayer(c) for _ in range(c["layers"])])
        self.norm = LlamaRMSNorm(c["hidden"])
        self.rotary_emb = LlamaRotaryEmbedding(c["hidden"] // c["heads"])
        self.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)

    def forward(self, input_ids, attention_mask, labels):
        inputs_embeds = self.embed_tokens(input_ids)
        b, t = input_ids.shape
        position_ids = torch.arange(t).unsqueeze(0).expand(b, -1)
        # transformers' _prepare_4d_causal_attention_mask_with_cache_position
        min_dtype = torch.finfo(inputs_embeds.dtype).min
        causal_mask = torch.full((t, t), fill_value=min_dtype, dtype=inputs_embeds.dtype)
        causal_mask = torch.triu(causal_mask, diagonal=1)
        causal_mask = causal_mask[None, None, :, :].expand(b, 1, -1, -1).clone()
        padding_mask = causal_mask + attention_mask[:, None, None, :].to(causal_mask.dtype)
        causal_mask = causal_mask.masked_fill(padding_mask == 0, min_dtype)
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, causal_mask)
        hidden_states = self.norm(hidden_states)
        logits = self.lm_head(hidden_states).float()
        shift_logits = logits[..., :-1, :].contiguous().view(-1, logits.shape[-1])
        shift_labels = labels[..., 1:].contiguous().view(-1)
        return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="mean")


def blas_core():
    """OpenBLAS's kernel set (the same as bench_train's: both run in one environment), or ""."""
    try:
        import ctypes
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return ""


def count_ops(prof):
    """The totals bench/train/op_counts.cc reports, from the profiler's raw events."""
    engine = "autograd::engine::evaluate_function"
    ops = nodes = allocations = allocated = 0
    op_names, node_names = {}, {}
    for e in prof.kineto_results.events():
        name = e.name()
        if name == "[memory]":
            if e.nbytes() > 0:
                allocations += 1
                allocated += e.nbytes()
        elif e.scope() == 1:  # at::RecordScope::BACKWARD_FUNCTION
            nodes += 1
            node_names[name] = node_names.get(name, 0) + 1
        elif e.scope() == 0 and not name.startswith(engine):  # at::RecordScope::FUNCTION
            ops += 1
            op_names[name] = op_names.get(name, 0) + 1

    def top(d):
        return [[k, v] for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:25]]

    return {"aten_ops": ops, "autograd_nodes": nodes, "allocations": allocations,
            "allocated_bytes": allocated, "top_ops": top(op_names), "top_nodes": top(node_names)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--count-ops", action="store_true",
                    help="count the ops, nodes and allocations of the last warmup step")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    c = CONFIGS[a.config]
    model = LlamaForCausalLM(c)
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.layers:  # peft target_modules=["q_proj", "v_proj"]
        layer.self_attn.q_proj = LoraLinear(layer.self_attn.q_proj, a.rank, 2 * a.rank)
        layer.self_attn.v_proj = LoraLinear(layer.self_attn.v_proj, a.rank, 2 * a.rank)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / (a.steps + a.warmup)))
    ids = torch.randint(0, c["vocab"], (a.batch, a.seq))
    mask = torch.ones_like(ids)
    times, cpu_times, counts = [], [], None
    counted = max(a.warmup, 1) - 1  # the last warmup step, as bench_train counts its own
    for step in range(a.warmup + a.steps):
        prof = None
        if a.count_ops and step == counted:
            prof = torch.autograd.profiler.profile(profile_memory=True)
            prof.__enter__()
        t0 = time.perf_counter()
        c0 = time.process_time()  # user + system CPU of every thread of the process
        loss = model(ids, mask, ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        if prof is not None:
            prof.__exit__(None, None, None)
            counts = count_ops(prof)
    step_s = sorted(times)[len(times) // 2]  # the median, as bench_train
    cpu_s = sorted(cpu_times)[len(cpu_times) // 2]
    print(json.dumps({
        "impl": "pytorch_eager_peft", "config": a.config, "method": "lora", "batch": a.batch,
        "seq": a.seq, "threads": a.threads, "step_s": step_s,
        "tokens_per_s": a.batch * a.seq / step_s,
        "cpu_s": cpu_s, "tokens_per_cpu_s": a.batch * a.seq / cpu_s, "blas_core": blas_core(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        **({"op_counts": counts} if counts is not None else {}),
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch eager + HF-PEFT-style LoRA training baseline for GPT-2, RoBERTa, DeBERTa-v2/v3 and T5,
for `bench_train --arch gpt2|roberta|deberta-v2|t5`.

The model is transformers' eager code for the family (the transcriptions in bench/train/hf_eager,
which the fidelity tests check against peftd's logits) on the tiny checkpoint bench_train writes
(MODEL_DIR), with peft's LoRA (lora.Linear: result = base_layer(x) + lora_B(lora_A(dropout(x))) *
scaling, dropout 0) on the family's default targets: GPT-2 `c_attn` (a Conv1D: peft sets
fan_in_fan_out and the adapter's forward is the same), RoBERTa `query`, `value` and DeBERTa
`query_proj`, `value_proj` with the classifier trained whole (modules_to_save; DeBERTa's
query_proj LoRA also projects the relative embeddings, share_att_key, as in peft), T5 `q`, `v`. Trained the way transformers.Trainer
does: AdamW, clip_grad_norm_(1.0), linear schedule, zero_grad(set_to_none=True).

Batches: GPT-2 a causal LM on random ids (labels = ids); RoBERTa and DeBERTa SEQ_CLS, <s> / [CLS]
(bos_token_id) then random ids, a random label per row; T5 random input ids and random targets of half the length (labels), the
tokens of a step counting both.

Prints one JSON line: {"impl": "pytorch_eager_peft", "arch": ..., "method": "lora",
"tokens_per_s": ..., ...}, the same keys as baseline_pytorch_peft.py.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baseline_pytorch_peft import blas_core  # noqa: E402
from hf_eager import common, deberta_v2, gpt2, roberta, t5  # noqa: E402

TARGETS = {"gpt2": ("attn.c_attn",), "roberta": ("attention.self.query", "attention.self.value"),
           "deberta-v2": ("attention.self.query_proj", "attention.self.value_proj"),
           "t5": ("SelfAttention.q", "SelfAttention.v", "EncDecAttention.q", "EncDecAttention.v")}
CLASSIFIERS = {"roberta": roberta, "deberta-v2": deberta_v2}


class Lora(nn.Module):
    """peft.tuners.lora.layer.Linear's adapter branch, one adapter, dropout 0 (nn.Identity)."""

    def __init__(self, in_features, out_features, r, alpha):
        super().__init__()
        self.lora_dropout = nn.Identity()
        self.lora_A = nn.Linear(in_features, r, bias=False)
        self.lora_B = nn.Linear(r, out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, result, x):
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling


def targeted(arch, name):
    return any(name.endswith(t) for t in TARGETS[arch])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True, choices=sorted(TARGETS))
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    w = common.read_safetensors(os.path.join(a.model_dir, "model.safetensors"))
    w = {k: v.float() for k, v in (gpt2.strip_prefix(w) if a.arch == "gpt2" else w).items()}
    # The names of the family's linears, from the checkpoint: weight keys whose layer is targeted.
    loras = nn.ModuleDict()
    for key, t in w.items():
        name = key[: -len(".weight")]
        if key.endswith(".weight") and targeted(a.arch, name):
            # GPT-2's Conv1D stores (in, out); the adapter is (r, in) / (out, r) either way.
            fan_in, fan_out = (t.shape[0], t.shape[1]) if a.arch == "gpt2" else (t.shape[1], t.shape[0])
            loras[name.replace(".", "_")] = Lora(fan_in, fan_out, a.rank, 2 * a.rank)
    params = list(loras.parameters())
    head = {}
    if a.arch in CLASSIFIERS:  # modules_to_save: the classifier trains whole
        for key in list(w):
            if key.startswith("classifier."):
                w[key] = nn.Parameter(w[key].clone())
                head[key] = w[key]
        params += list(head.values())

    def base(name, x):
        if a.arch == "gpt2":
            return gpt2.conv1d(x, w[name + ".weight"], w[name + ".bias"])
        return F.linear(x, w[name + ".weight"], w.get(name + ".bias"))

    def linear(name, x):
        result = base(name, x)
        lora = loras[name.replace(".", "_")] if targeted(a.arch, name) else None
        return result if lora is None else lora(result, x)

    vocab = cfg["vocab_size"]
    ids = torch.randint(3, vocab, (a.batch, a.seq))
    mask = torch.ones_like(ids)
    tokens = a.batch * a.seq
    if a.arch == "gpt2":
        def loss_fn():
            # GPT2LMHeadModel: shift, mean cross-entropy.
            logits = gpt2.logits(cfg, w, ids, mask, linear)
            return F.cross_entropy(logits[..., :-1, :].reshape(-1, vocab), ids[..., 1:].reshape(-1))
    elif a.arch in CLASSIFIERS:
        ids[:, 0] = cfg.get("bos_token_id", 0)
        labels = torch.randint(0, cfg.get("num_labels", len(cfg.get("id2label", {})) or 2), (a.batch,))
        family = CLASSIFIERS[a.arch]

        def loss_fn():
            # Roberta/DebertaV2ForSequenceClassification, single_label_classification.
            _, logits = family.forward(cfg, w, ids, mask, linear)
            return F.cross_entropy(logits, labels)
    else:
        labels = torch.randint(3, vocab, (a.batch, max(a.seq // 2, 1)))
        tokens += labels.numel()

        def loss_fn():
            return t5.forward(cfg, w, ids, mask, labels, linear)[1]

    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / (a.steps + a.warmup)))
    times, cpu_times = [], []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        c0 = time.process_time()  # user + system CPU of every thread of the process
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    step_s = sorted(times)[len(times) // 2]  # the median, as bench_train
    cpu_s = sorted(cpu_times)[len(cpu_times) // 2]
    print(json.dumps({
        "impl": "pytorch_eager_peft", "arch": a.arch, "method": "lora", "batch": a.batch,
        "seq": a.seq, "tokens_per_step": tokens, "threads": a.threads, "step_s": step_s,
        "tokens_per_s": tokens / step_s, "cpu_s": cpu_s, "tokens_per_cpu_s": tokens / cpu_s,
        "blas_core": blas_core(), "final_loss": loss.item(),
        "trainable_parameters": sum(p.numel() for p in params),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The peer of bench_epoch: one epoch the way transformers.Trainer runs it by default.

The model, LoRA and optimizer are baseline_pytorch_peft.py's (HF transformers' LlamaForCausalLM
with eager attention and peft's lora.Linear on q_proj and v_proj, mirrored because this machine
has no PyPI). The data path is Trainer's defaults for a tokenized prompt/completion dataset:
records in the order given (bench_epoch writes them already shuffled with its seed; Trainer's
RandomSampler would shuffle them once), batches of --batch records padded to the longest record
of the batch (DataCollatorForSeq2Seq: input_ids with the pad id, attention_mask 0, labels -100),
the full lm_head over every position, cross-entropy averaged over the labelled positions.

Prints one JSON line: {"impl", "seconds", "cpu_s" (user + system CPU seconds of the epoch, every
thread), "steps", "tokens", "tokens_per_s", "padded_tokens", "final_loss", "peak_rss_mb"}.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baseline_pytorch_peft import CONFIGS, LlamaForCausalLM, LoraLinear  # noqa: E402


def collate(records, pad_id=0):
    longest = max(len(r["input_ids"]) for r in records)
    ids = torch.full((len(records), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(records), longest), dtype=torch.long)
    labels = torch.full((len(records), longest), -100, dtype=torch.long)
    for i, r in enumerate(records):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(r["labels"])
    return ids, mask, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    ap.add_argument("--records", required=True, help="JSONL of {input_ids, labels}, epoch order")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    with open(a.records) as f:
        records = [json.loads(line) for line in f if line.strip()]
    c = CONFIGS[a.config]
    model = LlamaForCausalLM(c)
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.layers:  # peft target_modules=["q_proj", "v_proj"]
        layer.self_attn.q_proj = LoraLinear(layer.self_attn.q_proj, a.rank, 2 * a.rank)
        layer.self_attn.v_proj = LoraLinear(layer.self_attn.v_proj, a.rank, 2 * a.rank)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = (len(records) + a.batch - 1) // a.batch
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    tokens = sum(len(r["input_ids"]) for r in records)
    padded = 0
    loss = torch.zeros(())
    t0, cpu0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        ids, mask, labels = collate(records[step * a.batch:(step + 1) * a.batch])
        padded += ids.numel()
        loss = model(ids, mask, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    seconds = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    print(json.dumps({
        "impl": "pytorch_eager_peft_trainer_defaults", "config": a.config, "batch": a.batch,
        "threads": a.threads, "seconds": seconds, "cpu_s": cpu_s, "steps": steps, "tokens": tokens,
        "padded_tokens": padded, "tokens_per_s": tokens / seconds, "final_loss": loss.item(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()

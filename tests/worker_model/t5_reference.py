#!/usr/bin/env python3
"""Test-only reference for T5 logits and loss: a transcription of the math of Hugging Face
transformers' eager T5 (T5LayerNorm, T5DenseActDense / T5DenseGatedActDense, T5Attention with
_relative_position_bucket and compute_bias, T5LayerSelfAttention, T5LayerCrossAttention,
T5LayerFF, T5Block, T5Stack, T5ForConditionalGeneration.forward with labels and _shift_right) in
eval mode, on plain PyTorch, since transformers is not installed here (bench/train/hf_eager/t5.py,
which bench_train's PyTorch peer trains too). Used by t5_reference_test.cc.

Two upcasts of transformers that exist for half precision are kept at the working dtype here:
T5LayerNorm's variance and the attention's softmax are taken in float32 by transformers
(`.to(torch.float32)`, `.float()`), which is the identity in float32 and would round a float64
run to float32; the float64 comparison checks the math, the float32 one the rounding.

Usage: t5_reference.py MODEL_DIR INPUT.json OUT.bin DTYPE
INPUT.json: {"input_ids": [[...]], "attention_mask": [[...]], "labels": [[...]]} (labels -100 =
ignored); DTYPE float32 or float64.
OUT.bin: the logits (B, T_labels, vocab) then the loss (mean cross-entropy over labels != -100),
as little-endian float64.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench",
                                "train"))
from hf_eager import common, t5  # noqa: E402


def main():
    model_dir, input_path, out_path, dtype_name = sys.argv[1:5]
    dtype = {"float32": torch.float32, "float64": torch.float64}[dtype_name]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = {k: v.to(dtype) for k, v in
         common.read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    inputs = json.load(open(input_path))
    input_ids = torch.tensor(inputs["input_ids"], dtype=torch.long)
    attention_mask = torch.tensor(inputs["attention_mask"], dtype=torch.long)
    labels = torch.tensor(inputs["labels"], dtype=torch.long)
    logits, loss = t5.forward(cfg, w, input_ids, attention_mask, labels)
    with open(out_path, "wb") as f:
        f.write(logits.to(torch.float64).contiguous().numpy().tobytes())
        f.write(loss.to(torch.float64).reshape(1).numpy().tobytes())


if __name__ == "__main__":
    main()

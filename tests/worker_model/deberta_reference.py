#!/usr/bin/env python3
"""Test-only reference for DeBERTa-v2/v3: a transcription of the math of Hugging Face
transformers' eager DebertaV2ForSequenceClassification (DebertaV2Embeddings, DebertaV2Encoder with
get_rel_embedding / get_attention_mask / build_relative_position / make_log_bucket_position,
DisentangledSelfAttention with share_att_key and its disentangled_attention_bias, XSoftmax,
DebertaV2SelfOutput, DebertaV2Intermediate, DebertaV2Output, ContextPooler and the classifier) in
eval mode on plain PyTorch, since transformers is not installed here (bench/train/hf_eager/
deberta_v2.py, which bench_train's PyTorch peer trains too; it follows transformers
4.3x-4.4x's modeling_deberta_v2.py). Used by deberta_reference_test.cc.

Usage: deberta_reference.py MODEL_DIR INPUT.json OUT.bin DTYPE
INPUT.json: {"input_ids": [[...]], "attention_mask": [[...]]}; DTYPE float32 or float64.
OUT.bin: the encoder's last hidden states (B, T, hidden), then the classifier's logits
(B, num_labels), as little-endian float64.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench",
                                "train"))
from hf_eager import common, deberta_v2  # noqa: E402


def main():
    model_dir, input_path, out_path, dtype_name = sys.argv[1:5]
    dtype = {"float32": torch.float32, "float64": torch.float64}[dtype_name]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = {k: v.to(dtype)
         for k, v in common.read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    inputs = json.load(open(input_path))
    input_ids = torch.tensor(inputs["input_ids"], dtype=torch.long)
    attention_mask = torch.tensor(inputs["attention_mask"], dtype=torch.long)
    hidden, logits = deberta_v2.forward(cfg, w, input_ids, attention_mask)
    with open(out_path, "wb") as f:
        f.write(hidden.to(torch.float64).contiguous().numpy().tobytes())
        f.write(logits.to(torch.float64).contiguous().numpy().tobytes())


if __name__ == "__main__":
    main()

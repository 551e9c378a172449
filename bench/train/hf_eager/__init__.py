"""Transcriptions of the math of Hugging Face transformers' eager GPT-2, RoBERTa, DeBERTa-v2/v3
and T5, on plain PyTorch (transformers is not installed here), shared by the fidelity tests
(tests/worker_model/*_reference.py) and bench_train's PyTorch peer (bench/train/
baseline_families.py). Each forward reads the checkpoint's tensors from a dict and sends every
projection through a `linear(name, x)` hook, so that the peer can put PEFT's LoRA on its targets.
"""

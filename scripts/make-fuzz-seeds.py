#!/usr/bin/env python3
"""Writes the small seed inputs of the fuzz targets into fuzz/seeds/ (run once; outputs committed)."""
import json
import os
import struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds")


def write_seeds(target, seeds):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


# fuzz_jsonl_records: byte 0 = options, bytes 1..4 = chunk-split seed, then JSONL of every format,
# good and bad lines mixed.
def jsonl(*records):
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"}]
write_seeds("fuzz_jsonl_records", {
    "text": b"\x00\x01\x02\x03\x04" + jsonl({"text": "hello"}, {"text": "caf\u00e9"}, "", "", ""),
    "prompt_completion": b"\x41\x07\x00\x00\x00" + jsonl(
        {"prompt": "2+2=", "completion": "4"}, {"prompt": "x"}, "", {"prompt": "p", "completion": 3}),
    "messages": b"\xc0\x09\x00\x00\x00" + jsonl(
        {"messages": msgs, "tools": []}, {"messages": [{"role": "bot", "content": "x"}]},
        {"messages": []}),
    "classification": b"\x18\x05\x00\x00\x00" + jsonl(
        {"text": "good", "label": "pos"}, {"text": "bad", "label": 0}, {"text": "x", "label": 7},
        {"text": "x", "label": 1.5}, {"text": "x", "label": "other"}),
    "pair_mixed": b"\x25\x11\x00\x00\x00" + jsonl(
        {"text": "a", "text_pair": "b", "label": 1}, {"text": "a", "label": 1}, {"text": "t"},
        '{"text": "unterminated', "[1, 2]", "\ufeff{\"text\": \"bom\"}\r"),
    "long_line": b"\x01\x03\x00\x00\x00" + jsonl({"text": "y" * 80}, {"text": "short"}),
})

# fuzz_model_config: small config.json files of the supported architectures.
base = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 256, "bos_token_id": 1, "eos_token_id": [2, 3]}
write_seeds("fuzz_model_config", {
    "llama": json.dumps(dict(base, architectures=["LlamaForCausalLM"], model_type="llama",
                             tie_word_embeddings=True)).encode(),
    "llama3_rope": json.dumps(dict(base, architectures=["LlamaForCausalLM"], rope_theta=500000.0,
                                   rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                 "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                 "original_max_position_embeddings": 8192})).encode(),
    "qwen2": json.dumps(dict(base, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                             head_dim=16)).encode(),
    "mistral_cls": json.dumps(dict(base, architectures=["MistralForSequenceClassification"],
                                   id2label={"0": "neg", "1": "pos", "2": "neutral"})).encode(),
    "bad_heads": json.dumps(dict(base, architectures=["LlamaForCausalLM"],
                                 num_key_value_heads=3)).encode(),
    # Numbers at the edges (each once reached undefined behaviour; now refused).
    "huge_dims": json.dumps(dict(base, architectures=["LlamaForCausalLM"], vocab_size=2 ** 31,
                                 num_attention_heads=2 ** 63, num_key_value_heads=2 ** 64 - 1,
                                 hidden_size=1e30)).encode(),
})


def safetensors(header, data=b""):
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


seeds = {
    "one_f32": safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
    "two_out_of_order": safetensors(
        {"b": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
         "a": {"dtype": "I16", "shape": [1, 1], "data_offsets": [1, 3]},
         "__metadata__": {"format": "pt"}}, b"\1\2\3"),
    "empty": safetensors({}),
    "bad_size": safetensors({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]}}, b"\0" * 4),
}
d = os.path.join(root, "fuzz_safetensors_header")
os.makedirs(d, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

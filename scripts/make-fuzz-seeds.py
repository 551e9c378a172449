#!/usr/bin/env python3
"""Writes the small seed inputs of the fuzz targets into fuzz/seeds/ (run once; outputs committed).

Every seed is made here from scratch (no third-party files)."""
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


# fuzz_tokenizer_json: small tokenizer.json files covering every supported component.
def byte_char(b):
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return chr(b)
    return chr(256 + [x for x in range(256) if x not in printable].index(b))


def byte_level_vocab(words):
    vocab = {byte_char(b): b for b in range(256)}
    merges = []
    for w in words:
        syms = [byte_char(b) for b in w.encode()]
        while len(syms) > 1:
            a, b = syms[0], syms[1]
            if a + b not in vocab:
                vocab[a + b] = len(vocab)
                merges.append([a, b])
            syms = [a + b] + syms[2:]
    return vocab, merges


def added(i, content, **kw):
    t = {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
    t.update(kw)
    return t


bl_vocab, bl_merges = byte_level_vocab([" the", " world", "Hello", " it", "'s", " 123", "ing"])
n = len(bl_vocab)
llama3_regex = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
byte_level_decoder = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
tok_seeds = {
    "gpt2_style": {
        "version": "1.0", "added_tokens": [added(n, "<|endoftext|>", lstrip=True, rstrip=True,
                                                 single_word=True, normalized=True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "post_processor": {"type": "ByteLevel"},
        "decoder": byte_level_decoder,
        "model": {"type": "BPE", "unk_token": None, "byte_fallback": False, "ignore_merges": False,
                  "vocab": bl_vocab, "merges": [" ".join(m) for m in bl_merges]},
    },
    "llama3_style": {
        "version": "1.0", "added_tokens": [added(n, "<|begin_of_text|>"), added(n + 1, "<|eot_id|>")],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": llama3_regex}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [n]}}},
        "decoder": byte_level_decoder,
        "model": {"type": "BPE", "ignore_merges": True, "vocab": bl_vocab, "merges": bl_merges},
    },
    "qwen2_style": {
        "added_tokens": [added(n, "<|im_start|>"), added(n + 1, "<|im_end|>")],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": llama3_regex.replace(r"\p{N}{1,3}", r"\p{N}")},
             "behavior": "Isolated", "invert": False},
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": bl_vocab, "merges": bl_merges},
    },
}

sp = "\u2581"
sp_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    sp_vocab["<0x%02X>" % b] = len(sp_vocab)
sp_merges = []
for w in [sp + "Hello", sp + "world", sp + "it", "'s", sp + "end"]:
    cur = w[0]
    sp_vocab.setdefault(cur, len(sp_vocab))
    for ch in w[1:]:
        sp_vocab.setdefault(ch, len(sp_vocab))
        if cur + ch not in sp_vocab:
            sp_vocab[cur + ch] = len(sp_vocab)
            sp_merges.append(cur + " " + ch)
        cur += ch
sp_decoder = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": sp}, "content": " "}, {"type": "ByteFallback"},
    {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
sp_model = {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
            "vocab": sp_vocab, "merges": sp_merges}
tok_seeds["llama2_legacy"] = {
    "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": sp},
        {"type": "Replace", "pattern": {"String": " "}, "content": sp}]},
    "pre_tokenizer": None,
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": sp_decoder,
    "model": sp_model,
}
tok_seeds["metaspace_first"] = {
    "added_tokens": [added(1, "<s>"), added(2, "</s>", lstrip=True)],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Strip"},
                                                       {"type": "Replace", "pattern": {"Regex": r"\s+"},
                                                        "content": " "}]},
    "pre_tokenizer": {"type": "Metaspace", "replacement": sp, "prepend_scheme": "first", "split": False},
    "decoder": {"type": "Metaspace", "replacement": sp, "prepend_scheme": "first", "split": False},
    "model": sp_model,
}
tok_seeds["split_behaviours"] = {
    "normalizer": {"type": "Lowercase"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"\d+"}, "behavior": "Contiguous", "invert": True},
        {"type": "Split", "pattern": {"String": "l"}, "behavior": "MergedWithPrevious"},
        {"type": "Split", "pattern": {"Regex": r"!"}, "behavior": "Removed"}]},
    "model": {"type": "BPE", "vocab": sp_vocab, "merges": [m.split(" ") for m in sp_merges],
              "byte_fallback": True},
}
d = os.path.join(root, "fuzz_tokenizer_json")
os.makedirs(d, exist_ok=True)
for name, tok in tok_seeds.items():
    with open(os.path.join(d, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)


# fuzz_create_job_request: serialized CreateJobRequest messages (proto/peftd/v1/jobs.proto), encoded
# by hand in the protobuf wire format (no protobuf package needed). The fake sources of the target
# know the models tiny-llama, tiny-cls and llama-7b and the datasets ds-text and ds-cls.
def varint(n):
    n &= (1 << 64) - 1  # negative int32/int64 values take ten bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(field, wire):
    return varint(field << 3 | wire)


def vint(field, n):
    return tag(field, 0) + varint(n)


def ld(field, data):
    data = data.encode() if isinstance(data, str) else data
    return tag(field, 2) + varint(len(data)) + data


def f32(field, x):
    return tag(field, 5) + struct.pack("<f", x)


def f64(field, x):
    return tag(field, 1) + struct.pack("<d", x)


def f32_bits(field, bits):
    return tag(field, 5) + struct.pack("<I", bits)


LORA, DORA, ADALORA, HUT, ADADHP = 1, 2, 3, 4, 5
SEQ_CLS = 2


def spec(*fields):
    return b"".join(fields)


def request(spec_bytes, request_id="", labels=None):
    out = ld(1, spec_bytes)
    if request_id:
        out += ld(2, request_id)
    for k, v in (labels or {}).items():
        out += ld(4, ld(1, k) + ld(2, v))
    return out


tiny = ld(1, "tiny-llama") + ld(14, "ds-text")
all_projections = b"".join(ld(8, m) for m in
                           ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
write_seeds("fuzz_create_job_request", {
    "lora_defaults": request(spec(tiny, vint(2, LORA))),
    "lora_full": request(spec(tiny, vint(2, LORA), ld(3, vint(1, 16) + f32(2, 32.0) + f32(3, 0.05)),
                              ld(8, "q_proj"), ld(8, "v_proj"), vint(18, 200), vint(19, 8),
                              f64(21, 2e-4), vint(22, 2), f64(23, 0.05), vint(31, 50),
                              vint(27, 256), ld(15, "ds-text"), vint(35, 2)),
                         "r-1", {"team": "nlp"}),
    "dora_gate": request(spec(tiny, vint(2, DORA), ld(7, vint(1, 1) + f64(2, 4e-5) + f64(3, 1e-6)),
                              all_projections, ld(9, "layers.0.mlp.down_proj"))),
    "adalora": request(spec(tiny, vint(2, ADALORA),
                            ld(4, vint(1, 12) + vint(2, 8) + vint(5, 10) + vint(6, 20) + vint(7, 5)),
                            vint(18, 100))),
    "hut_layers": request(spec(tiny, vint(2, HUT), ld(5, vint(1, 4)), ld(10, varint(0) + varint(1)))),
    "adadhp": request(spec(tiny, vint(2, ADADHP), ld(6, vint(1, 2) + vint(2, 5) + vint(3, 50)),
                           all_projections, vint(18, 100))),
    "seq_cls": request(spec(ld(1, "tiny-cls"), ld(14, "ds-cls"), vint(2, LORA), vint(11, SEQ_CLS),
                            vint(12, 2), ld(13, "neg"), ld(13, "pos"), ld(8, "score"))),
    "mixed_patterns": request(spec(tiny, vint(2, LORA), ld(8, "q_proj"),
                                   ld(8, r"re:model\.layers\.[01]\.mlp\.(up|down)_proj"),
                                   ld(9, r"re:.*\.1\.self_attn\.q_proj"))),
    # Issue 12's rows: each is refused.
    "deep_parens": request(spec(tiny, vint(2, LORA), ld(8, "re:" + "(" * 300 + ")" * 300))),
    "catastrophic_regex": request(spec(tiny, vint(2, LORA), ld(8, "re:(.*)*z"), ld(9, "re:("))),
    "huge_rank": request(spec(tiny, vint(2, LORA), ld(3, vint(1, 2000000000)))),
    "non_finite": request(spec(tiny, vint(2, LORA), ld(3, f32_bits(2, 0x7F800000)),
                               f64(25, float("inf")), vint(34, 1000000), vint(19, 2000000000),
                               vint(27, 2000000000), vint(33, 1000000))),
    "unknown_module": request(spec(tiny, vint(2, LORA), ld(8, "no_such_proj"), vint(10, 99))),
    "negative_numbers": request(spec(tiny, vint(2, LORA), vint(10, -5), vint(18, -1), vint(19, -8))),
    "big_model_big_rank": request(spec(ld(1, "llama-7b"), ld(14, "ds-text"), vint(2, LORA),
                                       ld(3, vint(1, 4096)), all_projections)),
})

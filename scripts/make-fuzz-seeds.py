#!/usr/bin/env python3
"""Writes the small seed inputs of the fuzz targets into fuzz/seeds/ (run once; outputs committed)."""
import json
import os
import struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds")


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

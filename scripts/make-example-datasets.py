#!/usr/bin/env python3
"""Writes the small example datasets of examples/datasets/ (outputs committed; python3 stdlib only).

Each set is generated from a fixed seed, so running this again rewrites the same bytes:
- tiny-lm-{train,val}.jsonl    prompt_completion, "Count by k from a:" -> " a+k a+2k a+3k a+4k",
                               a pattern the built-in tiny model learns within ~60 steps
- tiny-cls-{train,val}.jsonl   classification, label names "negative" / "positive": sentiment of
                               short templated sentences
- tiny-chat-train.jsonl        messages: small arithmetic and word questions, some multi-turn
Train and validation sets never share a record.
"""
import argparse
import json
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "datasets")


def write(out, name, records):
    with open(os.path.join(out, name), "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def split(items, n_train, n_val, rng):
    items = list(items)
    rng.shuffle(items)
    assert len(items) >= n_train + n_val
    return items[:n_train], items[n_train:n_train + n_val]


def counting(rng):
    pairs = [(k, a) for k in range(1, 10) for a in range(0, 100)]
    train, val = split(pairs, 400, 60, rng)

    def record(k, a):
        return {"prompt": f"Count by {k} from {a}:",
                "completion": " " + " ".join(str(a + k * i) for i in range(1, 5))}

    return [record(*p) for p in train], [record(*p) for p in val]


POSITIVE = ["wonderful", "delightful", "excellent", "charming", "superb", "lovely", "great",
            "brilliant", "pleasant", "fantastic"]
NEGATIVE = ["awful", "boring", "terrible", "dreadful", "dull", "horrible", "poor", "bland",
            "disappointing", "miserable"]
NOUNS = ["movie", "book", "meal", "concert", "hotel", "game", "show", "trip", "class", "album"]
SENTENCES = ["The {noun} was {adj}.", "What a {adj} {noun}!", "I found the {noun} {adj}.",
             "Honestly, the {noun} felt {adj}.", "Everyone said the {noun} was {adj}."]


def sentiment(rng):
    items = [(s, n, a, label) for s in SENTENCES for n in NOUNS
             for label, adjs in (("positive", POSITIVE), ("negative", NEGATIVE)) for a in adjs]
    train, val = split(items, 300, 60, rng)

    def record(s, n, a, label):
        return {"text": s.format(noun=n, adj=a), "label": label}

    return [record(*i) for i in train], [record(*i) for i in val]


def chat(rng):
    records = []
    for i in range(200):
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        messages = []
        if i % 3 == 0:
            messages.append({"role": "system", "content": "You answer in one short sentence."})
        messages.append({"role": "user", "content": f"What is {a} plus {b}?"})
        messages.append({"role": "assistant", "content": f"{a} plus {b} is {a + b}."})
        if i % 4 == 0:
            word = rng.choice(NOUNS)
            messages.append({"role": "user", "content": f"Spell \"{word}\" backwards."})
            messages.append({"role": "assistant",
                             "content": f"\"{word}\" backwards is \"{word[::-1]}\"."})
        records.append({"messages": messages})
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT, help="output folder (default: examples/datasets)")
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20240601)
    train, val = counting(rng)
    write(out, "tiny-lm-train.jsonl", train)
    write(out, "tiny-lm-val.jsonl", val)
    train, val = sentiment(rng)
    write(out, "tiny-cls-train.jsonl", train)
    write(out, "tiny-cls-val.jsonl", val)
    write(out, "tiny-chat-train.jsonl", chat(rng))


if __name__ == "__main__":
    main()

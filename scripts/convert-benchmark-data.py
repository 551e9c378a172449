#!/usr/bin/python3
"""Converts the papers' benchmark files into peftd's JSONL records (docs/datasets.md), for the jobs of
docs/recipes.md.

  glue TASK IN.tsv OUT.jsonl       GLUE's TSV (as distributed by GLUE) -> classification records
  glue-t5 TASK IN.tsv OUT.jsonl    the same rows as T5's text-to-text input/target records
  e2e IN.csv OUT.jsonl             E2E NLG (columns mr, ref) -> prompt/completion records
  commonsense IN.json OUT.jsonl    LLM-Adapters' commonsense_170k / test files -> prompt/completion

Every bad row is reported with its line number; the output is written only when every row converts.
Prints one JSON summary line: {"records": N, "labels": [...], "out": PATH}.
"""
import argparse
import csv
import json
import sys

# GLUE's columns per task: the text column(s), the label column and the label names in id order
# (HF datasets' glue configs use the same order).
GLUE = {
    "sst2": dict(text=["sentence"], label="label", names=["negative", "positive"]),
    "cola": dict(text=["sentence"], label="label", names=["unacceptable", "acceptable"],
                 headerless=["source", "label", "original", "sentence"]),
    "mrpc": dict(text=["#1 String", "#2 String"], label="Quality",
                 names=["not_equivalent", "equivalent"]),
    "qqp": dict(text=["question1", "question2"], label="is_duplicate",
                names=["not_duplicate", "duplicate"]),
    "qnli": dict(text=["question", "sentence"], label="label",
                 names=["entailment", "not_entailment"]),
    "rte": dict(text=["sentence1", "sentence2"], label="label",
                names=["entailment", "not_entailment"]),
    "mnli": dict(text=["sentence1", "sentence2"], label="gold_label",
                 names=["entailment", "neutral", "contradiction"]),
}

# T5's own text-to-text prefixes (T5 paper, appendix D) and target words.
T5_PREFIX = {
    "sst2": ["sst2 sentence:"],
    "cola": ["cola sentence:"],
    "mrpc": ["mrpc sentence1:", "sentence2:"],
    "qqp": ["qqp question1:", "question2:"],
    "qnli": ["qnli question:", "sentence:"],
    "rte": ["rte sentence1:", "sentence2:"],
    "mnli": ["mnli hypothesis:", "premise:"],
}

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


class BadRow(Exception):
    pass


def glue_rows(task, path):
    """Yields (line number, texts, label id) for every data row of a GLUE TSV."""
    spec = GLUE[task]
    with open(path, newline="", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise BadRow(f"{path}: empty file")
    header = lines[0].split("\t")
    start = 2
    if spec["label"] not in header and "headerless" in spec:
        header, start = spec["headerless"], 1  # CoLA's train/dev files have no header
    missing = [c for c in spec["text"] + [spec["label"]] if c not in header]
    if missing:
        raise BadRow(f"{path}:1: no column {missing[0]!r} for {task} (columns: {header})")
    col = {name: i for i, name in enumerate(header)}
    names = spec["names"]
    for number, line in enumerate(lines[start - 1:], start=start):
        fields = line.split("\t")
        if len(fields) < len(header):
            raise BadRow(f"{path}:{number}: {len(fields)} columns, the header has {len(header)}")
        label = fields[col[spec["label"]]].strip()
        if label.isdigit() and int(label) < len(names):
            label_id = int(label)
        elif label in names:
            label_id = names.index(label)
        else:
            raise BadRow(f"{path}:{number}: label {label!r} is not one of 0..{len(names) - 1} "
                         f"or {names}")
        yield number, [fields[col[c]].strip() for c in spec["text"]], label_id


def convert_glue(args):
    records = []
    for _, texts, label in glue_rows(args.task, args.input):
        record = {"text": texts[0]}
        if len(texts) > 1:
            record["text_pair"] = texts[1]
        record["label"] = label
        records.append(record)
    return records, GLUE[args.task]["names"]


def convert_glue_t5(args):
    records = []
    prefixes = T5_PREFIX[args.task]
    names = GLUE[args.task]["names"]
    for _, texts, label in glue_rows(args.task, args.input):
        if args.task == "mnli":
            texts = [texts[1], texts[0]]  # T5 puts the hypothesis first
        parts = [f"{p} {t}" for p, t in zip(prefixes, texts)]
        records.append({"input": " ".join(parts), "target": names[label]})
    return records, names


def convert_e2e(args):
    records = []
    with open(args.input, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for column in ("mr", "ref"):
            if column not in (reader.fieldnames or []):
                raise BadRow(f"{args.input}:1: no column {column!r} (columns: {reader.fieldnames})")
        for row in reader:
            if not row["mr"] or not row["ref"]:
                raise BadRow(f"{args.input}:{reader.line_num}: empty mr or ref")
            records.append({"prompt": row["mr"].strip() + " ||", "completion": " " + row["ref"].strip()})
    return records, []


def convert_commonsense(args):
    with open(args.input, encoding="utf-8") as f:
        try:
            rows = json.load(f)
        except json.JSONDecodeError as e:
            raise BadRow(f"{args.input}:{e.lineno}: not JSON: {e.msg}")
    if not isinstance(rows, list):
        raise BadRow(f"{args.input}: expected a JSON array of objects")
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("instruction") or "answer" not in row:
            raise BadRow(f"{args.input}: element {i}: needs 'instruction' and 'answer'")
        instruction = row["instruction"] if not row.get("input") else \
            row["instruction"] + "\n\n" + row["input"]
        completion = row.get("output") or f"the correct answer is {row['answer']}"
        records.append({"prompt": ALPACA.format(instruction=instruction), "completion": completion})
    return records, []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("glue", "glue-t5"):
        p = sub.add_parser(name)
        p.add_argument("task", choices=sorted(GLUE))
        p.add_argument("input")
        p.add_argument("output")
    for name in ("e2e", "commonsense"):
        p = sub.add_parser(name)
        p.add_argument("input")
        p.add_argument("output")
    args = parser.parse_args()
    convert = {"glue": convert_glue, "glue-t5": convert_glue_t5, "e2e": convert_e2e,
               "commonsense": convert_commonsense}[args.command]
    try:
        records, labels = convert(args)
    except (BadRow, OSError, UnicodeDecodeError) as e:
        print(f"convert-benchmark-data: {e}", file=sys.stderr)
        return 1
    if not records:
        print(f"convert-benchmark-data: {args.input}: no records", file=sys.stderr)
        return 1
    with open(args.output, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(json.dumps({"records": len(records), "labels": labels, "out": args.output}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

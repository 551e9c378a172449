#!/usr/bin/env python3
"""Checks docs/job-spec.md against proto/peftd/v1/job.proto (the .proto text, no protoc needed).

  check_job_spec_doc.py PROTO DOC
  check_job_spec_doc.py --self-test

- every field of JobSpec has a table row `name`, every field of a message JobSpec holds
  (LoraParams, AdaLoraParams, HutParams, AdaDhpParams, TokenGate) a row `prefix.name`, where the
  prefix is the JobSpec field of that type (lora, adalora, hut, adadhp, token_gate);
- the default in the row holds the value the field's proto comment states ("Default 8.",
  "Default (unset) 1.0.", "Default: q_proj, v_proj.");
- every numeric field (int32, int64, uint64, float, double, or a list of them) has a range in its
  row's `range` column: an interval such as `[1, 4096]` or `(0, 1]`, or `any`;
- no row names a field the proto does not have (a renamed or removed field);
- every value of the enums Method, TaskType and LrSchedule is in the page.
Python standard library only. Exit 1 with every problem listed.
"""
import re
import sys

FIELD_RE = re.compile(r"^\s*(?:(optional|repeated)\s+)?(map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*\d+\s*;\s*(?://\s?(.*))?$")
ENUMS = ("Method", "TaskType", "LrSchedule")
NUMERIC = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "float",
           "double"}
NUMBER = r"-?(?:\d+(?:\.\d*)?(?:e[+-]?\d+)?|inf)"
RANGE_RE = re.compile(r"^`?[\[(]\s*" + NUMBER + r"\s*,\s*" + NUMBER + r"\s*[\])]`?$|^any$")


def parse_proto(text):
    """({message: [(field, type, comment)]}, {enum: [values]}). Nested blocks (oneof) are flattened
    into their message; a comment-only line right after a field continues that field's comment."""
    messages, enums = {}, {}
    stack = []  # (kind, name)
    last = None
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"(message|enum|oneof)\s+(\w+)\s*\{", line)
        if m:
            stack.append((m.group(1), m.group(2)))
            if m.group(1) == "message":
                messages.setdefault(m.group(2), [])
            elif m.group(1) == "enum":
                enums.setdefault(m.group(2), [])
            last = None
            continue
        if line.startswith("}"):
            if stack:
                stack.pop()
            last = None
            continue
        if line.startswith("//"):
            if last is not None:
                name, typ, comment = last[0][last[1]]
                last[0][last[1]] = (name, typ, comment + " " + line[2:].strip())
            continue
        owner = next((n for k, n in reversed(stack) if k in ("message", "enum")), None)
        kind = next((k for k, n in reversed(stack) if k in ("message", "enum")), None)
        if kind == "enum":
            m = re.match(r"(\w+)\s*=\s*\d+\s*;", line)
            if m:
                enums[owner].append(m.group(1))
            last = None
            continue
        if kind == "message":
            m = FIELD_RE.match(raw)
            if m:
                fields = messages[owner]
                fields.append((m.group(3), m.group(2), (m.group(4) or "").strip()))
                last = (fields, len(fields) - 1)
                continue
        last = None
    return messages, enums


def stated_default(comment):
    """The first word of the default a proto comment states, lower case, or None."""
    m = re.search(r"\bDefault(?:\s*\(unset\))?:?\s+(.+?)(?:\.(?:\s|$)|;|$)", comment)
    if not m:
        return None
    first = re.split(r"[\s,]+", m.group(1).strip())[0]
    return first.strip("`'\"()").lower()


def split_row(line):
    """The cells of a table row; `\\|` inside a cell is not a separator."""
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip() for c in cells]


def doc_rows(text):
    """{first-cell name: {column header: cell}} of every table row whose first cell is `code`;
    columns are named by the header row of their table."""
    rows = {}
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = split_row(line)
        if header is None:
            header = [c.lower() for c in cells]
            continue
        m = re.fullmatch(r"`([\w.]+)`", cells[0]) if cells else None
        if m:
            rows[m.group(1)] = dict(zip(header, cells))
    return rows


def check(proto_text, doc_text):
    problems = []
    messages, enums = parse_proto(proto_text)
    if "JobSpec" not in messages or not messages["JobSpec"]:
        return ["job.proto: no message JobSpec found"]
    rows = doc_rows(doc_text)
    expected = {}  # doc name -> (proto comment, type)
    for name, typ, comment in messages["JobSpec"]:
        expected[name] = (comment, typ)
        if typ in messages:
            for sub, subtyp, subcomment in messages[typ]:
                expected[f"{name}.{sub}"] = (subcomment, subtyp)
    for name, (comment, typ) in expected.items():
        if name not in rows:
            problems.append(f"job-spec.md: no row for `{name}` ({typ})")
            continue
        want = stated_default(comment)
        cells = rows[name]
        default_cell = cells.get("default", "")
        if want is not None and want not in default_cell.lower().replace("`", ""):
            problems.append(f"job-spec.md: `{name}`: the proto says default {want!r}, the page says "
                            f"{default_cell or '(no default column)'!r}")
        if typ in NUMERIC and not RANGE_RE.match(cells.get("range", "")):
            problems.append(f"job-spec.md: `{name}` ({typ}) has no range: its `range` cell is "
                            f"{cells.get('range', '(no range column)')!r}; write an interval such as "
                            f"`[1, 4096]` or `any`")
    request_fields = {"request_id", "display_name", "labels"}
    documented_types = set(messages) | set(ENUMS)
    for name in rows:
        if name in expected or name in request_fields or name in documented_types:
            continue
        problems.append(f"job-spec.md: a row names `{name}`, which JobSpec does not have")
    for enum in ENUMS:
        for value in enums.get(enum, []):
            if value.endswith("_UNSPECIFIED"):
                continue
            if f"`{value}`" not in doc_text:
                problems.append(f"job-spec.md: {enum} value `{value}` is not mentioned")
    return problems


def self_test():
    proto = """
message P {
  int32 r = 1;  // Rank. Default 8.
}
enum Method {
  METHOD_UNSPECIFIED = 0;
  LORA = 1;
}
message JobSpec {
  string a = 1;          // Required.
  oneof x {
    P p = 2;
  }
  repeated string t = 3; // Names; a single entry
                         // starting with re:. Default: q_proj, v_proj.
  optional double g = 4; // Clip. Default (unset) 1.0.
}
"""
    good = ("| field | type | default | range | meaning |\n| --- | --- | --- | --- | --- |\n"
            "| `a` | string | required | — | x |\n| `p` | P | see | — | x |\n"
            "| `p.r` | int | 8 | `[1, 4096]` | x \\| y |\n"
            "| `t` | list | `q_proj`, `v_proj` | — | x |\n| `g` | double | 1.0 | `(0, 1e6]` | x |\n"
            "\n`LORA`\n")
    bad = 0
    if check(proto, good):
        print("self-test: a matching page was refused:", check(proto, good))
        bad += 1
    for mutation, what in ((good.replace("| 8 |", "| 16 |"), "wrong default"),
                           (good.replace("| `t` |", "| `targets` |"), "missing and unknown row"),
                           (good.replace("`LORA`", ""), "missing enum value"),
                           (good.replace("| 1.0 |", "| 1 |"), "wrong optional default"),
                           (good.replace("`[1, 4096]`", "—"), "numeric row without a range"),
                           (good.replace("`(0, 1e6]`", "≥ 0"), "range that is no interval")):
        if not check(proto, mutation):
            print(f"self-test: a page with a {what} passed")
            bad += 1
    print("self-test:", "ok" if bad == 0 else f"{bad} failures")
    return 1 if bad else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 3:
        print(__doc__)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        proto = f.read()
    with open(argv[2], encoding="utf-8") as f:
        doc = f.read()
    problems = check(proto, doc)
    for p in problems:
        print(p)
    n = len(parse_proto(proto)[0].get("JobSpec", []))
    print(f"check_job_spec_doc: {n} JobSpec fields; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

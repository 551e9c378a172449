#!/usr/bin/env python3
"""Checks the state table of docs/concepts.md against CanTransition in server/job_state.cc.

  check_concepts_doc.py JOB_STATE_CC CONCEPTS_MD

Reads the `case v1::FROM: return to == v1::A || to == v1::B ...;` arms of CanTransition and the
rows `| `FROM` | meaning | `A`, `B` |` (a dash for none) of the page; the two must list the same
transitions for every state. Python standard library only.
"""
import re
import sys


def code_table(text):
    body = text[text.index("CanTransition"):]
    body = body[: body.index("\n}\n")]
    table = {}
    for m in re.finditer(r"case v1::(\w+):\s*return ([^;]+);", body):
        table[m.group(1)] = set(re.findall(r"to == v1::(\w+)", m.group(2)))
    return table


def doc_table(text):
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[A-Z_]+`", cells[0]):
            table[cells[0].strip("`")] = set(re.findall(r"`([A-Z_]+)`", cells[2]))
    return table


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    code = code_table(open(argv[1], encoding="utf-8").read())
    doc = doc_table(open(argv[2], encoding="utf-8").read())
    problems = []
    if not code:
        problems.append(f"{argv[1]}: no CanTransition arms found")
    for state in sorted(set(code) | set(doc)):
        want, got = code.get(state, set()), doc.get(state)
        if got is None:
            problems.append(f"concepts.md: no row for state {state}")
        elif want != got:
            problems.append(f"concepts.md: {state} can become {sorted(want) or 'nothing'} in the code, "
                            f"{sorted(got) or 'nothing'} in the page")
    for p in problems:
        print(p)
    print(f"check_concepts_doc: {len(code)} states with transitions; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

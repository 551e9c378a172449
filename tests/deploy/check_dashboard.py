#!/usr/bin/env python3
"""Checks that the Grafana dashboard and the Prometheus alert rules use only metrics that exist.

  check_dashboard.py --source-dir DIR [--metrics-doc docs/metrics.md | --metrics-url URL |
                     --metrics-file SCRAPE ...] [--promtool PATH]
  check_dashboard.py --self-test

The exposed metrics come from the table of docs/metrics.md (phase 1), from a live scrape of a
server's /metrics (--metrics-url, phase 2), or from the union of saved scrapes (--metrics-file,
repeatable: per-job series such as AdaLoRA ranks exist only while a job of that kind runs, so
tests/deploy/prometheus_live_test.py scrapes throughout a run). For every PromQL expression of
deploy/grafana/dashboards/peftd.json and deploy/prometheus/alerts.yml it checks that:
  - every metric name is exposed (a histogram X also as X_bucket, X_sum, X_count), or is one of
    Prometheus's own series (`up`, ...);
  - every label named in a selector ({job_id=~"$job"}) is a label of that metric;
  - every value an equality matcher asks for (state="queued") is a documented value of that label;
  - the expression parses: they are all written into a rules file for `promtool check rules`.
Also checks the dashboard's JSON shape (unique panel ids, every panel has a datasource and targets).
Python standard library only. Exit 0 when all is well, 1 with every problem listed otherwise.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

# Series Prometheus itself attaches to every target: not the server's to expose.
PROMETHEUS_SERIES = {"up": {"job", "instance"}, "scrape_duration_seconds": {"job", "instance"},
                     "scrape_samples_scraped": {"job", "instance"}}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                   "bool", "and", "or", "unless", "atan2", "inf", "nan", "start", "end"}
# Aggregation operators: `sum by (x) (...)` puts the grouping between the name and its "(".
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
               "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def strip_grafana_vars(expr):
    """Grafana variables become PromQL-neutral text: durations stay durations, values strings."""
    expr = re.sub(r"\$__(rate_)?interval|\$__range|\$\{__(rate_)?interval\}", "1m", expr)
    expr = re.sub(r"\$\{?\w+(:\w+)?\}?", "VAR", expr)
    return expr


def _remove_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)


def selectors(expr):
    """Yields (metric, {label: [(op, value)]}) for every vector selector in a PromQL expression."""
    expr = strip_grafana_vars(expr)
    # Tokenize: strings, braces, identifiers, everything else.
    token_re = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\{[^{}]*\}|\[[^\]]*\]|'
                          r'(?:\d+(?:ms|[smhdwy]))+|'  # durations (offset 5m, 1h30m)
                          r'[A-Za-z_:][A-Za-z0-9_:]*|\d+(?:\.\d+)?(?:e[+-]?\d+)?|\S')
    tokens = token_re.findall(expr)
    i = 0
    out = []
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", tok):
            low = tok.lower()
            if low in ("by", "without", "on", "ignoring", "group_left", "group_right"):
                # Skip its label list "( a, b )".
                if nxt == "(":
                    depth = 0
                    while i < len(tokens):
                        if tokens[i] == "(":
                            depth += 1
                        elif tokens[i] == ")":
                            depth -= 1
                            if depth == 0:
                                break
                        i += 1
                i += 1
                continue
            if low in PROMQL_KEYWORDS or nxt == "(" or (low in AGGREGATORS and nxt.lower() in ("by", "without")):
                i += 1  # a keyword, a function or an aggregation operator
                continue
            matchers = {}
            if nxt.startswith("{"):
                matchers = parse_matchers(nxt)
            out.append((tok, matchers))
            i += 1
            continue
        if tok.startswith("{"):  # a selector with no metric name: {__name__="x"}
            m = parse_matchers(tok)
            names = [v for op, v in m.get("__name__", []) if op == "="]
            for n in names:
                out.append((n, {k: v for k, v in m.items() if k != "__name__"}))
        i += 1
    return out


def parse_matchers(braced):
    body = braced[1:-1]
    result = {}
    for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', body):
        result.setdefault(m.group(1), []).append((m.group(2), m.group(3)))
    return result


def parse_metrics_doc(path):
    """Returns ({metric: (type, set(labels))}, {label: set(values) or None})."""
    metrics, values = {}, {}
    section = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                section = line[3:].strip().lower()
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 2 or not cells[0].startswith("`"):
                continue
            name = cells[0].strip("`")
            if section == "series" and len(cells) >= 3:
                labels = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[2]))
                metrics[name] = (cells[1], labels)
            elif section == "label values":
                # A list of values, then optionally a remark in parentheses.
                vals = re.findall(r"`([^`]+)`", cells[1].split(" (")[0])
                # Only closed lists of plain words count as an enumeration of values.
                if vals and all(re.fullmatch(r"[a-z_]+", v) for v in vals):
                    values[name] = set(vals)
                else:
                    values[name] = None
    return metrics, values


def parse_scrape(text):
    """Metric families from Prometheus text format: ({metric: (type, labels)}, {label: values})."""
    metrics, values = {}, {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            types[name] = typ
            metrics.setdefault(name, (typ, set()))
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?", line)
        if not m:
            continue
        name = m.group(1)
        base = name
        for suf in HISTOGRAM_SUFFIXES:
            if name.endswith(suf) and types.get(name[: -len(suf)]) == "histogram":
                base = name[: -len(suf)]
        typ, labels = metrics.setdefault(base, (types.get(base, "untyped"), set()))
        for label, pairs in parse_matchers(m.group(2) or "{}").items():
            if label == "le":
                continue
            labels.add(label)
            values.setdefault(label, set()).update(v for _, v in pairs)
    return metrics, values


def merge_scrapes(texts):
    """The union of several scrapes: every family, label and label value seen in any of them."""
    metrics, values = {}, {}
    for text in texts:
        m, v = parse_scrape(text)
        for name, (typ, labels) in m.items():
            old_typ, old_labels = metrics.get(name, (typ, set()))
            metrics[name] = (old_typ if old_typ != "untyped" else typ, old_labels | labels)
        for label, vals in v.items():
            values.setdefault(label, set()).update(vals)
    return metrics, values


def resolve(metric, exposed):
    """The exposed family a referenced name belongs to, or None."""
    if metric in exposed:
        return metric, exposed[metric][1]
    for suf in HISTOGRAM_SUFFIXES:
        if metric.endswith(suf):
            base = metric[: -len(suf)]
            if base in exposed and exposed[base][0] == "histogram":
                return base, exposed[base][1] | ({"le"} if suf == "_bucket" else set())
    if metric in PROMETHEUS_SERIES:
        return metric, PROMETHEUS_SERIES[metric]
    return None


def dashboard_exprs(dash, problems):
    exprs = []
    ids = set()

    def walk(panels):
        for p in panels:
            pid = p.get("id")
            if pid in ids:
                problems.append(f"dashboard: panel id {pid} is used twice")
            ids.add(pid)
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            title = p.get("title", f"panel {pid}")
            if not p.get("targets"):
                problems.append(f"dashboard: panel '{title}' has no query")
            if "datasource" not in p:
                problems.append(f"dashboard: panel '{title}' has no datasource")
            for t in p.get("targets", []):
                if not t.get("expr"):
                    problems.append(f"dashboard: panel '{title}' target {t.get('refId')} has no expr")
                    continue
                exprs.append((f"dashboard panel '{title}' ({t.get('refId')})", t["expr"]))

    walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        text = q.get("query") if isinstance(q, dict) else q
        if var.get("type") == "query" and text:
            m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\)\s*", text)
            if not m:
                problems.append(f"dashboard: variable '{var.get('name')}': cannot read query {text!r}")
                continue
            # label_values(selector, label): check both the selector and that it has the label.
            exprs.append((f"dashboard variable '{var.get('name')}'", m.group(1)))
            exprs.append((f"dashboard variable '{var.get('name')}' label",
                          f"{m.group(1).strip()}{{{m.group(2)}!=\"\"}}"
                          if "{" not in m.group(1) else m.group(1)))
    return exprs


def alert_exprs(path):
    """The `expr:` lines of a rules file (stdlib only: no YAML parser needed for this shape)."""
    exprs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = re.match(r"\s*expr:\s*(.+?)\s*$", line)
            if m:
                e = m.group(1)
                if e[:1] in "\"'" and e[-1:] == e[:1]:
                    e = e[1:-1]
                exprs.append((f"{os.path.basename(path)}:{n}", e))
    return exprs


def check_exprs(exprs, exposed, values, problems):
    used = set()
    for where, expr in exprs:
        sels = selectors(expr)
        if not sels:
            problems.append(f"{where}: no metric found in {expr!r}")
        for metric, matchers in sels:
            r = resolve(metric, exposed)
            if r is None:
                problems.append(f"{where}: metric '{metric}' is not exposed (not in the metrics list)")
                continue
            family, labels = r
            used.add(family)
            for label, pairs in matchers.items():
                if label not in labels and label not in TARGET_LABELS:
                    problems.append(f"{where}: '{metric}' has no label '{label}' "
                                    f"(it has: {', '.join(sorted(labels)) or 'none'})")
                    continue
                allowed = values.get(label)
                for op, value in pairs:
                    if op == "=" and allowed is not None and value not in allowed and value != "VAR":
                        problems.append(f"{where}: {label}=\"{value}\" is not a value of '{label}' "
                                        f"(values: {', '.join(sorted(allowed))})")
                    if op == "=~" and allowed is not None and value != "VAR":
                        for alt in value.split("|"):
                            if re.fullmatch(r"[a-z_]+", alt) and alt not in allowed:
                                problems.append(f"{where}: {label}=~\"{value}\": '{alt}' is not a "
                                                f"value of '{label}'")
    return used


def promtool_parse(exprs, promtool, problems):
    """Every expression through promtool's PromQL parser, as recording rules."""
    if not promtool:
        problems.append("promtool not found: install Debian's prometheus (scripts/install-deps.sh)")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("groups:\n  - name: dashboard_exprs\n    rules:\n")
        for i, (_, expr) in enumerate(exprs):
            e = strip_grafana_vars(expr).replace("VAR", ".*")
            f.write(f"      - record: peftd_check:expr_{i}\n        expr: {json.dumps(e)}\n")
        path = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("promtool check rules on the dashboard's expressions failed:\n"
                            + r.stdout + r.stderr)
            for i, (where, expr) in enumerate(exprs):
                if f"expr_{i}" in r.stdout + r.stderr:
                    problems.append(f"  expr_{i} is {where}: {expr}")
    finally:
        os.unlink(path)


def self_test():
    cases = {
        'sum by (state) (peftd_jobs)': [("peftd_jobs", {})],
        'histogram_quantile(0.9, sum by (le) (rate(peftd_job_queue_wait_seconds_bucket[$__rate_interval])))':
            [("peftd_job_queue_wait_seconds_bucket", {})],
        'peftd_train_loss{job_id=~"$job"}': [("peftd_train_loss", {"job_id": [("=~", "VAR")]})],
        'avg by (row) (label_replace(peftd_gate_tau{job_id="a"}, "row", "$1", "module", "(.*)"))':
            [("peftd_gate_tau", {"job_id": [("=", "a")]})],
        'sum(x_total) > 0 and on() (sum(y{status=~"idle|busy"}) or on() vector(0)) == 0':
            [("x_total", {}), ("y", {"status": [("=~", "idle|busy")]})],
        'time() - max(peftd_start_time_seconds) offset 5m': [("peftd_start_time_seconds", {})],
        'rate(a[5m]) / ignoring(le) group_left b': [("a", {}), ("b", {})],
    }
    bad = 0
    for expr, want in cases.items():
        got = selectors(expr)
        if got != want:
            print(f"self-test: selectors({expr!r}) = {got}, want {want}")
            bad += 1
    exposed = {"peftd_jobs": ("gauge", {"state"}), "h": ("histogram", set())}
    problems = []
    check_exprs([("t", 'peftd_jobs{state="bogus"} + h_bucket + nope + peftd_jobs{method="x"}')],
                exposed, {"state": {"queued"}}, problems)
    want_problems = 3  # the bogus value, the unknown metric, the unknown label
    if len(problems) != want_problems:
        print(f"self-test: expected {want_problems} problems, got {problems}")
        bad += 1
    print("self-test:", "ok" if bad == 0 else f"{bad} failures")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source-dir", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--metrics-doc", help="docs/metrics.md (default: under --source-dir)")
    ap.add_argument("--metrics-url", help="a live /metrics URL to check against instead")
    ap.add_argument("--metrics-file", action="append", default=[],
                    help="a saved scrape (Prometheus text format); repeatable, checked against the union")
    ap.add_argument("--promtool", default=None)
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()

    src = args.source_dir
    problems = []
    if args.metrics_url or args.metrics_file:
        texts = []
        if args.metrics_url:
            with urllib.request.urlopen(args.metrics_url, timeout=10) as r:
                texts.append(r.read().decode())
        for path in args.metrics_file:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        exposed, values = merge_scrapes(texts)
        origin = " + ".join(([args.metrics_url] if args.metrics_url else []) +
                            ([f"{len(args.metrics_file)} saved scrapes"] if args.metrics_file else []))
    else:
        doc = args.metrics_doc or os.path.join(src, "docs", "metrics.md")
        exposed, values = parse_metrics_doc(doc)
        origin = doc
    if not exposed:
        print(f"check_dashboard: no metrics found in {origin}")
        return 1

    dash_path = os.path.join(src, "deploy", "grafana", "dashboards", "peftd.json")
    try:
        with open(dash_path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        print(f"check_dashboard: {dash_path}: {e}")
        return 1
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in dash:
            problems.append(f"dashboard: no '{key}'")
    exprs = dashboard_exprs(dash, problems)
    exprs += alert_exprs(os.path.join(src, "deploy", "prometheus", "alerts.yml"))
    used = check_exprs(exprs, exposed, values, problems)
    promtool = args.promtool or next((p for p in (os.path.join(d, "promtool") for d in
                                      os.environ.get("PATH", "").split(os.pathsep)) if os.access(p, os.X_OK)), None)
    promtool_parse(exprs, promtool, problems)

    for p in problems:
        print(p)
    unused = sorted(set(m for m in exposed if m.startswith("peftd_")) - used)
    print(f"check_dashboard: {len(exprs)} expressions, {len(used)} metrics used, "
          f"checked against {origin}; not on the dashboard: {', '.join(unused) or 'none'}")
    print(f"check_dashboard: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

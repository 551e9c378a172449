#!/usr/bin/env python3
"""The monitoring stack against the real service: Debian's Prometheus scraping a running peftd.

  prometheus_live_test.py --build-dir BUILD --source-dir SRC --prometheus PATH --promtool PATH

Starts peftd on 127.0.0.1 (port 0) with local workers, and Prometheus on 127.0.0.1 with the
project's deploy/prometheus/prometheus.yml (its target rewritten to peftd's metrics port, scrape
interval 1s, alerts.yml loaded). Then, while a gated job of each kind runs (the five methods on
causal LM, LoRA on sequence classification):
  - reads peftd_train_loss and peftd_gate_sparsity_ratio of a running job back through
    Prometheus's HTTP query API (/api/v1/query);
  - `promtool check metrics` on a live scrape holding the per-job series;
  - tests/deploy/check_dashboard.py: every metric, label and label value the Grafana dashboard
    and the alert rules use exists in the live scrapes taken while the jobs ran (the union: one
    job's AdaLoRA ranks and another's eval accuracy need not be live at the same instant).
Every job must succeed. Exit 0 ok, 1 failure, 77 (ctest SKIP_RETURN_CODE) when Prometheus is not
installed. Python standard library plus python3-yaml (scripts/install-deps.sh, group tests).
"""
import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77
# Gate settings that move the threshold on the tiny model within a few dozen steps.
GATE = ["--gate-s", "0.02", "--gate-lambda", "0.002"]
LR = {"lora": "1e-2", "dora": "1e-2", "adalora": "5e-2", "hut": "1e-1", "adadhp": "1e-1"}


class Failure(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(what, fn, timeout, every=0.25):
    """Calls fn until it returns a truthy value; raises Failure naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (OSError, ValueError, urllib.error.URLError) as e:
            last_error = e
        time.sleep(every)
    raise Failure(f"timed out after {timeout}s waiting for {what}"
                  + (f" (last error: {last_error})" if last_error else ""))


class Processes:
    """The processes this test starts, stopped (TERM, then KILL of their group) on exit."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log_path, env=None):
        f = open(log_path, "wb")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                             env=env)
        self.procs.append((name, p, f))
        return p

    def check_alive(self):
        for name, p, _ in self.procs:
            if p.poll() is not None:
                raise Failure(f"{name} exited with code {p.returncode}")

    def stop(self):
        for _, p, _ in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p, f in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its children too (peftd's local workers)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()
            f.close()


class Peftctl:
    def __init__(self, binary, server):
        self.binary, self.server = binary, server

    def json(self, *args):
        r = subprocess.run([self.binary, "--server", self.server, "--json", *args],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise Failure(f"peftctl {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return json.loads(r.stdout)


class Prometheus:
    def __init__(self, url):
        self.url = url

    def query(self, expr):
        """The result vector of an instant query, as [(labels, value)]."""
        q = urllib.parse.urlencode({"query": expr})
        body = json.loads(http_get(f"{self.url}/api/v1/query?{q}"))
        if body.get("status") != "success":
            raise Failure(f"Prometheus query {expr!r} failed: {body}")
        if body["data"]["resultType"] != "vector":
            raise Failure(f"Prometheus query {expr!r}: expected a vector, got {body['data']}")
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


def write_prometheus_config(src, metrics_addr, out_dir):
    import yaml  # python3-yaml; imported here so that the skip path needs nothing
    with open(os.path.join(src, "deploy", "prometheus", "prometheus.yml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    # The alert rules too, so that they are evaluated against the real series.
    config["rule_files"] = [os.path.join(src, "deploy", "prometheus", r)
                            for r in config.get("rule_files", [])]
    jobs = [j for j in config["scrape_configs"] if j.get("job_name") == "peftd"]
    if len(jobs) != 1:
        raise Failure("deploy/prometheus/prometheus.yml: expected one scrape job named 'peftd'")
    jobs[0]["static_configs"] = [{"targets": [metrics_addr]}]
    path = os.path.join(out_dir, "prometheus.yml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    return path


class Scraper(threading.Thread):
    """Saves a scrape of peftd's /metrics every `every` seconds until stopped."""

    def __init__(self, url, out_dir, every=0.25):
        super().__init__(daemon=True)
        self.url, self.out_dir, self.every = url, out_dir, every
        self.paths, self.errors = [], []
        self.stop_event = threading.Event()
        os.makedirs(out_dir)

    def run(self):
        while not self.stop_event.is_set():
            try:
                text = http_get(self.url)
                path = os.path.join(self.out_dir, f"{len(self.paths):05d}.prom")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                self.paths.append(path)
            except (OSError, urllib.error.URLError) as e:
                self.errors.append(str(e))
            self.stop_event.wait(self.every)

    def stop(self):
        self.stop_event.set()
        self.join()


def run(args, tmp, procs):
    src, build = os.path.abspath(args.source_dir), os.path.abspath(args.build_dir)
    peftd_bin = os.path.join(build, "server", "peftd")
    peftctl_bin = os.path.join(build, "clients", "cli", "peftctl")
    for b in (peftd_bin, peftctl_bin, os.path.join(build, "worker", "peftd-worker")):
        if not os.access(b, os.X_OK):
            raise Failure(f"{b} is not built (cmake --build {build} --target peftd peftd-worker peftctl)")

    # --- peftd with local workers: two, so that jobs of several kinds are live together.
    port_file = os.path.join(tmp, "peftd.port")
    log("starting peftd")
    procs.start("peftd", [peftd_bin, "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
                          f"--data-dir={tmp}/data", "--local-workers=2", f"--port-file={port_file}",
                          "--heartbeat-interval=1s", "--lease-timeout=5s",
                          f"--worker-binary={os.path.join(build, 'worker', 'peftd-worker')}"],
                os.path.join(tmp, "peftd.log"),
                # OpenMP threads that sleep rather than spin: several workers share two cores here
                # (scripts/demo.sh says what spinning costs).
                env=dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE")))

    def ports():
        procs.check_alive()
        if os.path.exists(port_file):
            fields = dict(kv.split("=", 1) for kv in open(port_file).read().split())
            return fields
        return None
    fields = wait_for("peftd's port file", ports, timeout=120)
    grpc_addr, metrics_addr = fields["grpc"], fields["metrics"]
    metrics_url = f"http://{metrics_addr}/metrics"
    log(f"peftd: grpc {grpc_addr}, metrics {metrics_url}")
    ctl = Peftctl(peftctl_bin, grpc_addr)

    # --- Prometheus with the project's config.
    prom_port = free_port()
    config = write_prometheus_config(src, metrics_addr, tmp)
    log(f"starting {args.prometheus} on 127.0.0.1:{prom_port}")
    procs.start("prometheus", [args.prometheus, f"--config.file={config}",
                               f"--storage.tsdb.path={tmp}/prometheus",
                               f"--web.listen-address=127.0.0.1:{prom_port}"],
                os.path.join(tmp, "prometheus.log"))
    prom = Prometheus(f"http://127.0.0.1:{prom_port}")
    wait_for("Prometheus to be ready", lambda: (procs.check_alive(), http_get(f"{prom.url}/-/ready"))[1],
             timeout=60)
    wait_for("Prometheus to scrape peftd (up == 1)",
             lambda: any(v == 1 for _, v in prom.query('up{job="peftd"}')), timeout=60)
    log("Prometheus scrapes peftd")

    # --- scrapes saved from before the first job to after the last.
    scraper = Scraper(metrics_url, os.path.join(tmp, "scrapes"))
    scraper.start()

    # --- datasets and one gated job of each kind.
    ds = {name: ctl.json("datasets", "upload", os.path.join(src, "examples", "datasets", name))["id"]
          for name in ("tiny-lm-train.jsonl", "tiny-lm-val.jsonl", "tiny-cls-train.jsonl",
                       "tiny-cls-val.jsonl")}
    common = ["--model", "tiny-llama", "--batch-size", "8", "--target-modules",
              "q_proj,v_proj,o_proj,down_proj", "--eval-interval", "20", "--seed", "7",
              "--steps", str(args.steps), "--label", "test=prometheus_live", *GATE]
    lm = ["--train", ds["tiny-lm-train.jsonl"], "--val", ds["tiny-lm-val.jsonl"], "--max-seq-len", "64"]
    jobs = {}
    for m in ("lora", "adalora", "adadhp", "dora", "hut"):
        rank = [] if m == "adadhp" else ["--rank", "4"]
        jobs[f"{m}_S"] = ctl.json("submit", *common, *lm, "--method", m, *rank, "--lr", LR[m],
                                  "--name", f"{m}_S")["id"]
    # Classification from the example job file (its label_names map the string labels).
    jobs["lora_S/seq_cls"] = ctl.json(
        "submit", "-f", os.path.join(src, "examples", "jobs", "lora-cls.json"), *common,
        "--train", ds["tiny-cls-train.jsonl"], "--val", ds["tiny-cls-val.jsonl"],
        "--max-seq-len", "32", "--name", "lora_S-cls")["id"]
    log("submitted " + ", ".join(f"{k}={v}" for k, v in jobs.items()))

    # --- while they run: Prometheus queries for the first job's series, promtool on a live scrape.
    seen = {"peftd_train_loss": None, "peftd_gate_sparsity_ratio": None}
    first = jobs["lora_S"]
    promtool_done = False
    deadline = time.monotonic() + args.timeout
    states = {}
    next_list = 0.0
    while True:
        procs.check_alive()
        if time.monotonic() > deadline:
            raise Failure(f"jobs not finished after {args.timeout}s: {states}")
        if not promtool_done:
            text = http_get(metrics_url)
            if "peftd_gate_sparsity_ratio{" in text:
                r = subprocess.run([args.promtool, "check", "metrics"], input=text,
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    raise Failure(f"promtool check metrics on a live scrape:\n{r.stdout}{r.stderr}\n"
                                  f"--- the scrape:\n{text}")
                log(f"promtool check metrics: ok on a live scrape with job series ({len(text)} bytes)")
                promtool_done = True
        for metric in seen:
            if seen[metric] is None:
                result = prom.query(f'{metric}{{job_id="{first}"}}')
                good = [(l, v) for l, v in result if math.isfinite(v)]
                if good:
                    seen[metric] = good
                    labels, value = good[0]
                    log(f"Prometheus /api/v1/query {metric}{{job_id=\"{first}\"}}: {len(good)} "
                        f"series, e.g. {json.dumps(labels, sort_keys=True)} = {value:.4g}")
        if time.monotonic() >= next_list:
            next_list = time.monotonic() + 1.0
            listed = ctl.json("list", "--label", "test=prometheus_live", "--all")
            states = {j["id"]: j["state"] for j in listed.get("jobs", [])}
            if len(states) == len(jobs) and all(s in ("SUCCEEDED", "FAILED", "CANCELLED")
                                                for s in states.values()):
                break
        time.sleep(0.25)
    scraper.stop()
    log(f"jobs ended: {states}; {len(scraper.paths)} scrapes saved")

    problems = []
    for kind, job_id in jobs.items():
        if states.get(job_id) != "SUCCEEDED":
            error = ctl.json("get", job_id).get("error", {})
            problems.append(f"job {job_id} ({kind}) ended {states.get(job_id)}: "
                            f"{error.get('message', '(no error message)')}")
    for metric, got in seen.items():
        if got is None:
            # The series go when the job ends; last_over_time still reads the scraped samples.
            result = prom.query(f'last_over_time({metric}{{job_id="{first}"}}[10m])')
            if result:
                seen[metric] = result
                log(f"Prometheus: {metric} of {first} found after the job ended ({len(result)} series)")
            else:
                problems.append(f"Prometheus never returned {metric}{{job_id=\"{first}\"}}")
    loss = seen["peftd_train_loss"]
    if loss and not all(v > 0 for _, v in loss):
        problems.append(f"peftd_train_loss of {first} should be positive: {loss}")
    if loss and not all(l.get("method") == "lora" for l, _ in loss):
        problems.append(f"peftd_train_loss of {first} should carry method=\"lora\": {loss}")
    sparsity = seen["peftd_gate_sparsity_ratio"]
    if sparsity:
        if not all(0.0 <= v <= 1.0 for _, v in sparsity):
            problems.append(f"peftd_gate_sparsity_ratio outside [0, 1]: {sparsity}")
        if not all(l.get("module") for l, _ in sparsity):
            problems.append(f"peftd_gate_sparsity_ratio without a module label: {sparsity}")
    if not promtool_done:
        problems.append("no live scrape held peftd_gate_sparsity_ratio: promtool check metrics not run")

    # Alert rules loaded from alerts.yml and evaluated without error against the live series.
    rules = json.loads(http_get(f"{prom.url}/api/v1/rules"))
    for group in rules["data"]["groups"]:
        for rule in group["rules"]:
            if rule.get("health") not in ("ok", None):
                problems.append(f"alert rule {rule['name']}: {rule.get('health')}: {rule.get('lastError')}")
    if not rules["data"]["groups"]:
        problems.append("Prometheus loaded no rule group from deploy/prometheus/alerts.yml")

    # The dashboard against what the live server exposed while the jobs ran.
    checker = [sys.executable, os.path.join(src, "tests", "deploy", "check_dashboard.py"),
               "--source-dir", src, "--promtool", args.promtool]
    for path in scraper.paths:
        checker += ["--metrics-file", path]
    r = subprocess.run(checker, capture_output=True, text=True)
    print(r.stdout, end="")
    if r.returncode != 0:
        problems.append(f"check_dashboard.py against the live scrapes failed:\n{r.stdout}{r.stderr}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--prometheus", default=shutil.which("prometheus"))
    ap.add_argument("--promtool", default=shutil.which("promtool"))
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (logs, scrapes)")
    args = ap.parse_args()
    for tool in ("prometheus", "promtool"):
        path = getattr(args, tool)
        if not path or not os.access(path, os.X_OK):
            print(f"SKIP: {tool} not installed (Debian package prometheus: "
                  "scripts/install-deps.sh --groups tests)")
            return SKIP

    tmp = tempfile.mkdtemp(prefix="peftd-prometheus-")
    procs = Processes()
    problems = []
    try:
        problems = run(args, tmp, procs)
    except Failure as e:
        problems = [str(e)]
    finally:
        procs.stop()
    for p in problems:
        print(f"FAIL: {p}")
    if problems:
        for name in ("peftd.log", "prometheus.log"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                print(f"--- last lines of {path}")
                with open(path, errors="replace") as f:
                    print("".join(f.readlines()[-25:]), end="")
        print(f"(kept {tmp})")
        return 1
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    log("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks the deployment files of deploy/ without a Docker engine or a cluster.

  check_manifests.py [--source-dir DIR]

Parses every YAML file (compose, Prometheus, Grafana provisioning, Kubernetes) and checks that the
pieces agree with each other: ports, service names, mounted files that must exist, Secret,
ConfigMap and PVC names, label selectors, the GPU request, the image's user id. Runs
`docker compose config` and `kubectl kustomize` too when those tools are installed (they are not
part of scripts/install-deps.sh: the YAML checks above are what CI runs).
Needs python3-yaml (scripts/install-deps.sh, group tests). Exit 1 with every problem listed.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:
    print("check_manifests: python3-yaml is missing: run scripts/install-deps.sh")
    sys.exit(1)

GRPC_PORT = 50051
METRICS_PORT = 9464
IMAGE_UID = 10001

problems = []


def bad(msg):
    problems.append(msg)


def load_all(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        bad(f"{path}: {e}")
        return []


def load(path):
    docs = load_all(path)
    return docs[0] if docs else {}


def flag_value(args, flag):
    """The value of --flag=V or --flag V in a list of arguments, else None."""
    for i, a in enumerate(args or []):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def check_compose(src):
    d = os.path.join(src, "deploy", "docker")
    compose = load(os.path.join(d, "compose.yaml"))
    services = compose.get("services", {})
    missing = [n for n in ("peftd", "worker", "prometheus", "grafana") if n not in services]
    for name in missing:
        bad(f"compose.yaml: no service '{name}'")
    if missing:
        return
    peftd, worker = services["peftd"], services["worker"]

    for svc_name in ("peftd", "worker"):
        b = services[svc_name].get("build", {})
        df = os.path.join(d, b.get("context", "."), b.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(df):
            bad(f"compose.yaml: {svc_name}.build names {df}, which does not exist")
    cmd = peftd.get("command", [])
    if flag_value(cmd, "--local-workers") != "0":
        bad("compose.yaml: peftd must run with --local-workers=0 (the worker service is the fleet)")
    listen = flag_value(cmd, "--listen") or ""
    metrics = flag_value(cmd, "--metrics-listen") or ""
    if not listen.startswith("0.0.0.0:") or not metrics.startswith("0.0.0.0:"):
        bad("compose.yaml: peftd must listen on 0.0.0.0 (--listen, --metrics-listen) to be reachable "
            "from the other containers")
    grpc_port = listen.rsplit(":", 1)[-1]
    metrics_port = metrics.rsplit(":", 1)[-1]
    published = [str(p).rsplit(":", 1)[-1] for p in peftd.get("ports", [])]
    for port in (grpc_port, metrics_port):
        if port not in published:
            bad(f"compose.yaml: peftd does not publish port {port}")
    for p in peftd.get("ports", []) + services["prometheus"].get("ports", []) + \
            services["grafana"].get("ports", []):
        if not str(p).startswith("127.0.0.1:"):
            bad(f"compose.yaml: port {p} is published on every interface; publish on 127.0.0.1")
    wcmd = worker.get("command", [])
    if flag_value(wcmd, "--server") != f"peftd:{grpc_port}":
        bad(f"compose.yaml: the worker must dial peftd:{grpc_port} (--server)")
    if "peftd-worker" not in " ".join(worker.get("entrypoint", [])) or \
            "--token-file" not in " ".join(worker.get("entrypoint", [])):
        bad("compose.yaml: the worker service must run peftd-worker with a --token-file (it has no "
            "environment fallback for the token)")
    env = peftd.get("environment", {})
    if "PEFTD_AUTH_TOKEN" not in env or "PEFTD_TOKEN" not in worker.get("environment", {}):
        bad("compose.yaml: the server needs PEFTD_AUTH_TOKEN and the worker PEFTD_TOKEN")

    # Bind mounts that point into the repository must exist.
    mounts = {}
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            parts = str(v).split(":")
            if parts[0].startswith("."):
                host = os.path.normpath(os.path.join(d, parts[0]))
                if not os.path.exists(host):
                    bad(f"compose.yaml: {name} mounts {parts[0]}, which does not exist")
                mounts[(name, parts[1])] = host
            elif parts[0] not in compose.get("volumes", {}):
                bad(f"compose.yaml: {name} uses volume '{parts[0]}', not declared under volumes:")

    # Prometheus scrapes the peftd service on its metrics port.
    prom_path = mounts.get(("prometheus", "/etc/prometheus/prometheus.yml"))
    if not prom_path:
        bad("compose.yaml: prometheus does not mount deploy/prometheus/prometheus.yml")
    else:
        prom = load(prom_path)
        targets = [t for sc in prom.get("scrape_configs", []) for s in sc.get("static_configs", [])
                   for t in s.get("targets", [])]
        if f"peftd:{metrics_port}" not in targets:
            bad(f"prometheus.yml: no scrape target peftd:{metrics_port} (has {targets})")
        for rf in prom.get("rule_files", []):
            if ("prometheus", f"/etc/prometheus/{rf}") not in mounts:
                bad(f"compose.yaml: prometheus.yml loads {rf}, which compose does not mount")

    # Grafana: datasource at the prometheus service, dashboards folder mounted where the provider reads.
    prov = mounts.get(("grafana", "/etc/grafana/provisioning"))
    dashboards = mounts.get(("grafana", "/var/lib/grafana/dashboards"))
    if not prov or not dashboards:
        bad("compose.yaml: grafana must mount deploy/grafana/provisioning and deploy/grafana/dashboards")
        return
    ds = load(os.path.join(prov, "datasources", "prometheus.yaml"))
    urls = [x.get("url", "") for x in ds.get("datasources", [])]
    if "http://prometheus:9090" not in urls:
        bad(f"grafana datasource: expected url http://prometheus:9090, got {urls}")
    provider = load(os.path.join(prov, "dashboards", "peftd.yaml"))
    paths = [p.get("options", {}).get("path") for p in provider.get("providers", [])]
    if "/var/lib/grafana/dashboards" not in paths:
        bad(f"grafana dashboard provider reads {paths}, not the mounted /var/lib/grafana/dashboards")
    home = services["grafana"].get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    if home and not os.path.isfile(os.path.join(dashboards, os.path.basename(home))):
        bad(f"compose.yaml: the home dashboard {home} is not in deploy/grafana/dashboards")

    gpu = load(os.path.join(d, "compose.gpu.yaml"))
    devices = (gpu.get("services", {}).get("worker", {}).get("deploy", {}).get("resources", {})
               .get("reservations", {}).get("devices", []))
    if not any(x.get("driver") == "nvidia" and "gpu" in x.get("capabilities", []) for x in devices):
        bad("compose.gpu.yaml: the worker reserves no nvidia GPU")
    b = gpu.get("services", {}).get("worker", {}).get("build", {})
    if not os.path.isfile(os.path.join(d, b.get("context", "."), b.get("dockerfile", ""))):
        bad("compose.gpu.yaml: the worker's build.dockerfile does not exist")

    # A 2-rank gang (docs/operating.md "Gangs") needs two workers.
    gang = load(os.path.join(d, "compose.gang.yaml"))
    gang_services = gang.get("services", {})
    if set(gang_services) - set(services):
        bad(f"compose.gang.yaml: services {sorted(set(gang_services) - set(services))} are not in compose.yaml")
    replicas = gang_services.get("worker", {}).get("deploy", {}).get("replicas", 0)
    if not isinstance(replicas, int) or replicas < 2:
        bad(f"compose.gang.yaml: the worker needs deploy.replicas >= 2 for a 2-rank gang, got {replicas}")


def shim_name(src):
    """The file name the worker dlopens, as the loader spells it and CMake builds it."""
    loader = open(os.path.join(src, "worker", "data", "sentencepiece_loader.cc"), encoding="utf-8").read()
    m = re.search(r'kShimName\[\] = "([^"]+)"', loader)
    cmake = open(os.path.join(src, "worker", "data", "CMakeLists.txt"), encoding="utf-8").read()
    t = re.search(r"add_library\((\w+) SHARED", cmake)
    if not m or not t:
        bad("worker/data: cannot find the SentencePiece shim's name (kShimName, add_library SHARED)")
        return None
    if m.group(1) != f"lib{t.group(1)}.so":
        bad(f"worker/data: the loader opens {m.group(1)} but CMake builds lib{t.group(1)}.so")
    return m.group(1)


def check_shim_shipped(src, name, text):
    """The image ships the SentencePiece shim where the worker finds it: next to the binaries."""
    shim = shim_name(src)
    if shim is None:
        return
    if not re.search(rf'-name {re.escape(shim)}\b', text) or \
            not re.search(r'install -m 0755 "\$shim" /out/bin/', text):
        bad(f"{name}: the build stage must install {shim} into /out/bin (next to the binaries; "
            "peftd-worker dlopens it from its own folder)")
    bins = re.search(r"^COPY --from=build /out/bin/ (\S+)$", text, re.M)
    if not bins:
        bad(f"{name}: the runtime stage must COPY --from=build /out/bin/ (binaries and {shim})")
    for copied_to in re.findall(r"^COPY --from=build /out/bin/(\S+) ", text, re.M):
        bad(f"{name}: COPY /out/bin/{copied_to}: copy the whole folder, {shim} included")
    if "runtime-deps.sh" in text and not re.search(rf"runtime-deps\.sh[^\n]*(\\\n[^\n]*)*/out/bin/{re.escape(shim)}", text):
        bad(f"{name}: runtime-deps.sh must be given /out/bin/{shim} too (its libraries, e.g. "
            "libsentencepiece, must be in the runtime image)")


def check_run_syntax(name, text):
    """Every RUN command parses as /bin/sh (`sh -n`): a typo would only show at `docker build`."""
    joined = re.sub(r"\\\n", " ", text)
    for n, line in enumerate(joined.splitlines(), 1):
        if not line.startswith("RUN "):
            continue
        cmd = re.sub(r"^RUN\s+(--\S+\s+)*", "", line)
        r = subprocess.run(["sh", "-n", "-c", cmd], capture_output=True, text=True)
        if r.returncode != 0:
            bad(f"{name}: a RUN command does not parse as sh: {r.stderr.strip()} ({cmd[:60]}...)")


def check_dockerfiles(src):
    d = os.path.join(src, "deploy", "docker")
    for name in ("Dockerfile", "Dockerfile.cuda"):
        path = os.path.join(d, name)
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as e:
            bad(f"{name}: {e}")
            continue
        if not re.search(rf"^EXPOSE\s+{GRPC_PORT}\s+{METRICS_PORT}\s*$", text, re.M):
            bad(f"{name}: must EXPOSE {GRPC_PORT} {METRICS_PORT}")
        if not re.search(r"^USER\s+peftd", text, re.M):
            bad(f"{name}: the runtime stage must switch to the non-root user peftd")
        if f"--uid {IMAGE_UID}" not in text:
            bad(f"{name}: the peftd user must have uid {IMAGE_UID} (deploy/k8s relies on it)")
        if not re.search(r"^HEALTHCHECK .*\n?.*health", text, re.M):
            bad(f"{name}: no HEALTHCHECK on the gRPC health service")
        if 'VOLUME ["/data"]' not in text:
            bad(f"{name}: /data must be a volume")
        for copied in re.findall(r"^COPY (?!--from)(\S+) ", text, re.M):
            if copied != "." and not os.path.exists(os.path.join(src, copied)):
                bad(f"{name}: COPY {copied}: no such file in the repository")
        if not os.path.isfile(path + ".dockerignore"):
            bad(f"{name}: no {name}.dockerignore next to it (the build context would include build/)")
        check_shim_shipped(src, name, text)
        check_run_syntax(name, text)
    pkgs = [l.split("#")[0].strip() for l in open(os.path.join(d, "runtime-packages.txt"))]
    pkgs = [p for p in pkgs if p]
    if any(p.endswith("-dev") for p in pkgs):
        bad("runtime-packages.txt: a -dev package has no place in the runtime image")
    # dlopen'ed or linked by the worker's tokenizers: ldd of the binaries alone does not show the
    # shim's libsentencepiece, and ICU is named so that an image without it fails here, not at
    # the first NFC-normalized tokenizer.
    for needed in ("libsentencepiece0", "libicu72"):
        if needed not in pkgs:
            bad(f"runtime-packages.txt: {needed} is missing (the worker's tokenizers load it)")


def check_k8s(src):
    d = os.path.join(src, "deploy", "k8s")
    objs = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith((".yaml", ".yml")):
            continue
        for doc in load_all(os.path.join(d, f)):
            if not isinstance(doc, dict) or "kind" not in doc:
                bad(f"k8s/{f}: a document without kind")
                continue
            if doc["kind"] == "Kustomization":
                objs.setdefault("Kustomization", {})["k"] = (f, doc)
                continue
            if "apiVersion" not in doc or "name" not in doc.get("metadata", {}):
                bad(f"k8s/{f}: {doc['kind']} without apiVersion or metadata.name")
                continue
            objs.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = (f, doc)

    kust = objs.get("Kustomization", {}).get("k")
    if not kust:
        bad("k8s: no kustomization.yaml")
    else:
        listed = set(kust[1].get("resources", []))
        for r in listed:
            if not os.path.isfile(os.path.join(d, r)):
                bad(f"k8s/kustomization.yaml: resource {r} does not exist")
        for kind, named in objs.items():
            for name, (f, _) in named.items():
                if kind not in ("Kustomization", "Secret") and f not in listed:
                    bad(f"k8s/{f}: not listed in kustomization.yaml resources")

    def get(kind, name):
        return objs.get(kind, {}).get(name, (None, None))[1]

    sts = get("StatefulSet", "peftd")
    svc = get("Service", "peftd")
    dep = get("Deployment", "peftd-worker")
    missing = False
    for what, o in (("StatefulSet peftd", sts), ("Service peftd", svc), ("Deployment peftd-worker", dep),
                    ("Secret peftd-token", get("Secret", "peftd-token")),
                    ("ConfigMap peftd-config", get("ConfigMap", "peftd-config"))):
        if o is None:
            bad(f"k8s: no {what}")
            missing = True
    if missing:
        return

    # Server: one replica, a data volume, named ports the Service targets.
    if sts["spec"].get("replicas") != 1:
        bad("k8s StatefulSet peftd: replicas must be 1 (one SQLite database, one writer)")
    if not sts["spec"].get("volumeClaimTemplates"):
        bad("k8s StatefulSet peftd: no volumeClaimTemplates for /data")
    pod = sts["spec"]["template"]
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports.get("grpc") != GRPC_PORT or ports.get("metrics") != METRICS_PORT:
        bad(f"k8s StatefulSet peftd: container ports must be grpc={GRPC_PORT}, metrics={METRICS_PORT}")
    args = c.get("args", [])
    if flag_value(args, "--data-dir") not in [m["mountPath"] for m in c.get("volumeMounts", [])]:
        bad("k8s StatefulSet peftd: --data-dir is not a mounted volume")
    if not c.get("readinessProbe", {}).get("grpc"):
        bad("k8s StatefulSet peftd: the readiness probe should ask the gRPC health service")
    sel = svc["spec"].get("selector", {})
    labels = pod["metadata"].get("labels", {})
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        bad("k8s Service peftd: its selector does not match the StatefulSet's pods")
    for p in svc["spec"].get("ports", []):
        if p.get("targetPort") not in ports:
            bad(f"k8s Service peftd: targetPort {p.get('targetPort')} is not a container port name")
    ann = svc["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(METRICS_PORT):
        bad("k8s Service peftd: needs prometheus.io/scrape \"true\" and prometheus.io/port "
            f"\"{METRICS_PORT}\" annotations")
    if sts["spec"].get("serviceName") != "peftd":
        bad("k8s StatefulSet peftd: serviceName must be the peftd Service")

    # Worker: a GPU each, dials the Service, every $(VAR) defined.
    wc = dep["spec"]["template"]["spec"]["containers"][0]
    res = wc.get("resources", {})
    for part in ("requests", "limits"):
        if str(res.get(part, {}).get("nvidia.com/gpu")) != "1":
            bad(f"k8s Deployment peftd-worker: resources.{part} must ask for nvidia.com/gpu: 1")
    cm = get("ConfigMap", "peftd-config")["data"]
    env_names = {e["name"] for e in wc.get("env", [])}
    for ref in wc.get("envFrom", []):
        name = ref.get("configMapRef", {}).get("name")
        if name:
            if get("ConfigMap", name) is None:
                bad(f"k8s Deployment peftd-worker: envFrom ConfigMap {name} does not exist")
            env_names |= set(get("ConfigMap", name)["data"]) if get("ConfigMap", name) else set()
    for a in wc.get("args", []):
        for var in re.findall(r"\$\((\w+)\)", a):
            if var not in env_names:
                bad(f"k8s Deployment peftd-worker: args use $({var}), which no env or ConfigMap defines")
    if cm.get("PEFTD_SERVER", "").split(":")[0] != svc["metadata"]["name"] or \
            cm.get("PEFTD_SERVER", "").split(":")[-1] != str(GRPC_PORT):
        bad(f"k8s ConfigMap peftd-config: PEFTD_SERVER must be peftd:{GRPC_PORT}")

    # Shared references: secrets, PVCs, the image's uid.
    for kind, name in (("StatefulSet", "peftd"), ("Deployment", "peftd-worker")):
        spec = get(kind, name)["spec"]["template"]["spec"]
        if spec.get("securityContext", {}).get("runAsUser") != IMAGE_UID:
            bad(f"k8s {kind} {name}: runAsUser must be {IMAGE_UID}, the images' user")
        for v in spec.get("volumes", []):
            if "secret" in v and get("Secret", v["secret"]["secretName"]) is None:
                bad(f"k8s {kind} {name}: Secret {v['secret']['secretName']} is not defined")
            if "secret" in v and v["secret"].get("defaultMode", 0o644) & 0o006:
                bad(f"k8s {kind} {name}: the token file must not be readable by others (defaultMode)")
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                if get("PersistentVolumeClaim", claim) is None:
                    bad(f"k8s {kind} {name}: PVC {claim} is not defined")
        mounted = {m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        declared = {v["name"] for v in spec.get("volumes", [])}
        if kind == "StatefulSet":
            declared |= {t["metadata"]["name"] for t in get(kind, name)["spec"]["volumeClaimTemplates"]}
        for m in mounted - declared:
            bad(f"k8s {kind} {name}: mounts volume '{m}', which is not declared")


def check_tools(src):
    for script in ("scripts/install-deps.sh", "deploy/docker/runtime-deps.sh"):
        r = subprocess.run(["bash", "-n", os.path.join(src, script)], capture_output=True, text=True)
        if r.returncode != 0:
            bad(f"{script}: bash -n: {r.stderr.strip()}")
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        env = dict(os.environ, PEFTD_TOKEN="check-manifests")
        for files in (["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"]):
            cmd = [docker, "compose"] + [a for f in files for a in ("-f", os.path.join(src, "deploy", "docker", f))]
            r = subprocess.run(cmd + ["config", "-q"], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                bad(f"docker compose config ({' + '.join(files)}): {r.stderr.strip()}")
        print("check_manifests: docker compose config ran")
    else:
        print("check_manifests: no `docker compose` here; the YAML checks stand in for it")
    kubectl = shutil.which("kubectl")
    if kubectl:
        r = subprocess.run([kubectl, "kustomize", os.path.join(src, "deploy", "k8s")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            bad(f"kubectl kustomize deploy/k8s: {r.stderr.strip()}")
        print("check_manifests: kubectl kustomize ran")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source-dir", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    src = ap.parse_args().source_dir
    check_compose(src)
    check_dockerfiles(src)
    check_k8s(src)
    check_tools(src)
    for p in problems:
        print(p)
    print(f"check_manifests: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

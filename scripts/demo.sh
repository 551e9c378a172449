#!/usr/bin/env bash
# `make demo`: the first five minutes of a user, through the service.
#
#   scripts/demo.sh [BUILD_DIR]        (default build; JOBS=N build jobs, default nproc)
#
# Installs what is missing (scripts/install-deps.sh), builds peftd, peftd-worker and peftctl,
# starts peftd on loopback (free ports, state under BUILD_DIR/demo) with one local worker,
# uploads an example dataset, trains LoRA with the token gate while `peftctl submit --watch`
# shows the live progress, downloads the adapter, then runs one short job per method and prints
# a line for each with its eval loss before and after training, and ends with a 4-child sweep over
# the gate's λ and its `peftctl report` HTML file. Every process it starts is stopped on exit,
# Ctrl-C included.
# The in-process variant without the service stays available: `peftd-worker demo`.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${1:-${BUILD:-build}}
JOBS=${JOBS:-$(nproc)}
DEMO=$BUILD/demo
STEPS=${DEMO_STEPS:-300}       # the watched LoRA job
METHOD_STEPS=${DEMO_METHOD_STEPS:-100}
SWEEP_STEPS=${DEMO_SWEEP_STEPS:-60}  # each child of the λ sweep
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}

bold=""; dim=""; reset=""
if [ -t 1 ]; then bold=$'\e[1m'; dim=$'\e[2m'; reset=$'\e[0m'; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$reset"; }
note() { printf '   %s\n' "$*"; }
show() { printf '%s   $ %s%s\n' "$dim" "$*" "$reset"; }  # a command the user can type
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

started=$(date +%s)
peftd_pid=""
child_pid=""
# Runs a long command (a watch) in the background and waits for it: `wait` returns as soon as a
# trapped signal arrives, where a foreground command would delay the trap until it ends.
waitfor() {
  "$@" &
  child_pid=$!
  local rc=0
  wait "$child_pid" || rc=$?
  child_pid=""
  return $rc
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$child_pid" ]; then kill -TERM "$child_pid" 2>/dev/null || true; fi
  if [ -n "$peftd_pid" ] && kill -0 "$peftd_pid" 2>/dev/null; then
    kill -TERM "$peftd_pid" 2>/dev/null || true  # peftd stops its local worker itself
    for _ in $(seq 150); do kill -0 "$peftd_pid" 2>/dev/null || break; sleep 0.1; done
    # Still there after 15 s: SIGKILL. Its workers then get SIGTERM from the kernel
    # (PR_SET_PDEATHSIG, server/process_launcher.cc).
    kill -KILL "$peftd_pid" 2>/dev/null || true
    wait "$peftd_pid" 2>/dev/null || true
    [ $rc -eq 0 ] || note "peftd stopped; its log: $DEMO/peftd.log"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT
trap 'echo "demo: terminated" >&2; exit 143' TERM

# ---------------------------------------------------------------------------------------------
step "1/7 dependencies and build"
# What configuring the build tree needs (tests included, as `make test` uses the same tree; python3
# comes with the tests group); not the fuzzing and formatting tools of group dev.
scripts/install-deps.sh --groups build,torch,libs,tests
if [ ! -f "$BUILD/build.ninja" ]; then
  show "cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo"
  # shellcheck disable=SC2086  # CMAKE_FLAGS holds several flags
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_FLAGS:-} >/dev/null
fi
t0=$(date +%s)
show "cmake --build $BUILD --target peftd peftd-worker peftctl -j $JOBS"
cmake --build "$BUILD" --target peftd peftd-worker peftctl -j "$JOBS" || die "the build failed (output above)"
note "built in $(( $(date +%s) - t0 ))s"

PEFTD=$BUILD/server/peftd
WORKER=$BUILD/worker/peftd-worker
PEFTCTL=$BUILD/clients/cli/peftctl
for b in "$PEFTD" "$WORKER" "$PEFTCTL"; do [ -x "$b" ] || die "$b was not built"; done
peftctl() { "$PEFTCTL" "$@"; }
command -v python3 >/dev/null || die "python3 is needed to read peftctl's JSON (apt-get install python3)"
# Reads one value out of the JSON on stdin: json_field 'j["progress"]["eval_loss"]'.
json_field() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

# ---------------------------------------------------------------------------------------------
step "2/7 the built-in tiny model"
rm -rf "$DEMO"
mkdir -p "$DEMO/models" "$DEMO/adapters"
show "peftd-worker make-tiny-model $DEMO/models/tiny-llama"
"$WORKER" make-tiny-model "$DEMO/models/tiny-llama" >/dev/null
note "a deterministic LLaMA-shaped model in the Hugging Face layout: $(ls "$DEMO/models/tiny-llama" | tr '\n' ' ')"

# ---------------------------------------------------------------------------------------------
step "3/7 the service"
show "peftd --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir $DEMO/data --model-root $DEMO/models --local-workers 1 --worker-binary $WORKER"
# Its own session: Ctrl-C at the terminal reaches this script alone, which then stops peftd in
# order (peftd stops its worker).
# OMP_WAIT_POLICY=PASSIVE: LibTorch's OpenMP threads sleep between parallel regions instead of
# spinning; on a machine whose cores are busy with anything else (a build), spinning threads
# slow the tiny model's steps down (docs/performance.md: 179 ms a step spinning, 71 ms passive,
# with two busy processes on 2 cores).
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} setsid "$PEFTD" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir "$DEMO/data" \
  --model-root "$DEMO/models" --local-workers 1 --worker-binary "$WORKER" --port-file "$DEMO/peftd.port" \
  >"$DEMO/peftd.log" 2>&1 &
peftd_pid=$!
for _ in $(seq 300); do
  [ -s "$DEMO/peftd.port" ] && break
  kill -0 "$peftd_pid" 2>/dev/null || { tail -n 20 "$DEMO/peftd.log" >&2; die "peftd exited (log: $DEMO/peftd.log)"; }
  sleep 0.1
done
[ -s "$DEMO/peftd.port" ] || die "peftd did not start in 30s (log: $DEMO/peftd.log)"
read -r grpc_field metrics_field <"$DEMO/peftd.port"
export PEFTD_SERVER=${grpc_field#grpc=}
METRICS_URL="http://${metrics_field#metrics=}/metrics"
note "peftd pid $peftd_pid: gRPC $PEFTD_SERVER, metrics $METRICS_URL, log $DEMO/peftd.log"
note "peftctl talks to it through PEFTD_SERVER=$PEFTD_SERVER"
show "peftctl health"
peftctl health | sed 's/^/   /'
show "peftctl models list"
peftctl models list | sed 's/^/   /'

# ---------------------------------------------------------------------------------------------
step "4/7 a dataset, a job, its adapter"
TRAIN_FILE=examples/datasets/tiny-lm-train.jsonl
VAL_FILE=examples/datasets/tiny-lm-val.jsonl
show "peftctl datasets upload $TRAIN_FILE"
TRAIN=$(peftctl --json datasets upload "$TRAIN_FILE" | json_field 'j["id"]')
VAL=$(peftctl --json datasets upload "$VAL_FILE" | json_field 'j["id"]')
note "$TRAIN_FILE -> $TRAIN (validation set $VAL_FILE -> $VAL)"

# Hyper-parameters that move the tiny model in a few dozen steps (examples/jobs/lora-gated.json).
COMMON=(--model tiny-llama --train "$TRAIN" --val "$VAL" --batch-size 8 --max-seq-len 64
        --target-modules "q_proj,v_proj,o_proj,down_proj" --warmup-steps 5 --seed 42)
GATE=(--gate-s 0.02 --gate-lambda 0.002)
show "peftctl submit --model tiny-llama --method lora --gate --train $TRAIN --val $VAL --steps $STEPS --watch"
note "(the demo also passes ${COMMON[*]:6} --rank 4 --alpha 8 --lr 1e-2 ${GATE[*]})"
rc=0
waitfor "$PEFTCTL" submit "${COMMON[@]}" --method lora --rank 4 --alpha 8 --lr 1e-2 "${GATE[@]}" \
  --steps "$STEPS" --eval-interval 50 --name demo-first --label demo=first --watch || rc=$?
[ $rc -eq 0 ] || die "the job did not succeed (peftctl exit $rc; log: $DEMO/peftd.log)"
FIRST=$(peftctl --json list --label demo=first | json_field 'j["jobs"][0]["id"]')
show "peftctl download $FIRST -o $DEMO/adapters/lora_S"
peftctl download "$FIRST" -o "$DEMO/adapters/lora_S" | sed 's/^/   /'
note "adapter (Hugging Face PEFT layout): $DEMO/adapters/lora_S/ ($(ls "$DEMO/adapters/lora_S" | tr '\n' ' '))"
note "metrics: curl -s $METRICS_URL | grep ^peftd_"

# ---------------------------------------------------------------------------------------------
step "5/7 one short job per method, through the service ($METHOD_STEPS steps each, token gate on)"
# Learning rates per method as in `peftd-worker demo`: HUT and AdaDHP move slower per step.
declare -A LR=([lora]=1e-2 [dora]=1e-2 [adalora]=5e-2 [hut]=1e-1 [adadhp]=1e-1)
METHODS=(lora dora adalora hut adadhp)
declare -A JOB
for m in "${METHODS[@]}"; do
  rank=(--rank 4)
  [ "$m" = adadhp ] && rank=()
  show "peftctl submit --model tiny-llama --method $m --gate --train $TRAIN --val $VAL --steps $METHOD_STEPS"
  JOB[$m]=$(peftctl --json submit "${COMMON[@]}" --method "$m" "${rank[@]}" --lr "${LR[$m]}" \
    "${GATE[@]}" --steps "$METHOD_STEPS" --name "demo-${m}_S" --label demo=methods |
    json_field 'j["id"]')
done
note "queued $(for m in "${METHODS[@]}"; do printf '%s ' "${JOB[$m]}"; done); the local worker runs them one after another"

step "6/7 results (from peftctl --json get)"
# One line per job from `peftctl --json get` (protobuf JSON: 64-bit integers are strings).
# A gate that stayed open gets a note (argv[2]): τ moves by at most about s a step, so a method
# whose changes are large relative to the layer's output keeps every token on for a while.
SUMMARY_PY=$(cat <<'PY'
import json, sys
j, name, notes, before = json.load(sys.stdin), sys.argv[1], sys.argv[2], sys.argv[3]
p = j.get("progress", {})
trainable, total = int(j.get("trainable_parameters", 0)), int(j.get("total_parameters", 0))
gate = j.get("spec", {}).get("token_gate", {})
gated = gate.get("enabled", False)
pct = "%.3f%%" % (100.0 * trainable / total) if total else "-"
eval_loss = "%.4f" % p.get("eval_loss", 0) if p.get("has_eval") else "-"
sparsity = "%.1f%%" % (100.0 * p.get("gate_sparsity", 0)) if gated else "-"
taus = [g.get("tau", 0.0) for g in p.get("gates", [])]
tau = sum(taus) / len(taus) if taus else None
print("   %-10s %-10s %6s %11s %10s %10s %9s %9s %7s %10.0f  %s" % (
    name, j["state"].lower(), p.get("step", "0"), before, eval_loss, "{:,}".format(trainable), pct,
    sparsity, "%.3f" % tau if tau is not None else "-", p.get("tokens_per_second", 0), j["id"]))
steps, s = int(p.get("step", 0)), gate.get("s", 0)
if gated and tau is not None and p.get("gate_sparsity", 0) < 0.005 and steps > 0:
    if tau >= 0.5 * s * steps:
        why = ("as it should be: τ rose to %.2f (it moves by at most about s = %g a step) and "
               "every token's change ‖Δ‖/‖base‖ is still larger than that; more steps or a "
               "larger --gate-s close it" % (tau, s))
    else:
        why = ("τ is only %.3g: it is not moving, s = %g is small for %d steps or λ too weak "
               "(docs/token-gate.md, Reading it)" % (tau, s, steps))
    with open(notes, "a", encoding="utf-8") as f:
        f.write("%s: the gate is still fully open after %d steps, %s.\n" % (name, steps, why))
PY
)
NOTES=$DEMO/summary-notes.txt
: >"$NOTES"
printf '   %-10s %-10s %6s %11s %10s %10s %9s %9s %7s %10s  %s\n' method state steps "eval before" \
  "eval after" trainable percent sparsity tau "tokens/s" job
# The eval loss before training: the worker evaluates every job once before its first step (the
# adapter as initialised); its event log keeps that evaluation as the progress of step 0.
BEFORE_PY='
import json, sys
for e in json.load(sys.stdin).get("events", []):
    p = e.get("progress", {})
    if p.get("has_eval") and int(p.get("step", 0)) == 0:
        print("%.4f" % p.get("eval_loss", 0)); break
else:
    print("-")'
before_loss() { peftctl --json events "$1" | python3 -c "$BEFORE_PY"; }
summary() { peftctl --json get "$1" | python3 -c "$SUMMARY_PY" "$2" "$NOTES" "$3"; }
failed=0
summary "$FIRST" lora_S "$(before_loss "$FIRST")"
for m in "${METHODS[@]}"; do
  rc=0
  waitfor "$PEFTCTL" watch "${JOB[$m]}" >/dev/null 2>&1 || rc=$?
  summary "${JOB[$m]}" "${m}_S" "$(before_loss "${JOB[$m]}")"
  [ $rc -eq 0 ] || failed=1
done

while IFS= read -r line; do note "$line"; done <"$NOTES"
note "every method starts where the base model is (its adapter changes nothing at initialisation),"
note "so 'eval before' is the base model's loss on the validation set; 'eval after' is what it learned."

# ---------------------------------------------------------------------------------------------
step "7/7 a sweep over the gate's λ, and its report"
LAMBDAS=1e-6,1e-4,1e-2,1  # four decades apart, up to the largest value a spec takes
show "peftctl sweep submit --model tiny-llama --method lora --gate --train $TRAIN --val $VAL --steps $SWEEP_STEPS --grid token_gate.lambda=$LAMBDAS --name demo-lambda"
SWEEP=$(peftctl --json sweep submit "${COMMON[@]}" --method lora --rank 4 --alpha 8 --lr 1e-2 \
  "${GATE[@]}" --steps "$SWEEP_STEPS" --grid "token_gate.lambda=$LAMBDAS" --name demo-lambda \
  --label demo=sweep | json_field 'j["id"]')
show "peftctl sweep watch $SWEEP"
rc=0
waitfor "$PEFTCTL" sweep watch "$SWEEP" || rc=$?
[ $rc -eq 0 ] || failed=1
REPORT=$DEMO/sweep-report.html
show "peftctl report $SWEEP -o $REPORT"
peftctl report "$SWEEP" -o "$REPORT" --force | sed 's/^/   /'
note "λ pushes τ up for every token that is on; over $SWEEP_STEPS steps of the tiny model τ rises by about s a step"
note "whatever λ is, so the sparsities stay close: compare them, and eval loss against sparsity, in the report"
note "report (one offline HTML file, open it in a browser): $REPORT"
echo
note "adapter: $DEMO/adapters/lora_S   metrics: $METRICS_URL   server log: $DEMO/peftd.log"
note "each job's events: peftctl events JOB; its adapter: peftctl download JOB -o DIR"
note "demo finished in $(( $(date +%s) - started ))s; stopping peftd"
[ $failed -eq 0 ] || die "a job did not succeed (peftctl events JOB says why)"

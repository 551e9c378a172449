#!/usr/bin/env bash
# Runs every benchmark binary under BUILD/bench and prints their JSON, one document per line.
# bench_train runs three times, in the configurations docs/performance.md quotes:
#   tiny model, batch 1 x 32 tokens  (per-op overhead dominates)
#   tiny model, batch 8 x 128 tokens (small GEMMs dominate)
#   ~100M LLaMA-shaped model, batch 8 x 128 (large GEMMs dominate; 4 measured steps per method)
#   and the tiny model's per-step counts of ATen ops, autograd nodes and allocations, every
#   variant and the peer (--count-ops; reproducible whatever the machine's load)
# bench_epoch runs one epoch over real data (docs/performance.md, "One epoch over real data"):
#   tiny model: GSM8K (1,319 records) and Self-Instruct (427), batch 8
#   ~100M model: the first 32 GSM8K records, batch 8 (4 steps)
set -euo pipefail
build=${1:-build}
found=0
for b in $(find "$build/bench" -maxdepth 2 -type f -executable -name 'bench_*' | sort); do
  found=1
  if [ "$(basename "$b")" = bench_train ]; then
    for args in "--config tiny --batch 1 --seq 32 --steps 200" \
                "--config tiny --batch 8 --seq 128 --steps 30" \
                "--config 100m --batch 8 --seq 128 --steps 4 --warmup 1" \
                "--config tiny --batch 1 --seq 32 --steps 5 --warmup 2 --threads 1 --count-ops"; do
      echo "== $b $args" >&2
      # shellcheck disable=SC2086  # the arguments are words on purpose
      "$b" $args
    done
    continue
  fi
  if [ "$(basename "$b")" = bench_epoch ]; then
    for args in "--config tiny --data gsm8k" \
                "--config tiny --data self-instruct" \
                "--config 100m --data gsm8k --records 32"; do
      echo "== $b $args" >&2
      # shellcheck disable=SC2086
      "$b" $args
    done
    continue
  fi
  echo "== $b" >&2
  "$b"
done
[ $found -eq 1 ] || echo '{"note":"no benchmarks built"}'

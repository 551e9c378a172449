#!/usr/bin/env bash
# Runs every benchmark binary under BUILD/bench and prints their JSON, one document per line.
set -euo pipefail
build=${1:-build}
found=0
for b in $(find "$build/bench" -maxdepth 2 -type f -executable -name 'bench_*' | sort); do
  found=1
  echo "== $b" >&2
  "$b"
done
[ $found -eq 1 ] || echo '{"note":"no benchmarks built"}'

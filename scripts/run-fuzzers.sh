#!/usr/bin/env bash
# Runs every fuzz target under FUZZ_BUILD/fuzz for SECONDS each, with its seed corpus when present.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
for f in $(find "$build/fuzz" -maxdepth 1 -type f -executable -name 'fuzz_*' | sort); do
  name=$(basename "$f")
  corpus="$build/corpus/$name"
  mkdir -p "$corpus"
  seeds="$root/fuzz/seeds/$name"
  [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
  echo "== $name for ${seconds}s" >&2
  "$f" -max_total_time="$seconds" -print_final_stats=1 "$corpus" 2>&1 | tail -n 15
done

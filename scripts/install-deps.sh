#!/usr/bin/env bash
# Installs exactly the Debian 12 packages peftd needs. Idempotent: when nothing is missing it only
# asks dpkg and returns in well under a second.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git clang-14 libclang-rt-14-dev clang-format
  # LibTorch (CPU) and a real BLAS: without libopenblas0-openmp LibTorch falls back to the
  # reference BLAS, ~13x slower on a 512x512 matmul.
  libtorch-dev libopenblas0-openmp
  # a malloc that keeps its memory: glibc's re-faults every page of a 100M model each step
  libjemalloc-dev
  # RPC and storage
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev
  libsqlitecpp-dev libsqlite3-dev prometheus-cpp-dev
  # parsing, tokenizers (ICU: Unicode normalization for NFC normalizers), CLI, logging
  nlohmann-json3-dev libre2-dev libsentencepiece-dev libicu-dev libcli11-dev libspdlog-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev prometheus python3-torch python3-numpy
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

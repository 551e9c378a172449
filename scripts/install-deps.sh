#!/usr/bin/env bash
# Installs exactly the Debian 12 packages peftd needs. Idempotent: when nothing is missing it only
# asks dpkg and returns in well under a second.
#
#   scripts/install-deps.sh                      every group (a developer machine, CI)
#   scripts/install-deps.sh --groups build,torch,libs   what building the binaries needs (the
#                                                Docker build stage; Dockerfile.cuda leaves out
#                                                torch, it brings its own CUDA LibTorch)
set -euo pipefail

declare -A GROUP
# toolchain for building the binaries
GROUP[build]="build-essential cmake ninja-build pkg-config ccache git"
# LibTorch (CPU) and a real BLAS: without libopenblas0-openmp LibTorch falls back to the
# reference BLAS, ~13x slower on a 512x512 matmul. libgloo-dev: the headers c10d's
# ProcessGroupGloo needs (data-parallel training, worker/train/data_parallel.cc; LibTorch itself
# already links libgloo).
GROUP[torch]="libtorch-dev libopenblas0-openmp libgloo-dev"
# RPC and storage; parsing, tokenizers (ICU: NFC normalizers), CLI (and its YAML job files),
# logging; a malloc that keeps its memory (glibc's re-faults every page of a 100M model each step)
# libblas-dev: the CBLAS header and link name of the fused autograd nodes (adapters/cpu_gemm.cc;
# at run time libblas.so.3 is OpenBLAS when libopenblas0-openmp is installed).
GROUP[libs]="libblas-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libssl-dev libsqlitecpp-dev libsqlite3-dev prometheus-cpp-dev
  nlohmann-json3-dev libre2-dev libsentencepiece-dev libicu-dev libcli11-dev libyaml-cpp-dev
  libspdlog-dev libjemalloc-dev"
# developer tools: fuzzing (clang + libFuzzer runtime) and formatting
GROUP[dev]="clang-14 libclang-rt-14-dev clang-format"
# tests and benchmarks (prometheus ships promtool; openssl makes test certificates; python3-yaml
# parses the deploy manifests)
GROUP[tests]="libgtest-dev libgmock-dev googletest libbenchmark-dev prometheus openssl python3-torch
  python3-numpy python3-yaml"
ALL_GROUPS="build torch libs dev tests"

groups="$ALL_GROUPS"
while [ $# -gt 0 ]; do
  case "$1" in
    --groups) groups="${2//,/ }"; shift 2 ;;
    --groups=*) groups="${1#--groups=}"; groups="${groups//,/ }"; shift ;;
    *) echo "install-deps: unknown argument '$1' (usage: install-deps.sh [--groups ${ALL_GROUPS// /,}])" >&2
       exit 2 ;;
  esac
done

PACKAGES=()
for g in $groups; do
  if [ -z "${GROUP[$g]+set}" ]; then
    echo "install-deps: unknown group '$g' (known: $ALL_GROUPS)" >&2
    exit 2
  fi
  # shellcheck disable=SC2206  # word splitting of the group's list is the point
  PACKAGES+=(${GROUP[$g]})
done

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

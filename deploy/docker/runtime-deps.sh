#!/usr/bin/env bash
# Prints, one a line and sorted, the dpkg packages that own the shared libraries the given binaries
# load (ldd), leaving out libraries under the folders given with --skip (a LibTorch copied into
# the image rather than installed from a package).
#
#   deploy/docker/runtime-deps.sh [--skip DIR]... BINARY...
#
# Dockerfile.cuda runs it in its build stage to name the runtime packages of whatever Ubuntu
# release the CUDA base image has; tests/deploy/runtime_packages_test.sh runs it on this machine's
# build to check deploy/docker/runtime-packages.txt. Exit 1 when a library is not found or is not
# owned by any package (it would be missing from the runtime image).
set -euo pipefail

skips=()
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip) skips+=("$(realpath -m "$2")"); shift 2 ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || { echo "usage: runtime-deps.sh [--skip DIR]... BINARY..." >&2; exit 2; }

status=0
libs=()  # "binary|name|path|realpath" of every library to own
for bin in "${bins[@]}"; do
  [ -x "$bin" ] || { echo "runtime-deps: $bin: not an executable" >&2; exit 1; }
  # Lines look like "libfoo.so.1 => /usr/lib/x86_64-linux-gnu/libfoo.so.1 (0x...)".
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if [ "$path" = "not" ]; then
      echo "runtime-deps: $bin needs $name, which is not found" >&2
      status=1
      continue
    fi
    real="$(realpath "$path")"
    skip=0
    for s in "${skips[@]+"${skips[@]}"}"; do
      case "$real" in "$s"/*) skip=1 ;; esac
    done
    [ $skip -eq 0 ] && libs+=("$bin|$name|$path|$real")
  done < <(ldd "$bin")
done

# dpkg records a file under the path its package shipped; with merged /usr that may be the /lib or
# the /usr/lib spelling, of the symlink or of its target. Ask for every spelling in one dpkg call
# (each call reads the whole file database).
spellings() { local p; for p in "$1" "$2"; do echo "$p"; echo "${p#/usr}"; echo "/usr${p#/usr}"; done; }
declare -A owner_of
if [ ${#libs[@]} -gt 0 ]; then
  mapfile -t queries < <(for l in "${libs[@]}"; do IFS='|' read -r _ _ path real <<<"$l"; spellings "$path" "$real"; done | sort -u)
  while IFS= read -r line; do
    pkg="${line%%: /*}"; file="/${line#*: /}"
    owner_of["$file"]="${pkg%%:*}"
  done < <(dpkg -S "${queries[@]}" 2>/dev/null | grep -v '^diversion by')
fi

declare -A pkgs
for l in "${libs[@]+"${libs[@]}"}"; do
  IFS='|' read -r bin name path real <<<"$l"
  owner=""
  while read -r cand; do
    [ -n "${owner_of[$cand]+set}" ] && { owner="${owner_of[$cand]}"; break; }
  done < <(spellings "$path" "$real")
  if [ -z "$owner" ]; then
    echo "runtime-deps: $bin loads $real ($name), which no package owns" >&2
    status=1
    continue
  fi
  pkgs["$owner"]=1
done

printf '%s\n' "${!pkgs[@]}" | sort
exit $status

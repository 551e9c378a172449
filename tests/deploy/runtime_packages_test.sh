#!/usr/bin/env bash
# Checks deploy/docker/runtime-packages.txt (what the runtime image installs) against the binaries
# built on this Debian 12 machine:
#   - every package owning a shared library the binaries load (deploy/docker/runtime-deps.sh) is
#     listed, or is pulled in by a listed package's dependencies, or is in every Debian image
#     (Essential / Priority: required);
#   - every listed package exists in the archive (a typo would only show at `docker build`);
#   - no listed package is a -dev package.
#
#   runtime_packages_test.sh SOURCE_DIR BINARY...
set -euo pipefail

src="$1"; shift
list="$src/deploy/docker/runtime-packages.txt"
[ $# -gt 0 ] || { echo "runtime_packages_test: no binary given"; exit 1; }

mapfile -t listed < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
echo "runtime_packages_test: ${#listed[@]} packages listed; binaries: $*"

status=0
needed="$("$src/deploy/docker/runtime-deps.sh" "$@")" || status=1

# What apt installs along with the listed packages (Depends and Pre-Depends, recursively).
closure="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances "${listed[@]}" 2>/dev/null | grep -v '^ ' | sed 's/:.*//' | sort -u)"
base="$(dpkg-query -W -f='${Package} ${Essential} ${Priority}\n' | awk '$2 == "yes" || $3 == "required" {print $1}' | sort -u)"

for p in $needed; do
  if printf '%s\n' "${listed[@]}" | grep -qx "$p"; then continue; fi
  if grep -qx "$p" <<<"$closure"; then continue; fi
  if grep -qx "$p" <<<"$base"; then continue; fi
  echo "runtime_packages_test: the binaries load a library of '$p', which runtime-packages.txt neither lists nor pulls in"
  status=1
done

have_lists=0
compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null && have_lists=1
for p in "${listed[@]}"; do
  case "$p" in *-dev) echo "runtime_packages_test: '$p' is a -dev package"; status=1 ;; esac
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then continue; fi
  if [ $have_lists -eq 0 ]; then
    echo "runtime_packages_test: no apt lists (apt-get update): cannot check that '$p' exists"
    continue
  fi
  # Captured first: `grep -q` would close the pipe early and pipefail turn that into a failure.
  policy="$(apt-cache policy "$p" 2>/dev/null)"
  if ! grep -q 'Candidate: [^(]' <<<"$policy"; then
    echo "runtime_packages_test: '$p' is not a Debian package (apt-cache policy has no candidate)"
    status=1
  fi
done

echo "runtime_packages_test: needed: $(echo $needed)"
[ $status -eq 0 ] && echo "runtime_packages_test: ok"
exit $status

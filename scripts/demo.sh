#!/usr/bin/env bash
# demo.sh: roam's main promise, live (`make demo` runs it after deps and
# build). bin/roamdemo builds network namespaces (two VMs and an outside
# client), starts roamd, configures it with roamctl, runs a UDP stream and
# a TCP download through a public IP, moves the record from the first VM
# to the second while they run, prints what happens, and tears it all down
# (also on Ctrl-C). See cmd/roamdemo and internal/netlab/demo.go.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run it as root (sudo make demo): it creates network namespaces and TAP devices" >&2
  exit 1
fi
exec bin/roamdemo "$@"

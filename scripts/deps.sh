#!/usr/bin/env bash
# deps.sh installs what roam's tests and demo need on a fresh Debian machine:
# Go modules, and (as root) the Debian packages the privileged tests use.
# It does nothing that is already done, so it is cheap to run every time.
set -euo pipefail
cd "$(dirname "$0")/.."

go mod download

# Debian packages: command -> package.
declare -A want=(
  [ip]=iproute2
  [ping]=iputils-ping
  [nft]=nftables
  [qemu-system-x86_64]=qemu-system-x86   # qemu/: real VMs (software emulation)
  [busybox]=busybox-static
  [etcd]=etcd-server                     # internal/etcdstore: tests run a real etcd
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: not root; skipping Debian packages: ${missing[*]} (privileged tests will skip)" >&2
    exit 0
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

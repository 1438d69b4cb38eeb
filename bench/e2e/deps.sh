#!/usr/bin/env bash
# deps.sh installs the Debian packages that `make bench-e2e` needs: iperf3 for
# throughput, nftables and conntrack for the kernel arm, openvswitch-switch for
# the OVS arm, ethtool, iproute2 and ping. It installs only what is missing and
# runs `apt-get update` once, before the first install.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "bench-e2e: must run as root (network namespaces, TAP devices, nftables)" >&2
  exit 1
fi

# command -> Debian package.
declare -A want=(
  [ip]=iproute2
  [ping]=iputils-ping
  [iperf3]=iperf3
  [nft]=nftables
  [conntrack]=conntrack
  [ethtool]=ethtool
  [ovs-vswitchd]=openvswitch-switch
  [ovsdb-server]=openvswitch-switch
  [ovs-vsctl]=openvswitch-common
  [ovs-ofctl]=openvswitch-common
)
missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/lib/openvswitch-switch/$cmd" ]; then
    pkg=${want[$cmd]}
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "bench-e2e deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps Debian's maintainer scripts from starting the system
  # Open vSwitch service: the benchmark starts its own daemons in a temp dir.
  norc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    norc=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || { ((norc)) && rm -f /usr/sbin/policy-rc.d; exit 1; }
  ((norc)) && rm -f /usr/sbin/policy-rc.d
fi
exit 0

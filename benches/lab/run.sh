#!/usr/bin/env bash
# The HA lab (issue 7): two apilb LBs sharing a VRRP VIP and three stand-in kube-apiservers,
# each in its own network namespace, configured by `apilb bootstrap`; a client drives a load
# loop and kubectl through the VIP while six drills run. Prints the drill table at the end.
# `bgp` as the first argument runs the BGP lab instead (issue 13): three active LB hosts
# announcing the VIP through BIRD 2 to a router that spreads flows by ECMP.
#
# Usage: sudo benches/lab/run.sh [bgp] [extra cargo test args]
#   APILB_LAB_LOG=apilb=debug sudo -E benches/lab/run.sh   # LB logs at debug
# Needs root (network namespaces, raw VRRP sockets), iproute2 and kubectl; the BGP lab also
# bird2. About a minute each.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "benches/lab/run.sh needs root (network namespaces): sudo $0" >&2
  exit 1
fi
export APILB_REQUIRE_PRIVILEGED=1
test=lab::ha_lab_drills
if [ "${1:-}" = bgp ]; then
  test=lab_bgp::bgp_lab_drills
  shift
fi
exec cargo test --test it "$@" "$test" -- --exact --nocapture --test-threads=1

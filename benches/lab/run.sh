#!/usr/bin/env bash
# The HA lab (issue 7): two apilb LBs sharing a VRRP VIP and three stand-in kube-apiservers,
# each in its own network namespace, configured by `apilb bootstrap`; a client drives a load
# loop and kubectl through the VIP while six drills run. Prints the drill table at the end.
#
# Usage: sudo benches/lab/run.sh [extra cargo test args]
#   APILB_LAB_LOG=apilb=debug sudo -E benches/lab/run.sh   # LB logs at debug
# Needs root (network namespaces, raw VRRP sockets), iproute2 and kubectl. About a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "benches/lab/run.sh needs root (network namespaces): sudo $0" >&2
  exit 1
fi
export APILB_REQUIRE_PRIVILEGED=1
exec cargo test --test it "$@" lab::ha_lab_drills -- --exact --nocapture --test-threads=1

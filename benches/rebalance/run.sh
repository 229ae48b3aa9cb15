#!/usr/bin/env bash
# Rebalance drill: apilb vs HAProxy leastconn vs a max-connection-age timer while one of
# three apiservers is stopped and restored under 300 long-lived clients (issue 14).
# See benches/rebalance/README.md.
#
# Usage: benches/rebalance/run.sh [drill options]   e.g. --modes apilb --clients 100
#        benches/rebalance/run.sh --help             every option
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if ! command -v haproxy >/dev/null 2>&1; then
    echo "haproxy is not installed (apt-get install haproxy); run with --modes apilb,maxage" >&2
fi
exec benches/common/harness.sh rebalance "$@"

#!/usr/bin/env bash
# L4 benchmark: apilb vs HAProxy vs nginx on loopback. See benches/l4/README.md.
#
# Usage: benches/l4/run.sh [harness options]     e.g. --proxies haproxy,nginx --duration 2s
#        benches/l4/run.sh --help                 every harness option
# Env:   L4_NO_INSTALL=1 skips the apt-get step.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# 1. HAProxy and nginx (with its stream module) from Debian, if missing.
if [ -z "${L4_NO_INSTALL:-}" ]; then
    missing=()
    command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
    command -v nginx >/dev/null 2>&1 || missing+=(nginx)
    [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
    if [ "${#missing[@]}" -gt 0 ]; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "installing ${missing[*]}" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
    fi
fi

# 2. File descriptors: 10,000 idle connections cost a proxy 20,000. Without
#    CAP_SYS_RESOURCE only the hard limit is reachable; the harness then lowers the idle
#    connection count to fit and says so.
ulimit -n 262144 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# 3. apilb (release) and the harness.
exec benches/common/harness.sh l4 "$@"

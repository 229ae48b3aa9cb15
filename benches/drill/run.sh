#!/usr/bin/env bash
# Failure drill: apilb vs HAProxy while one of three apiservers is killed, hung or
# drained under load (issue 3). See benches/drill/README.md.
#
# Usage: benches/drill/run.sh [drill options]    e.g. --proxies apilb --events hung
#        benches/drill/run.sh --help              every option
# Env:   DRILL_NO_INSTALL=1 skips the apt-get step.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# 1. HAProxy from Debian, if missing.
if [ -z "${DRILL_NO_INSTALL:-}" ] && ! command -v haproxy >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing haproxy" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq haproxy >&2
fi

# 2. apilb (release) and the drill.
exec benches/common/harness.sh drill "$@"

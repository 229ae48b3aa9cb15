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
cargo build --release --bin apilb >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
drill="$(cargo bench --bench drill --no-run --message-format=json 2>/dev/null \
    | grep '"kind":\["bench"\]' | grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4)"
if [ -z "$drill" ] || [ ! -x "$drill" ]; then
    echo "error: could not build the drill (try: cargo bench --bench drill --no-run)" >&2
    exit 1
fi

# 3. Run. The drill stops every process it started, also on error and SIGINT/SIGTERM.
args=("$@")
case " $* " in
    *" --apilb-bin"*) ;;
    *) args=(--apilb-bin "$target_dir/release/apilb" "${args[@]}") ;;
esac
exec "$drill" "${args[@]}"

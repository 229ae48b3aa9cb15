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
cargo build --release --bin apilb >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
drill="$(cargo bench --bench rebalance --no-run --message-format=json 2>/dev/null \
    | grep '"kind":\["bench"\]' | grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4)"
if [ -z "$drill" ] || [ ! -x "$drill" ]; then
    echo "error: could not build the drill (try: cargo bench --bench rebalance --no-run)" >&2
    exit 1
fi
args=("$@")
case " $* " in
    *" --apilb-bin"*) ;;
    *) args=(--apilb-bin "$target_dir/release/apilb" "${args[@]}") ;;
esac
exec "$drill" "${args[@]}"

#!/usr/bin/env bash
# Soak under faults (issue 16): the release apilb for 10 minutes (by default) under
# checksummed mixed traffic while backends are killed and hung, the config is reloaded
# valid and invalid, maxConnections is flooded and the descriptor limit lowered to EMFILE.
# Writes benches/soak/results.md. See benches/soak/README.md.
#
# Usage: benches/soak/run.sh [soak options]    e.g. --duration 30m
#        benches/soak/run.sh --help             every option
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

command -v prlimit >/dev/null 2>&1 || { echo "error: prlimit (util-linux) is needed" >&2; exit 1; }

cargo build --release --bin apilb >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
soak="$(cargo bench --bench soak --no-run --message-format=json 2>/dev/null \
    | grep '"kind":\["bench"\]' | grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4)"
if [ -z "$soak" ] || [ ! -x "$soak" ]; then
    echo "error: could not build the soak (try: cargo bench --bench soak --no-run)" >&2
    exit 1
fi

args=("$@")
case " $* " in
    *" --apilb-bin"*) ;;
    *) args=(--apilb-bin "$target_dir/release/apilb" "${args[@]}") ;;
esac
exec "$soak" "${args[@]}"

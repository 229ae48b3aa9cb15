#!/usr/bin/env bash
# The tail every benches/*/run.sh shares: build apilb (release) and the named bench
# harness, then exec the harness with --apilb-bin pointing at that apilb unless the caller
# gave one. Run from the repository root.
#
# Usage: benches/common/harness.sh BENCH [harness options]   e.g. harness.sh l4 --rounds 1
set -euo pipefail

bench="$1"
shift
cargo build --release --bin apilb >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
harness="$(cargo bench --bench "$bench" --no-run --message-format=json 2>/dev/null \
    | grep '"kind":\["bench"\]' | grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4)"
if [ -z "$harness" ] || [ ! -x "$harness" ]; then
    echo "error: could not build the $bench harness (try: cargo bench --bench $bench --no-run)" >&2
    exit 1
fi
args=("$@")
case " $* " in
    *" --apilb-bin"*) ;;
    *) args=(--apilb-bin "$target_dir/release/apilb" "${args[@]}") ;;
esac
exec "$harness" "${args[@]}"

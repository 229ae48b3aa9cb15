#!/usr/bin/env bash
# System calls per operation of each proxy on one workload, counted with `strace -c -f`
# attached to the proxy for a few seconds of a harness sample. See benches/l4/NOTES.md.
#
# Usage: benches/l4/syscalls.sh WORKLOAD PROXY [PROXY...]   e.g. rate haproxy apilb-copy
#   WORKLOAD: rate (per connection: divided by successful accept4 calls) or rr (per
#             message: divided by successful reads of any kind: read, recvfrom, splice
#             from a socket counted as half of the splice calls that moved data).
# Env: HARNESS (the l4 bench binary), APILB_BIN, THREADS (default 2), SECONDS_TRACED (3).
# strace slows the traced proxy; the calls per operation stay meaningful, the rates do not.
set -euo pipefail

workload="${1:?usage: syscalls.sh rate|rr PROXY...}"
shift
[ "$#" -gt 0 ] || { echo "usage: syscalls.sh rate|rr PROXY..." >&2; exit 64; }
case "$workload" in rate|rr) ;; *) echo "workload must be rate or rr" >&2; exit 64 ;; esac
command -v strace >/dev/null || { echo "strace is not installed" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
harness="${HARNESS:-$(ls -t "$root"/target/release/deps/l4-* | grep -v '\.d$' | head -n 1)}"
apilb="${APILB_BIN:-$root/target/release/apilb}"
threads="${THREADS:-2}"
traced="${SECONDS_TRACED:-3}"
ulimit -n 65536 2>/dev/null || true

echo "commit: $(git -C "$root" rev-parse --short HEAD) ($(date -u +%Y-%m-%dT%H:%MZ)), workload $workload, threads $threads"
printf '| proxy | operations | calls per operation | top calls per operation |\n|---|---:|---:|---|\n'
for proxy in "$@"; do
    out="$(mktemp)"
    "$harness" --apilb-bin "$apilb" --proxies "$proxy" --workloads "$workload" \
        --duration 8s --rounds 1 --threads "$threads" --results /dev/null >/dev/null 2>"$out.harness" &
    hpid=$!
    pid=""
    for _ in $(seq 1 100); do
        sleep 0.1
        # The proxy runs from the harness's temp dir, named after the proxy.
        pid="$(pgrep -f "apilb-l4-$proxy-" | head -n 1 || true)"
        [ -n "$pid" ] && break
    done
    if [ -z "$pid" ]; then
        echo "| $proxy | (did not start) | | |"
        wait "$hpid" || true
        continue
    fi
    sleep 2
    # nginx's workers are the master's children; trace them all (-f covers threads).
    targets=(-p "$pid")
    for child in $(pgrep -P "$pid" || true); do targets+=(-p "$child"); done
    timeout -s INT "$traced" strace -c -f "${targets[@]}" -o "$out" || true
    wait "$hpid" || true
    awk -v proxy="$proxy" -v workload="$workload" '
        # strace -c columns: % time, seconds, usecs/call, calls, [errors], syscall
        $NF ~ /^[a-z_0-9]+$/ && $1 ~ /^[0-9.]+$/ && $NF != "total" {
            calls = $4; errors = (NF == 6) ? $5 : 0; name = $NF
            total += calls; c[name] = calls; ok[name] = calls - errors
        }
        END {
            if (workload == "rate") ops = ok["accept4"] + ok["accept"]
            else ops = ok["read"] + ok["recvfrom"] + ok["readv"] + ok["splice"] / 2
            if (ops <= 0) { printf "| %s | 0 | | |\n", proxy; exit }
            n = 0
            for (k in c) { names[++n] = k }
            # sort by calls, descending
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                if (c[names[j]] > c[names[i]]) { t = names[i]; names[i] = names[j]; names[j] = t }
            top = ""
            for (i = 1; i <= n && i <= 8; i++)
                top = top sprintf("%s%s %.2f", (i > 1 ? ", " : ""), names[i], c[names[i]] / ops)
            printf "| %s | %d | %.1f | %s |\n", proxy, ops, total / ops, top
        }' "$out"
    rm -f "$out" "$out.harness"
done

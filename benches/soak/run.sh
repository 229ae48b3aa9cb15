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

exec benches/common/harness.sh soak "$@"

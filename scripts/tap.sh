# scripts/tap.sh — TAP output for the shell test scripts (examples/test.sh,
# monitoring/test.sh, packaging/test.sh): one "ok N - ..." or "not ok N -
# ..." line per check, which scripts/test.sh counts.  Source it; N and
# FAILED count the checks and the failures.
# shellcheck shell=bash

N=0
FAILED=0

note() { printf '# %s\n' "$*"; }

# result DESC [REASON...]: print one check line; reasons make it a failure.
result() {
    local desc=$1
    shift
    N=$((N + 1))
    if (($# == 0)); then
        printf 'ok %d - %s\n' "$N" "$desc"
    else
        FAILED=$((FAILED + 1))
        printf 'not ok %d - %s\n' "$N" "$desc"
        local r
        for r in "$@"; do printf '#   %s\n' "$r"; done
    fi
}

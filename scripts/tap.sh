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

# tap_end NAME RC: the last thing a script's EXIT trap does.  A stop by
# anything but a failed check (a signal, a bug in the script) counts as a
# failure; then the plan, a summary line, and the exit status.  T0 is the
# script's start ($SECONDS).
tap_end() {
    local name=$1 rc=$2
    if ((rc != 0 && FAILED == 0)); then
        result "$name ran to the end" "it stopped early with exit status $rc"
    fi
    printf '1..%d\n' "$N"
    note "$name: $((N - FAILED)) passed, $FAILED failed in $((SECONDS - ${T0:-0})) s"
    if ((FAILED > 0 || rc != 0)); then exit 1; fi
    exit 0
}

# apt_install_missing LOG PKG...: install those of the Debian packages that
# are not installed, by scripts/install-deps.sh (apt-get update first),
# output to LOG.  Returns non-zero if that failed (LOG says why); needs root
# when something is missing.
apt_install_missing() {
    local logf=$1
    shift
    timeout 900 bash "$(dirname "${BASH_SOURCE[0]}")/install-deps.sh" -- "$@" >"$logf" 2>&1 </dev/null
}

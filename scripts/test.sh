#!/usr/bin/env bash
# scripts/test.sh — build, install and run every apikey test.
#
# Run as root (CI does).  Steps:
#   1. scripts/install-deps.sh (apt packages, only if missing)
#   2. copy the working tree to a scratch dir owned by the "postgres" OS user
#      (initdb refuses root), `make clean all` there as postgres, `make install`
#      as root
#   3. as postgres, in the copy:
#        unit       make unittest            (one test per "ok N"/"not ok N" line)
#        regress    pg_regress sql/*.sql     (one test per file, temp instance)
#        isolation  pg_isolation_regress specs/*.spec (one per spec, temp instance)
#        tap        prove t/*.pl             (one test per file)
# Failures print regression.diffs / server and TAP logs.  The last line printed
# is always "N passed, M failed"; the exit status is non-zero if M > 0.  A
# stage that cannot run (build error, server that will not start, timeout)
# counts as a failure, and so does a run that finds no tests at all.  Stages
# are time-limited; servers and scratch files are removed on exit.
#
# Environment:
#   APIKEY_TESTS    optional subset, space-separated KIND or KIND:NAME words,
#                   e.g. 'regress:token isolation:revoke tap:010_workers.pl unit'.
#                   A bare KIND runs all tests of that kind; kinds not named
#                   are skipped.  Default: everything.
#   APIKEY_KEEP_TMP=1  keep the scratch directory (its path is printed).
#   APIKEY_TEST_BUDGET seconds for the whole run (default 1500 = 25 min).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$REPO/scripts/lib.sh"

PG_PKGLIB=/usr/lib/postgresql/15/lib/pgxs/src/test
PG_REGRESS=$PG_PKGLIB/regress/pg_regress
PG_ISOLATION_REGRESS=$PG_PKGLIB/isolation/pg_isolation_regress
PG_PERL_LIB=$PG_PKGLIB/perl

BUDGET=${APIKEY_TEST_BUDGET:-1500}
PASSED=0
FAILED=0
WORK=""
TREE=""

# ---------------------------------------------------------------- bookkeeping

fail() { FAILED=$((FAILED + 1)); }
# Something that is not a single test went wrong: counts as one failure.
stage_error() {
    warn "$*"
    fail
}

cleanup() {
    if [[ -n $WORK ]]; then
        stop_servers_under "$WORK"
        if [[ ${APIKEY_KEEP_TMP:-} == 1 ]]; then
            say "keeping scratch directory $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
}

# Runs on every exit: clean up, then print the summary as the very last line.
finish() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((rc != 0 && FAILED == 0)); then
        warn "test run aborted (exit status $rc)"
        FAILED=1
    fi
    cleanup
    echo
    echo "$PASSED passed, $FAILED failed"
    if ((FAILED > 0)); then exit 1; fi
    exit 0
}
trap finish EXIT
trap 'stop_child; exit 130' INT TERM

# Seconds a stage may use: its own cap, cut down to what is left of BUDGET.
stage_secs() { # CAP
    local left=$((BUDGET - SECONDS))
    if ((left < $1)); then echo "$left"; else echo "$1"; fi
}

# logged LOG CAP CMD... : run CMD with its output shown and kept in LOG,
# limited to CAP seconds or what is left of the suite budget.  Returns CMD's
# status; 124/137 = timed out, 200 = not started (budget used up).
logged() {
    local logf=$1 cap=$2 secs rc=0
    shift 2
    secs=$(stage_secs "$cap")
    if ((secs < 5)); then
        warn "time budget of ${BUDGET}s used up; skipped"
        : >"$logf"
        return 200
    fi
    watched "$secs" "$logf" 1 "$@" || rc=$?
    if ((rc == 124 || rc == 137)); then warn "timed out after ${secs}s"; fi
    return "$rc"
}

# Print the last lines of each existing file, with a header.
show_tail() { # LINES FILE...
    local n=$1 f
    shift
    for f in "$@"; do
        [[ -f $f ]] || continue
        echo "----- last $n lines of ${f#"$TREE"/} -----"
        tail -n "$n" "$f"
    done
}

# ---------------------------------------------------------------- test selection

# WANT: kind -> " name name ..." ("*" = every test of that kind).  Empty map
# (APIKEY_TESTS unset) = run everything.  Names may be given with their
# directory and suffix (sql/token.sql, t/010_workers.pl); both are stripped.
declare -A WANT=()
if [[ -n ${APIKEY_TESTS:-} ]]; then
    read -ra words <<<"$APIKEY_TESTS"
    for word in "${words[@]}"; do
        kind=${word%%:*}
        name='*'
        if [[ $word == *:* && -n ${word#*:} ]]; then name=${word#*:}; fi
        name=${name##*/}
        case $kind in
        unit) ;;
        regress) name=${name%.sql} ;;
        isolation) name=${name%.spec} ;;
        tap) name=${name%.pl} ;;
        *)
            stage_error "APIKEY_TESTS: unknown kind in '$word' (use unit, regress:NAME, isolation:NAME, tap:FILE.pl)"
            exit 1
            ;;
        esac
        WANT[$kind]="${WANT[$kind]-} $name"
    done
    say "APIKEY_TESTS=$APIKEY_TESTS"
fi

# selected KIND AVAILABLE... : print the AVAILABLE names that were asked for,
# one a line (all of them by default).  Names asked for that do not exist are
# reported and counted as failures.
selected() {
    local kind=$1 want name
    local -a names
    shift
    if ((${#WANT[@]} == 0)); then
        printf '%s\n' "$@"
        return
    fi
    want=${WANT[$kind]-}
    [[ -n $want ]] || return 0
    if [[ " $want " == *" * "* ]]; then
        printf '%s\n' "$@"
        return
    fi
    read -ra names <<<"$want"
    for name in "${names[@]}"; do
        if [[ " $* " == *" $name "* ]]; then
            printf '%s\n' "$name"
        else
            warn "APIKEY_TESTS: no $kind test named '$name' (have: $*)"
            echo "!missing:$name"
        fi
    done
}

# Base names of the files DIR/*SUFFIX without SUFFIX, sorted in byte order
# as the Makefile's $(sort) does.
discover() { # DIR SUFFIX
    local f
    for f in "$1"/*"$2"; do
        [[ -e $f ]] || continue
        f=${f##*/}
        printf '%s\n' "${f%"$2"}"
    done | LC_ALL=C sort
}

# Fill the array named $1 with the selected tests of KIND; counts missing names.
pick() { # ARRAY KIND DIR SUFFIX
    local -n out=$1
    local kind=$2 dir=$3 suffix=$4 name
    local -a avail=()
    mapfile -t avail < <(discover "$dir" "$suffix")
    out=()
    while IFS= read -r name; do
        [[ -n $name ]] || continue
        if [[ $name == '!missing:'* ]]; then
            fail
            continue
        fi
        out+=("$name")
    done < <(selected "$kind" "${avail[@]}")
}

# ---------------------------------------------------------------- stages

stage_unit() {
    if [[ ! -f test/unit/run_unit.c ]]; then
        say "unit: no test/unit/run_unit.c, skipped"
        return
    fi
    say "unit tests (make unittest)"
    local logf=$WORK/unit.log rc=0 ok bad
    logged "$logf" 180 "${AS_PG[@]}" make -s PG_CONFIG="$PG_CONFIG" unittest || rc=$?
    ok=$(grep -cE '^ok [0-9]+' "$logf" || true)
    bad=$(grep -cE '^not ok [0-9]+' "$logf" || true)
    PASSED=$((PASSED + ok))
    FAILED=$((FAILED + bad))
    say "unit: $ok passed, $bad failed"
    if ((rc != 0 && bad == 0)); then
        stage_error "unit: make unittest failed (exit $rc) without a failing case (build error or crash?)"
    fi
}

# run_regress KIND DRIVER OUTDIR DBNAME TEST... : one pg_regress-style run on
# a temporary instance with test/preload.conf, then count its result lines.
run_regress() {
    local kind=$1 driver=$2 outdir=$3 dbname=$4
    shift 4
    local instance=$TREE/tmp_check_$kind logf=$WORK/$kind.log port rc=0
    local line name res n_ok=0 n_bad=0
    local -A seen=()
    port=$(free_port)
    mkdir -p "$outdir"
    give_to_pg "$outdir"
    # --no-locale/--encoding make results independent of the machine's locale;
    # tests do their own CREATE EXTENSION (no --load-extension).
    logged "$logf" 600 "${AS_PG[@]}" "$driver" \
        --bindir="$PG_BINDIR" --inputdir=. --outputdir="$outdir" \
        --temp-instance="$instance" --temp-config=test/preload.conf \
        --port="$port" --dbname="$dbname" --no-locale --encoding=UTF8 \
        "$@" || rc=$?
    # pg_regress (15) result lines: "test NAME   ... ok   12 ms",
    # "     NAME   ... FAILED   3 ms" (parallel group member).
    while IFS= read -r line; do
        if [[ $line =~ ^(test[[:space:]]+|[[:space:]]+)([^[:space:]]+)[[:space:]]+\.\.\.[[:space:]]+([a-zA-Z]+) ]]; then
            name=${BASH_REMATCH[2]}
            res=${BASH_REMATCH[3]}
            seen[$name]=1
            if [[ $res == ok ]]; then
                n_ok=$((n_ok + 1))
            else
                n_bad=$((n_bad + 1))
            fi
        fi
    done <"$logf"
    # A test with no result line (server failed to start, timeout) failed.
    local n_missing=0
    for name in "$@"; do
        if [[ -z ${seen[$name]-} ]]; then
            warn "$kind: $name produced no result"
            n_missing=$((n_missing + 1))
        fi
    done
    n_bad=$((n_bad + n_missing))
    PASSED=$((PASSED + n_ok))
    FAILED=$((FAILED + n_bad))
    say "$kind: $n_ok passed, $n_bad failed"
    # After a timeout the temporary server may still be up; stop it now.
    stop_servers_under "$instance"
    if ((rc != 0 && n_bad == 0)); then
        stage_error "$kind: $(basename "$driver") exited with status $rc although every test passed"
    fi
    if ((rc != 0 || n_bad > 0)); then
        if [[ -s $outdir/regression.diffs ]]; then
            echo "----- $kind regression.diffs (first 500 lines) -----"
            head -n 500 "$outdir/regression.diffs"
        fi
        # pg_regress keeps its server logs under OUTDIR/log; initdb's only
        # matters when the run broke off.
        if ((n_missing > 0)); then show_tail 80 "$outdir/log/initdb.log"; fi
        show_tail 80 "$outdir/log/postmaster.log"
    fi
}

stage_regress() {
    local -a tests
    pick tests regress sql .sql
    if ((${#tests[@]} == 0)); then
        say "regress: nothing to run (sql/*.sql absent or not selected)"
        return
    fi
    say "regression tests (pg_regress: ${tests[*]})"
    run_regress regress "$PG_REGRESS" "$TREE" contrib_regression "${tests[@]}"
}

stage_isolation() {
    local -a tests
    pick tests isolation specs .spec
    if ((${#tests[@]} == 0)); then
        say "isolation: nothing to run (specs/*.spec absent or not selected)"
        return
    fi
    say "isolation tests (pg_isolation_regress: ${tests[*]})"
    run_regress isolation "$PG_ISOLATION_REGRESS" "$TREE/output_iso" isolation_regression "${tests[@]}"
}

stage_tap() {
    local -a tests
    pick tests tap t .pl
    if ((${#tests[@]} == 0)); then
        say "tap: nothing to run (t/*.pl absent or not selected)"
        return
    fi
    say "TAP tests (prove: ${tests[*]})"
    rm -rf "$TREE/tmp_check"
    local name logf rc n_ok=0 n_bad=0
    for name in "${tests[@]}"; do
        logf=$WORK/tap_$name.log
        rc=0
        # The environment PGXS's prove_installcheck sets up; the TAP modules
        # pick their own free ports and socket directories.  A fixed LANG
        # makes the nodes' initdb locale/encoding the same on every machine.
        logged "$logf" 600 "${AS_PG[@]}" env -u PGPORT -u PGHOST -u PGDATA \
            -u LC_ALL -u LC_CTYPE -u LC_COLLATE LANG=C.UTF-8 \
            PATH="$PG_BINDIR:$PATH" TESTDIR="$TREE" PG_REGRESS="$PG_REGRESS" \
            prove -I "$PG_PERL_LIB" -I t "t/$name.pl" || rc=$?
        if ((rc == 0)) && grep -q '^Result: PASS' "$logf"; then
            n_ok=$((n_ok + 1))
        else
            n_bad=$((n_bad + 1))
            warn "tap: t/$name.pl failed (exit $rc)"
            show_tail 80 "$TREE/tmp_check/log/regress_log_$name" "$TREE/tmp_check/log/${name}"_*.log
            # A killed test script leaves its nodes running; stop them.
            stop_servers_under "$TREE/tmp_check"
        fi
    done
    PASSED=$((PASSED + n_ok))
    FAILED=$((FAILED + n_bad))
    say "tap: $n_ok passed, $n_bad failed"
}

# ---------------------------------------------------------------- main

WORK=$(mktemp -d /tmp/apikey-test.XXXXXX)
TREE=$WORK/tree

say "installing prerequisites"
if ! logged "$WORK/install-deps.log" 600 bash "$REPO/scripts/install-deps.sh"; then
    stage_error "prerequisites could not be installed"
    exit 1
fi
pg_paths
# Temporary files and socket directories of pg_regress and the TAP modules
# (which keep theirs when a test fails) go under WORK and so get cleaned up.
mkdir -p "$WORK/tmp"
export TMPDIR=$WORK/tmp
give_to_pg "$WORK" # the postgres OS user exists now

say "copying the tree to $TREE"
copy_tree "$REPO" "$TREE"
cd "$TREE"

say "building and installing (make clean all; make install)"
if ! build_and_install "$TREE" "$WORK" "$(stage_secs 300)"; then
    stage_error "build failed"
    exit 1
fi

if ((${#WANT[@]} == 0)) || [[ -n ${WANT[unit]-} ]]; then stage_unit; fi
stage_regress
stage_isolation
stage_tap
if ((PASSED + FAILED == 0)); then
    stage_error "no tests were run"
fi
# finish (the EXIT trap) prints the summary line and sets the exit status.

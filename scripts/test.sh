#!/usr/bin/env bash
# scripts/test.sh — build, install and run every apikey test, on one
# PostgreSQL or on the whole matrix.
#
#   bash scripts/test.sh                 the matrix (what CI runs)
#   bash scripts/test.sh --pg 15         Debian's PostgreSQL 15 only
#   bash scripts/test.sh --pg 15-asan    one source build (scripts/pg-build.sh)
#   bash scripts/test.sh --pg 18 --pg 17 several targets
#   PG_CONFIG=/path/to/pg_config bash scripts/test.sh   that installation only
#
# Targets (--pg):
#   15            Debian's package (/usr/lib/postgresql/15): unit, regress,
#                 isolation, tap, and the extra stages (fuzz, examples,
#                 exporter, packages, docs)
#   MAJOR[-FLAVOR] a source build by scripts/pg-build.sh MAJOR FLAVOR
#                 (FLAVOR cassert or asan; cassert unless given: 18 =
#                 18-cassert): regress, isolation, tap.  17 is supported
#                 but, as of 2026-11-30, Debian's archive answers 404 for
#                 its only listed source (17.12-0+deb13u1)
#   15-valgrind   regress and isolation with every server process under
#                 valgrind memcheck (not in the matrix: about 30x slower)
# The matrix is 15, 15-asan, 18-cassert.  Source builds are cached
# under /var/cache/apikey-pg (see pg-build.sh); on a machine without them they
# are built in the background, at low priority, while the first targets'
# tests run, and waited for when their target comes.
#
# Run as root (CI does).  For each target:
#   1. copy the working tree to a scratch dir owned by the "postgres" OS user
#      (initdb refuses root), `make clean all` there as postgres, `make install`
#      as root, with that target's PG_CONFIG;
#   2. as postgres, in the copy, the stages:
#        unit       make unittest            (one test per "ok N"/"not ok N" line)
#        regress    pg_regress sql/*.sql     (one test per file, temp instance)
#        isolation  pg_isolation_regress specs/*.spec (one per spec, temp instance)
#        tap        prove t/*.pl             (one test per file)
#        fuzz, examples, exporter, packages, docs  see EXTRA_STAGES below
#                   (skipped if the script is absent)
# After each server stage the server logs are scanned: an assertion failure
# (TRAP:), a PANIC, a process killed by SIGSEGV/SIGABRT/..., or a sanitizer
# report (ASan/UBSan write theirs to files of their own on sanitized builds)
# counts as one more failed test and is printed; so does a full token in a
# server log or a TAP test's log (test/check-token-leaks.pl, outside
# PostgreSQL's echo of the tests' own statements).
#
# Failures print regression.diffs / server and TAP logs.  At the end a table
# gives each stage's counts and time; the last line printed is always
# "N passed, M failed" over every stage; the exit status is non-zero if M > 0.
# A stage that cannot run (build error, server that will not start, timeout)
# counts as a failure, and so does a run that finds no tests at all.  Stages
# are time-limited; servers and scratch files are removed on exit.
#
# Environment:
#   APIKEY_TESTS    optional subset, space-separated KIND or KIND:NAME words,
#                   e.g. 'regress:token isolation:revoke tap:010_workers.pl unit'.
#                   A bare KIND runs all tests of that kind; kinds not named
#                   are skipped (on every target).  Default: everything.
#   APIKEY_KEEP_TMP=1  keep the scratch directory (its path is printed).
#   APIKEY_TEST_BUDGET seconds for the whole run, builds included (default
#                   4800 = 80 min; CI stops a run at 90).
#   APIKEY_PG_CACHE where pg-build.sh keeps its builds.
set -euo pipefail

# A PG_CONFIG from the caller names the one installation to test; lib.sh
# gives PG_CONFIG a default, so look before sourcing it.
USER_PG_CONFIG=${PG_CONFIG-}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$REPO/scripts/lib.sh"

# Every program of a sanitized (asan) build, pg_config included, runs with
# leak detection off: frontends do not free before exiting, and LeakSanitizer
# would fail them and swallow their buffered output (`$(pg_config --pgxs)`
# would be empty).  stage_build exports NO_LEAKS on such a target; the test
# stages add their own options (san_env).  Other targets keep the caller's
# ASAN_OPTIONS (the fuzz stage's libFuzzer wants its leak detection).
NO_LEAKS=detect_leaks=0
CALLER_ASAN_OPTIONS=${ASAN_OPTIONS-}

DEBIAN_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
MATRIX=(15 15-asan 18-cassert)
BASE_KINDS="unit regress isolation tap"
SERVER_KINDS="regress isolation tap"

# Extra stages: KIND=SCRIPT, run on Debian's PostgreSQL 15 after the others.
# The script is run as root from the target's tree copy (owned by postgres),
# with PG_CONFIG, APIKEY_TREE (that copy) and APIKEY_WORK (a scratch dir of
# its own) in the environment, and prints one "ok N - ..." or "not ok N - ..."
# line per test.  If the script does not exist the stage is skipped with a
# message.  Adding one is one line here.
EXTRA_STAGES=(
    "fuzz=test/fuzz/run.sh"
    "examples=examples/test.sh"
    "exporter=monitoring/test.sh"
    "packages=packaging/test.sh"
    "docs=test/check-docs.sh"
)
declare -A EXTRA_SCRIPT=()
for entry in "${EXTRA_STAGES[@]}"; do EXTRA_SCRIPT[${entry%%=*}]=${entry#*=}; done
# Keep the order of EXTRA_STAGES (the keys of an associative array have none).
EXTRA_KINDS=""
for entry in "${EXTRA_STAGES[@]}"; do EXTRA_KINDS+=" ${entry%%=*}"; done

BUDGET=${APIKEY_TEST_BUDGET:-4800}
PASSED=0
FAILED=0
WORK=""
TREE=""
TARGET=""
SLOW=1      # stage time caps are multiplied by this (sanitized builds are slower)
SANITIZED=0 # 1 on a build with -fsanitize
SAN_DIR=""  # set: sanitizer options for the servers, their reports checked
UPGRADE_PREFIX="" # set: APIKEY_UPGRADE_FROM for the TAP tests
BUILDER_PID=""
STAGE_NOTE="" # a stage may set it: shown in the stage table
BUILD_OK=0  # set by stage_build: the target's PostgreSQL and extension are ready

# Stage table: one row per stage, in the order run.
STAGE_ROWS=()

# ---------------------------------------------------------------- bookkeeping

fail() { FAILED=$((FAILED + 1)); }
# Something that is not a single test went wrong: counts as one failure.
stage_error() {
    warn "$*"
    fail
}

# Stop the background PostgreSQL builds (their whole process group): a build
# cut short leaves no stamp and is redone next time.
stop_builder() {
    if [[ -n $BUILDER_PID ]]; then
        kill -TERM -- "-$BUILDER_PID" 2>/dev/null || true
        wait "$BUILDER_PID" 2>/dev/null || true
        BUILDER_PID=""
    fi
}

cleanup() {
    stop_builder
    if [[ -n $WORK ]]; then
        stop_servers_under "$WORK"
        if [[ ${APIKEY_KEEP_TMP:-} == 1 ]]; then
            say "keeping scratch directory $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
}

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

print_stage_table() {
    local row name p f secs note
    ((${#STAGE_ROWS[@]} > 0)) || return 0
    echo
    printf '%-24s %7s %7s %9s\n' stage passed failed time
    for row in "${STAGE_ROWS[@]}"; do
        IFS='|' read -r name p f secs note <<<"$row"
        printf '%-24s %7s %7s %9s  %s\n' "$name" "$p" "$f" "$(fmt_secs "$secs")" "$note"
    done
    printf '%-24s %7s %7s %9s\n' total "$PASSED" "$FAILED" "$(fmt_secs "$SECONDS")"
}

# Runs on every exit: clean up, then print the table and the summary as the
# very last line.
finish() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((rc != 0 && FAILED == 0)); then
        warn "test run aborted (exit status $rc)"
        FAILED=1
    fi
    cleanup
    print_stage_table
    echo
    echo "$PASSED passed, $FAILED failed"
    if ((FAILED > 0)); then exit 1; fi
    exit 0
}
trap finish EXIT
trap 'stop_child; exit 130' INT TERM

# Seconds a stage may use: its own cap (times SLOW), cut down to what is left
# of BUDGET.
stage_secs() { # CAP
    local left=$((BUDGET - SECONDS)) cap=$(($1 * SLOW))
    if ((left < cap)); then echo "$left"; else echo "$cap"; fi
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
        echo "----- last $n lines of ${f#"$WORK"/} -----"
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
        case " $BASE_KINDS $EXTRA_KINDS " in
        *" $kind "*) ;;
        *)
            stage_error "APIKEY_TESTS: unknown kind in '$word' (use unit, regress:NAME, isolation:NAME, tap:FILE.pl,$EXTRA_KINDS)"
            exit 1
            ;;
        esac
        case $kind in
        regress) name=${name%.sql} ;;
        isolation) name=${name%.spec} ;;
        tap) name=${name%.pl} ;;
        esac
        WANT[$kind]="${WANT[$kind]-} $name"
    done
    say "APIKEY_TESTS=$APIKEY_TESTS"
fi

# True if tests of KIND are to run at all.
kind_wanted() { ((${#WANT[@]} == 0)) || [[ -n ${WANT[$1]-} ]]; }

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

# ---------------------------------------------------------------- crash and sanitizer checks

# The environment of every command that may start a server: on a sanitized
# build, ASan and UBSan write their reports to files under SAN_DIR (the
# servers' stderr goes to logs that are easy to miss), abort on the first
# error, and do not report leaks (PostgreSQL frees by memory context, and
# frontends exit without freeing: noise).  verify_asan_link_order=0: in
# t/040, the TAP modules of a non-sanitized target run its pg_regress with
# LD_LIBRARY_PATH set to the sanitized installation to upgrade from, so a
# program without the ASan runtime loads that installation's libpq, which
# pulls the runtime in late; ASan would abort it ("ASan runtime does not
# come first"), and works when told not to check.
san_env() {
    # pg_regress waits PGCTLTIMEOUT seconds (60) for its server to start
    if [[ -n $VG_DIR ]]; then echo "PGCTLTIMEOUT=600"; fi
    if [[ -n $SAN_DIR ]]; then
        printf '%s\n' \
            "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:print_stacktrace=1:disable_coredump=1:verify_asan_link_order=0:log_path=$SAN_DIR/asan" \
            "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$SAN_DIR/ubsan"
    fi
}

# Lines of a server log that mean a crash whatever the tests said: a failed
# assertion (cassert builds), a PANIC, a process killed by SIGILL, SIGABRT,
# SIGBUS, SIGFPE or SIGSEGV (not SIGKILL: t/002 kills a backend on purpose),
# and sanitizer output that reached the log.
CRASH_RE='TRAP: |PANIC: |terminated by signal (4|6|7|8|11)[^0-9]|AddressSanitizer|runtime error: '

# check_crashes LOGFILE... : after a stage, one failed test if a sanitizer
# wrote a report (SAN_DIR not empty) or a log has a CRASH_RE line; the
# reports and lines are printed.
check_crashes() {
    local f found=0
    if [[ -n $SAN_DIR && -d $SAN_DIR ]]; then
        for f in "$SAN_DIR"/*; do
            [[ -f $f ]] || continue
            found=1
            echo "----- sanitizer report ${f#"$WORK"/} (first 150 lines) -----"
            head -n 150 "$f"
        done
        # Reports of one stage are not counted again by the next.
        if ((found)); then
            mkdir -p "$SAN_DIR.seen"
            mv "$SAN_DIR"/* "$SAN_DIR.seen"/ 2>/dev/null || true
        fi
    fi
    for f in "$@"; do
        [[ -f $f ]] || continue
        if grep -qE "$CRASH_RE" "$f"; then
            found=1
            echo "----- crash lines in ${f#"$WORK"/} -----"
            grep -nE -A 12 "$CRASH_RE" "$f" | head -n 120
        fi
    done
    if ((found)); then
        stage_error "$TARGET: a server crashed, failed an assertion or a sanitizer reported an error (above)"
    fi
}

# check_token_leaks FILE... : after a server stage, one failed test if a
# full apikey token appears in a server log or a TAP test's own log anywhere
# but in PostgreSQL's echo of the client's statements and parameters
# (log_statement = all in TAP clusters, STATEMENT: after an error: the tests'
# literals).  test/check-token-leaks.pl prints only the first 12 characters.
check_token_leaks() {
    local -a files=() out
    local f rc=0
    for f in "$@"; do [[ -f $f ]] && files+=("$f"); done
    ((${#files[@]} > 0)) || return 0
    mapfile -t out < <(perl "$TREE/test/check-token-leaks.pl" --skip-statement-echo "${files[@]}"; echo "rc=$?")
    rc=${out[-1]#rc=}
    unset 'out[-1]'
    if ((rc != 0)); then
        printf '%s\n' "${out[@]:0:40}" | sed "s|$WORK/||"
        stage_error "$TARGET: a token reached a log (above), or a log could not be read"
    fi
}

# ---------------------------------------------------------------- stages

# count_tap KIND LOG: count LOG's "ok N" / "not ok N" lines into the totals
# and say them; sets TAP_OK and TAP_BAD for the caller's checks.
TAP_OK=0
TAP_BAD=0
count_tap() {
    TAP_OK=$(grep -cE '^ok [0-9]+' "$2" || true)
    TAP_BAD=$(grep -cE '^not ok [0-9]+' "$2" || true)
    PASSED=$((PASSED + TAP_OK))
    FAILED=$((FAILED + TAP_BAD))
    say "$1: $TAP_OK passed, $TAP_BAD failed"
}

stage_unit() {
    if [[ ! -f test/unit/run_unit.c ]]; then
        say "unit: no test/unit/run_unit.c, skipped"
        return
    fi
    say "unit tests (make unittest)"
    local logf=$WORK/$TARGET/unit.log rc=0
    logged "$logf" 180 "${AS_PG[@]}" make -s PG_CONFIG="$PG_CONFIG" unittest || rc=$?
    count_tap unit "$logf"
    if ((rc != 0 && TAP_BAD == 0)); then
        stage_error "unit: make unittest failed (exit $rc) without a failing case (build error or crash?)"
    fi
}

# run_regress KIND DRIVER OUTDIR DBNAME TEST... : one pg_regress-style run on
# a temporary instance with test/preload.conf, then count its result lines.
run_regress() {
    local kind=$1 driver=$2 outdir=$3 dbname=$4
    shift 4
    local instance=$TREE/tmp_check_$kind logf=$WORK/$TARGET/$kind.log port rc=0
    local line name res n_ok=0 n_bad=0
    local -a failed_names=()
    local -A seen=()
    local -a senv
    mapfile -t senv < <(san_env)
    port=$(free_port)
    rm -rf "$outdir/log" "$instance"
    mkdir -p "$outdir"
    give_to_pg "$outdir"
    # --no-locale/--encoding make results independent of the machine's locale;
    # tests do their own CREATE EXTENSION (no --load-extension).
    logged "$logf" 600 "${AS_PG[@]}" env "${senv[@]}" "$driver" \
        --bindir="${SERVER_BINDIR:-$PG_BINDIR}" --inputdir=. --outputdir="$outdir" \
        --temp-instance="$instance" --temp-config=test/preload.conf \
        --port="$port" --dbname="$dbname" --no-locale --encoding=UTF8 \
        "$@" || rc=$?
    # Result lines:
    #   PostgreSQL <= 15: "test NAME   ... ok   12 ms",
    #                     "     NAME   ... FAILED   3 ms" (parallel group member);
    #   PostgreSQL >= 16 (TAP): "ok 1         - NAME   12 ms",
    #                     "not ok 2     + NAME   3 ms" (+ = parallel group member).
    while IFS= read -r line; do
        if [[ $line =~ ^(test[[:space:]]+|[[:space:]]+)([^[:space:]]+)[[:space:]]+\.\.\.[[:space:]]+([a-zA-Z]+) ]]; then
            name=${BASH_REMATCH[2]}
            res=${BASH_REMATCH[3]}
        elif [[ $line =~ ^(not[[:space:]]+)?ok[[:space:]]+[0-9]+[[:space:]]+[-+][[:space:]]+([^[:space:]]+) ]]; then
            name=${BASH_REMATCH[2]}
            res=ok
            [[ -z ${BASH_REMATCH[1]} ]] || res=FAILED
        else
            continue
        fi
        seen[$name]=1
        if [[ $res == ok ]]; then
            n_ok=$((n_ok + 1))
        else
            n_bad=$((n_bad + 1))
            failed_names+=("$name")
        fi
    done <"$logf"
    # A test with no result line (server failed to start, timeout) failed.
    local n_missing=0
    for name in "$@"; do
        if [[ -z ${seen[$name]-} ]]; then
            warn "$kind: $name produced no result"
            n_missing=$((n_missing + 1))
            failed_names+=("$name")
        fi
    done
    n_bad=$((n_bad + n_missing))
    PASSED=$((PASSED + n_ok))
    FAILED=$((FAILED + n_bad))
    say "$kind: $n_ok passed, $n_bad failed"
    # CI shows the head and tail of a long log: name the failures in the table.
    if ((${#failed_names[@]} > 0)); then STAGE_NOTE="failed: ${failed_names[*]}"; fi
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
    check_crashes "$outdir/log/postmaster.log"
    check_token_leaks "$outdir/log/postmaster.log"
    check_valgrind
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
    local -a failed_names=()
    local -a senv server_logs=() skipped=()
    mapfile -t senv < <(san_env)
    for name in "${tests[@]}"; do
        logf=$WORK/$TARGET/tap_$name.log
        rc=0
        # The environment PGXS's prove_installcheck sets up; the TAP modules
        # pick their own free ports and socket directories.  A fixed LANG
        # makes the nodes' initdb locale/encoding the same on every machine.
        logged "$logf" 600 "${AS_PG[@]}" env -u PGPORT -u PGHOST -u PGDATA \
            -u LC_ALL -u LC_CTYPE -u LC_COLLATE LANG=C.UTF-8 "${senv[@]}" \
            PATH="$PG_BINDIR:$PATH" TESTDIR="$TREE" PG_REGRESS="$PG_REGRESS" \
            TESTLOGDIR="$TREE/tmp_check/log" TESTDATADIR="$TREE/tmp_check" \
            ${UPGRADE_PREFIX:+APIKEY_UPGRADE_FROM="$UPGRADE_PREFIX"} \
            prove -I "$PG_PERL_LIB" -I t "t/$name.pl" || rc=$?
        if ((rc == 0)) && grep -q '^Result: PASS' "$logf"; then
            n_ok=$((n_ok + 1))
        elif ((rc == 0)) && grep -q '^Result: NOTESTS' "$logf"; then
            # skip_all by the test itself (t/040 without an installation to
            # upgrade from): neither passed nor failed, but said.
            warn "tap: t/$name.pl skipped itself: $(sed -n 's/^t\/[^ ]* \.* skipped: //p' "$logf" | head -n 1)"
            skipped+=("$name")
        else
            n_bad=$((n_bad + 1))
            failed_names+=("$name")
            warn "tap: t/$name.pl failed (exit $rc)"
            show_tail 80 "$TREE/tmp_check/log/regress_log_$name" "$TREE/tmp_check/log/${name}"_*.log
            # A killed test script leaves its nodes running; stop them.
            stop_servers_under "$TREE/tmp_check"
        fi
    done
    PASSED=$((PASSED + n_ok))
    FAILED=$((FAILED + n_bad))
    say "tap: $n_ok passed, $n_bad failed"
    if ((${#skipped[@]} > 0)); then STAGE_NOTE="skipped itself: ${skipped[*]}"; fi
    if ((${#failed_names[@]} > 0)); then
        STAGE_NOTE="failed: ${failed_names[*]}${STAGE_NOTE:+; $STAGE_NOTE}"
    fi
    # The nodes' server logs (regress_log_* hold the test scripts' own output).
    for logf in "$TREE"/tmp_check/log/*.log; do
        [[ -f $logf && ${logf##*/} != regress_log_* ]] && server_logs+=("$logf")
    done
    check_crashes "${server_logs[@]}"
    check_token_leaks "${server_logs[@]}" "$TREE"/tmp_check/log/regress_log_*
}

# An EXTRA_STAGES script: counts its "ok N" / "not ok N" lines.
stage_script() { # KIND
    local kind=$1 script=${EXTRA_SCRIPT[$1]} logf=$WORK/$TARGET/$1.log rc=0
    if [[ ! -f $TREE/$script ]]; then
        say "$kind: no $script yet, skipped"
        STAGE_NOTE="skipped: no $script"
        return
    fi
    if [[ -n ${WANT[$kind]-} && " ${WANT[$kind]} " != *" * "* ]]; then
        warn "$kind: test names are not selectable; running all of $script"
    fi
    say "$kind ($script)"
    mkdir -p "$WORK/$TARGET/$kind.work"
    logged "$logf" 900 env PG_CONFIG="$PG_CONFIG" APIKEY_TREE="$TREE" \
        APIKEY_WORK="$WORK/$TARGET/$kind.work" bash "$TREE/$script" || rc=$?
    count_tap "$kind" "$logf"
    if ((rc != 0 && TAP_BAD == 0)); then
        stage_error "$kind: $script exited with status $rc without a failing test"
    elif ((TAP_OK + TAP_BAD == 0)); then
        stage_error "$kind: $script reported no test"
    fi
}

not_run() {
    stage_error "$*"
    STAGE_NOTE="not run: build failed"
}

# run_stage NAME CMD... : run one stage, recording its counts and time in
# the stage table.
run_stage() {
    local name=$1 t0=$SECONDS p0=$PASSED f0=$FAILED
    shift
    echo
    say "===== stage $name ====="
    STAGE_NOTE=""
    "$@"
    STAGE_ROWS+=("$name|$((PASSED - p0))|$((FAILED - f0))|$((SECONDS - t0))|$STAGE_NOTE")
}

# ---------------------------------------------------------------- targets

# A target is "15" (Debian's package), "custom" (the caller's PG_CONFIG) or
# MAJOR-FLAVOR (pg-build.sh).  Normalize what --pg accepts.
normalize_target() { # SPEC
    case $1 in
    15 | debian | 15-debian) echo 15 ;;
    [0-9][0-9]) echo "$1-cassert" ;;
    [0-9][0-9]-cassert | [0-9][0-9]-asan | [0-9][0-9]-valgrind) echo "$1" ;;
    *) return 1 ;;
    esac
}

is_source_target() { [[ $1 == [0-9][0-9]-* ]]; }

# The kinds a target runs, before APIKEY_TESTS selection.
target_kinds() { # TARGET
    case $1 in
    15) echo "$BASE_KINDS$EXTRA_KINDS" ;;
    custom)
        # The unit-test binary links PostgreSQL's static libraries, which a
        # sanitized build compiled with instrumentation the test's link
        # lacks.
        if ASAN_OPTIONS=$NO_LEAKS "$USER_PG_CONFIG" --cflags | grep -q -- -fsanitize; then
            echo "$SERVER_KINDS"
        else
            echo "$BASE_KINDS"
        fi
        ;;
    # Every server process under valgrind is some 30x slower: regress and
    # isolation only (not in the matrix; see doc/apikey.md, Testing).
    *-valgrind) echo "regress isolation" ;;
    *) echo "$SERVER_KINDS" ;;
    esac
}

# True if any kind of the target is selected (else the target, build
# included, is skipped).
target_wanted() { # TARGET
    local k
    for k in $(target_kinds "$1"); do
        if kind_wanted "$k"; then return 0; fi
    done
    return 1
}

# Start pg-build.sh for the source targets, one after the other, in the
# background in a process group of its own (so it can be stopped whole),
# at low priority so the tests running meanwhile get the CPU first.  Each
# build leaves BUILDS/T.out (stdout: the prefix last), BUILDS/T.log and, when
# it ends, BUILDS/T.rc.
BUILDS=""
start_builds() { # TARGET...
    (($# > 0)) || return 0
    BUILDS=$WORK/pg-builds
    mkdir -p "$BUILDS"
    say "building PostgreSQL in the background (if not cached): $*"
    # shellcheck disable=SC2016 # expanded by the inner bash
    setsid nice -n 10 bash -c '
        builds=$1 script=$2
        shift 2
        for t in "$@"; do
            rc=0
            bash "$script" "${t%%-*}" "${t#*-}" >"$builds/$t.out" 2>"$builds/$t.log" </dev/null || rc=$?
            echo "$rc" >"$builds/$t.rc"
        done' pg-builds "$BUILDS" "$REPO/scripts/pg-build.sh" "$@" </dev/null >"$BUILDS/builder.log" 2>&1 &
    BUILDER_PID=$!
}

# Wait for the build of TARGET, print its log; set AWAITED_PG_CONFIG or fail.
AWAITED_PG_CONFIG=""
await_build() { # TARGET
    local t=$1 rc t0=$SECONDS
    AWAITED_PG_CONFIG=""
    if [[ -z $BUILDS || " ${SOURCE_TARGETS[*]} " != *" $t "* ]]; then
        stage_error "$t: no build of it was started (bug in test.sh)"
        return 1
    fi
    if [[ ! -f $BUILDS/$t.rc ]]; then
        say "waiting for scripts/pg-build.sh ${t%%-*} ${t#*-} (log: $BUILDS/$t.log)"
    fi
    while [[ ! -f $BUILDS/$t.rc ]]; do
        if ((SECONDS >= BUDGET)); then
            stage_error "$t: the PostgreSQL build did not finish within the time budget (${BUDGET}s)"
            return 1
        fi
        if ! kill -0 "$BUILDER_PID" 2>/dev/null && [[ ! -f $BUILDS/$t.rc ]]; then
            stage_error "$t: the background build stopped without a result"
            return 1
        fi
        sleep 1
    done
    ((SECONDS - t0 < 5)) || STAGE_NOTE="waited $(fmt_secs $((SECONDS - t0))) for pg-build.sh"
    rc=$(cat "$BUILDS/$t.rc")
    cat "$BUILDS/$t.log"
    if [[ $rc != 0 ]]; then
        stage_error "$t: scripts/pg-build.sh ${t%%-*} ${t#*-} failed (exit $rc)"
        return 1
    fi
    AWAITED_PG_CONFIG=$(tail -n 1 "$BUILDS/$t.out")/bin/pg_config
    if [[ ! -x $AWAITED_PG_CONFIG ]]; then
        stage_error "$t: pg-build.sh printed no usable prefix (no $AWAITED_PG_CONFIG)"
        return 1
    fi
}

# t/040_pg_upgrade.pl upgrades a cluster from the installation named by
# APIKEY_UPGRADE_FROM to the one under test.  The targets above 15 get the
# 15 source build for it (Debian's 15.20 package cannot be upgraded to
# 18.6; see that test), with the tree installed into it: by its own target
# earlier in this run, or here.  Sets UPGRADE_PREFIX, or counts a failure
# (the test would otherwise skip itself without a word).
UPGRADE_FROM=15-asan
declare -A INSTALLED=() # target -> prefix, once the tree is installed into it
needs_upgrade_from() { [[ $1 == [0-9][0-9]-* && ${1%%-*} -gt 15 ]]; }

prepare_upgrade_from() {
    local t=$UPGRADE_FROM prefix
    if [[ -z ${INSTALLED[$t]-} ]]; then
        say "$TARGET: preparing $t for t/040_pg_upgrade.pl"
        await_build "$t" || return 0
        # dynamic scoping: build_and_install sees this PG_CONFIG
        local PG_CONFIG=$AWAITED_PG_CONFIG ASAN_OPTIONS=$NO_LEAKS
        export ASAN_OPTIONS
        copy_tree "$REPO" "$WORK/$t-upgrade/tree"
        if ! build_and_install "$WORK/$t-upgrade/tree" "$WORK/$t-upgrade" "$(stage_secs 900)"; then
            stage_error "$TARGET: building or installing the extension into $t (to upgrade from) failed"
            return 0
        fi
        INSTALLED[$t]=$(ASAN_OPTIONS=$NO_LEAKS "$PG_CONFIG" --bindir)
        INSTALLED[$t]=${INSTALLED[$t]%/bin}
    fi
    prefix=${INSTALLED[$t]}
    UPGRADE_PREFIX=$prefix
    say "$TARGET: APIKEY_UPGRADE_FROM=$prefix"
    # Its servers run in this target's TAP stage: catch their sanitizer
    # reports too.
    if ASAN_OPTIONS=$NO_LEAKS "$prefix/bin/pg_config" --cflags | grep -q -- -fsanitize; then
        SAN_DIR=$WORK/$TARGET/sanitizer
        mkdir -p "$SAN_DIR"
        give_to_pg "$WORK/$TARGET"
    fi
}

# A valgrind target (pg-build.sh's valgrind flavor: -DUSE_VALGRIND, so
# PostgreSQL tells memcheck which memory-context chunks are allocated) runs
# its pg_regress servers under memcheck: SERVER_BINDIR holds links to the
# build's programs, with postgres replaced by a script that starts the real
# one under valgrind.  pg_regress starts SERVER_BINDIR/postgres; initdb
# resolves its own link and runs the real postgres (bootstrap is not ours).
# Forked children (backends, our workers) stay under valgrind; every error
# goes to VG_DIR/PID.log between markers that check_valgrind counts.
VG_DIR=""
SERVER_BINDIR=""
setup_valgrind() {
    local real=$PG_BINDIR supp f
    supp=$(find "$(dirname "$(dirname "$real")")/src" -path '*/src/tools/valgrind.supp' 2>/dev/null | head -n 1)
    if [[ -z $supp ]]; then
        stage_error "$TARGET: src/tools/valgrind.supp not found next to $real"
        return 1
    fi
    if ! command -v valgrind >/dev/null; then
        stage_error "$TARGET: valgrind is not installed (pg-build.sh installs it for this flavor)"
        return 1
    fi
    VG_DIR=$WORK/$TARGET/valgrind
    SERVER_BINDIR=$WORK/$TARGET/bin
    mkdir -p "$VG_DIR" "$SERVER_BINDIR"
    for f in "$real"/*; do ln -sfn "$f" "$SERVER_BINDIR/${f##*/}"; done
    rm -f "$SERVER_BINDIR/postgres"
    cat >"$SERVER_BINDIR/postgres" <<EOS
#!/bin/sh
# postgres -V/--describe-config and the like need no valgrind
case "\$1" in -V|--version|-C|--describe-config) exec "$real/postgres" "\$@" ;; esac
exec valgrind --quiet --leak-check=no --track-origins=yes --num-callers=40 \
    --suppressions="$supp" --error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \
    --log-file="$VG_DIR/%p.log" --trace-children=no "$real/postgres" "\$@"
EOS
    chmod 755 "$SERVER_BINDIR/postgres"
    give_to_pg "$WORK/$TARGET"
    say "$TARGET: servers run under valgrind memcheck ($(valgrind --version)); reports go to $VG_DIR"
}

# After a valgrind stage: one failed test if any server process logged a
# memcheck error; the reports are printed and the logs emptied for the next
# stage.
check_valgrind() {
    [[ -n $VG_DIR && -d $VG_DIR ]] || return 0
    local f errs=0 n
    for f in "$VG_DIR"/*.log; do
        [[ -f $f ]] || continue
        n=$(grep -c 'VALGRINDERROR-BEGIN' "$f" || true)
        if ((n > 0)); then
            errs=$((errs + n))
            echo "----- valgrind report ${f#"$WORK"/} (first 200 lines) -----"
            head -n 200 "$f"
        fi
    done
    if ((errs > 0)); then
        FAILED=$((FAILED + 1))
        warn "valgrind: $errs memcheck error(s) in server processes"
    else
        say "valgrind: no memcheck errors in $(find "$VG_DIR" -name '*.log' | wc -l) server processes"
    fi
    rm -f "$VG_DIR"/*.log
}

# Build stage of a target: find its PostgreSQL, copy the tree, build and
# install the extension into that PostgreSQL.  Sets BUILD_OK=1 on success.
stage_build() {
    SAN_DIR=""
    UPGRADE_PREFIX=""
    case $TARGET in
    15) PG_CONFIG=$DEBIAN_PG_CONFIG ;;
    custom) PG_CONFIG=$USER_PG_CONFIG ;;
    *)
        await_build "$TARGET" || return 0
        PG_CONFIG=$AWAITED_PG_CONFIG
        ;;
    esac
    export ASAN_OPTIONS=$NO_LEAKS # until we know whether it is sanitized
    pg_paths
    say "$TARGET: $("$PG_CONFIG" --version) at $PG_BINDIR"
    SANITIZED=0
    SLOW=1
    VG_DIR=""
    SERVER_BINDIR=""
    if [[ $TARGET == *-valgrind ]]; then
        setup_valgrind || return 0
        SLOW=20
    fi
    if "$PG_CONFIG" --cflags | grep -q -- -fsanitize; then
        SANITIZED=1
        SLOW=3
        SAN_DIR=$WORK/$TARGET/sanitizer
        mkdir -p "$SAN_DIR"
        give_to_pg "$WORK/$TARGET"
        say "$TARGET: sanitized build; ASan/UBSan reports go to $SAN_DIR"
    fi
    # Assertions and memory-context checking cost about 2x (no more time
    # on top of a sanitized build's 3x: the caps are only a safety net).
    if ((SLOW == 1)) && "$PG_CONFIG" --configure | grep -q -- --enable-cassert; then SLOW=2; fi
    if ((!SANITIZED)); then
        if [[ -n $CALLER_ASAN_OPTIONS ]]; then
            ASAN_OPTIONS=$CALLER_ASAN_OPTIONS
        else
            unset ASAN_OPTIONS
        fi
    fi
    say "copying the tree to $TREE"
    copy_tree "$REPO" "$TREE"
    say "building and installing (make clean all; make install)"
    if ! build_and_install "$TREE" "$WORK/$TARGET" "$(stage_secs 300)"; then
        stage_error "$TARGET: building or installing the extension failed"
        return 0
    fi
    INSTALLED[$TARGET]=$("$PG_CONFIG" --bindir)
    INSTALLED[$TARGET]=${INSTALLED[$TARGET]%/bin}
    BUILD_OK=1
    if needs_upgrade_from "$TARGET" && kind_wanted tap; then prepare_upgrade_from; fi
}

run_target() { # TARGET
    TARGET=$1
    TREE=$WORK/$TARGET/tree
    mkdir -p "$WORK/$TARGET"
    give_to_pg "$WORK/$TARGET"
    local kind
    local -a kinds
    read -ra kinds <<<"$(target_kinds "$TARGET")"
    BUILD_OK=0
    run_stage "$TARGET build" stage_build
    for kind in "${kinds[@]}"; do
        kind_wanted "$kind" || continue
        if ((!BUILD_OK)); then
            # Cannot run: one failure per stage, never a silent skip.
            run_stage "$TARGET $kind" not_run "$TARGET $kind: not run (the build stage failed)"
            continue
        fi
        cd "$TREE"
        case $kind in
        unit) run_stage "$TARGET unit" stage_unit ;;
        regress) run_stage "$TARGET regress" stage_regress ;;
        isolation) run_stage "$TARGET isolation" stage_isolation ;;
        tap) run_stage "$TARGET tap" stage_tap ;;
        *) run_stage "$TARGET $kind" stage_script "$kind" ;;
        esac
    done
    cd "$WORK"
}

# ---------------------------------------------------------------- main

TARGETS=()
while (($# > 0)); do
    case $1 in
    --pg)
        [[ $# -ge 2 ]] || {
            stage_error "--pg needs a value (15, 15-asan, 18, 17, 15-valgrind, MAJOR-FLAVOR)"
            exit 2
        }
        if ! t=$(normalize_target "$2"); then
            stage_error "--pg $2: unknown target (15, 15-asan, 18, 17, MAJOR-cassert, MAJOR-asan, MAJOR-valgrind)"
            exit 2
        fi
        [[ " ${TARGETS[*]} " == *" $t "* ]] || TARGETS+=("$t")
        shift 2
        ;;
    --pg=*)
        set -- --pg "${1#--pg=}" "${@:2}"
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d'
        trap - EXIT
        exit 0
        ;;
    *)
        stage_error "unknown argument '$1' (see --help)"
        exit 2
        ;;
    esac
done
if ((${#TARGETS[@]} == 0)); then
    if [[ -n $USER_PG_CONFIG ]]; then
        [[ -x $USER_PG_CONFIG ]] || {
            stage_error "PG_CONFIG=$USER_PG_CONFIG is not an executable"
            exit 2
        }
        TARGETS=(custom)
    else
        TARGETS=("${MATRIX[@]}")
    fi
fi
RUN=()
for t in "${TARGETS[@]}"; do
    if target_wanted "$t"; then RUN+=("$t"); else say "$t: no selected test kind, skipped"; fi
done
say "targets: ${RUN[*]:-none}"

WORK=$(mktemp -d /tmp/apikey-test.XXXXXX)
chmod 755 "$WORK"

SOURCE_TARGETS=()
for t in "${RUN[@]}"; do
    if is_source_target "$t"; then SOURCE_TARGETS+=("$t"); fi
done
# The build to upgrade from (t/040), last unless it is a target itself.
for t in "${RUN[@]}"; do
    if needs_upgrade_from "$t" && kind_wanted tap &&
        [[ " ${SOURCE_TARGETS[*]} " != *" $UPGRADE_FROM "* ]]; then
        SOURCE_TARGETS+=("$UPGRADE_FROM")
    fi
done
deps=(base)
((${#SOURCE_TARGETS[@]} == 0)) || deps+=(build-pg)

say "installing prerequisites (${deps[*]})"
# All groups now, in the foreground: the background builds then find them
# installed and never run apt-get next to another apt-get.
if ! logged "$WORK/install-deps.log" 900 bash "$REPO/scripts/install-deps.sh" "${deps[@]}"; then
    stage_error "prerequisites could not be installed"
    exit 1
fi
start_builds "${SOURCE_TARGETS[@]}"

# Temporary files and socket directories of pg_regress and the TAP modules
# (which keep theirs when a test fails) go under WORK and so get cleaned up.
mkdir -p "$WORK/tmp"
export TMPDIR=$WORK/tmp
give_to_pg "$WORK" # the postgres OS user exists now

for t in "${RUN[@]}"; do
    run_target "$t"
done

if ((PASSED + FAILED == 0)); then
    stage_error "no tests were run"
fi
# finish (the EXIT trap) prints the table and the summary line and sets the
# exit status.

#!/usr/bin/env bash
# test/fuzz/run.sh -- build and run the libFuzzer harnesses of the token and
# scope parsers (see test/fuzz/README.md).
#
#   bash test/fuzz/run.sh                            # 30 s per harness
#   APIKEY_FUZZ_SECONDS=600 bash test/fuzz/run.sh    # 10 min per harness
#
# Prints one TAP line per harness:
#   ok N - fuzz_token (E executions, R exec/s, cov C ft F, corpus K)
#   not ok N - fuzz_token ...   followed by the crash report as "# " lines
# and exits non-zero if any harness failed (or could not be built).
#
# Environment:
#   PG_CONFIG              default /usr/lib/postgresql/15/bin/pg_config
#   APIKEY_FUZZ_SECONDS    seconds per harness (default 30)
#   APIKEY_FUZZ_HARNESSES  which harnesses (default "token scope")
#   APIKEY_FUZZ_DIR        build/work directory (default: a new directory
#                          under $TMPDIR or /tmp, removed after a clean run,
#                          kept when something failed); never the repository
#   APIKEY_FUZZ_JOBS       libFuzzer -fork=N workers per harness (default: 0,
#                          one process)
#   APIKEY_FUZZ_ARGS       extra libFuzzer arguments (e.g. -seed=1)
#   CC                     the compiler, default clang
#
# Installs clang, libfuzzer-14-dev and libssl-dev (and, if PG_CONFIG is
# missing, postgresql-server-dev-15) with apt-get when they are missing;
# that needs root (or sudo).  Nothing is written into the repository: the
# checked-in corpus is copied before fuzzing.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FUZZ=$ROOT/test/fuzz
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
FUZZ_SECONDS=${APIKEY_FUZZ_SECONDS:-30}
HARNESSES=${APIKEY_FUZZ_HARNESSES:-token scope}
JOBS=${APIKEY_FUZZ_JOBS:-0}
EXTRA_ARGS=${APIKEY_FUZZ_ARGS:-}
CC=${CC:-clang}
# "cc" (make's default) is gcc here and cannot build libFuzzer binaries.
[[ $CC == cc || $CC == gcc ]] && CC=clang

note() { printf '# %s\n' "$*"; }
die() {
    printf 'Bail out! %s\n' "$*"
    exit 2
}

if [[ ! $FUZZ_SECONDS =~ ^[0-9]+$ ]] || ((FUZZ_SECONDS == 0)); then
    die "APIKEY_FUZZ_SECONDS must be a positive number of seconds, not '$FUZZ_SECONDS'"
fi
[[ $JOBS =~ ^[0-9]+$ ]] || die "APIKEY_FUZZ_JOBS must be a number, not '$JOBS'"

# ---------------------------------------------------------------------------
# Packages (idempotent: nothing happens when all are installed)
# ---------------------------------------------------------------------------
packages=(clang libfuzzer-14-dev libssl-dev)
[[ -x $PG_CONFIG ]] || packages+=(postgresql-server-dev-15)
missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
    SUDO=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 ||
            die "missing packages (${missing[*]}); run as root to install them"
        SUDO=(sudo)
    fi
    APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
        -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
    note "installing ${missing[*]}"
    aptlog=$(mktemp "${TMPDIR:-/tmp}/apikey-fuzz-apt.XXXXXX")
    if ! { "${APT[@]}" update && "${APT[@]}" install --no-install-recommends "${missing[@]}"; } \
        </dev/null >"$aptlog" 2>&1; then
        tail -n 30 "$aptlog" | sed 's/^/# /'
        rm -f "$aptlog"
        die "apt-get could not install ${missing[*]}"
    fi
    rm -f "$aptlog"
fi
command -v "$CC" >/dev/null 2>&1 || die "compiler '$CC' not found"
[[ -x $PG_CONFIG ]] || die "PG_CONFIG=$PG_CONFIG is not executable"

# ---------------------------------------------------------------------------
# Work directory: outside the repository
# ---------------------------------------------------------------------------
if [[ -n ${APIKEY_FUZZ_DIR:-} ]]; then
    WORK=$(realpath -m "$APIKEY_FUZZ_DIR")
    case "$WORK/" in
    "$ROOT"/*) die "the work directory $WORK is inside the repository" ;;
    esac
    mkdir -p "$WORK" || die "cannot create $WORK"
    KEEP=1
else
    base=$(realpath -m "${TMPDIR:-/tmp}")
    case "$base/" in
    "$ROOT"/*) base=/tmp ;; # never inside the repository
    esac
    WORK=$(mktemp -d "$base/apikey-fuzz.XXXXXX") || die "mktemp failed"
    KEEP=0
fi

# ---------------------------------------------------------------------------
# Build: src/token.c and src/scope.c as the unit test does (-DAPIKEY_FRONTEND,
# server headers, libpgcommon/libpgport), instrumented for libFuzzer, ASan
# and UBSan; fuzz_support.c supplies pg_crc32_table etc.
# ---------------------------------------------------------------------------
INCLUDEDIR=$("$PG_CONFIG" --includedir-server) || die "$PG_CONFIG --includedir-server failed"
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir) || die "$PG_CONFIG --pkglibdir failed"
# shellcheck disable=SC2054  # the commas belong to -fsanitize=
CFLAGS=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -g -O1 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare
    -Wno-missing-field-initializers -Wno-ignored-attributes
    -DAPIKEY_FRONTEND -I"$ROOT/src" -I"$FUZZ" -I"$INCLUDEDIR")
LIBS=(-L"$PKGLIBDIR" -lpgcommon -lpgport -lcrypto -lm)

note "work directory $WORK; $("$CC" --version | head -n 1); $("$PG_CONFIG" --version)"
note "$FUZZ_SECONDS s per harness"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

read -r -a harness_list <<<"$HARNESSES"
echo "1..${#harness_list[@]}"

failed=0
n=0
for h in "${harness_list[@]}"; do
    n=$((n + 1))
    name=fuzz_$h
    src=$FUZZ/$name.c
    if [[ ! -f $src ]]; then
        echo "not ok $n - $name (no such harness: $src)"
        failed=1
        continue
    fi
    case $h in
    token) max_len=600 ;;
    scope) max_len=1400 ;;
    *) max_len=1024 ;;
    esac

    bin=$WORK/$name
    if ! "$CC" "${CFLAGS[@]}" -o "$bin" "$src" "$FUZZ/fuzz_support.c" \
        "$ROOT/src/token.c" "$ROOT/src/scope.c" "${LIBS[@]}" >"$WORK/$name.build.log" 2>&1; then
        echo "not ok $n - $name (build failed)"
        sed 's/^/# /' "$WORK/$name.build.log" | head -n 60
        failed=1
        continue
    fi

    # a copy of the checked-in corpus (and known crash inputs, as regression
    # cases): libFuzzer adds what it finds to it
    corpus=$WORK/corpus-$h
    rm -rf "$corpus" "$WORK/artifacts-$h"
    mkdir -p "$corpus" "$WORK/artifacts-$h"
    [[ -d $FUZZ/corpus/$h ]] && cp -rp "$FUZZ/corpus/$h"/. "$corpus"/
    [[ -d $FUZZ/crashes/$h ]] && cp -rp "$FUZZ/crashes/$h"/. "$corpus"/
    dict=()
    [[ -f $FUZZ/$h.dict ]] && dict=(-dict="$FUZZ/$h.dict")
    fork=()
    ((JOBS > 0)) && fork=(-fork="$JOBS" -ignore_crashes=0)

    log=$WORK/$name.log
    # shellcheck disable=SC2086  # EXTRA_ARGS is a list of options
    (cd "$WORK/artifacts-$h" &&
        "$bin" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -max_len="$max_len" \
            -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$WORK/artifacts-$h/" \
            "${dict[@]}" "${fork[@]}" $EXTRA_ARGS "$corpus" >"$log" 2>&1)
    rc=$?

    # the final stats, or (with -fork) the last status line "#N: cov: ..."
    last=$(grep -E '^#[0-9]+:?[[:space:]].*cov: [0-9]+' "$log" | tail -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [[ -n $execs ]] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    [[ -n $rate ]] || rate=$(sed -n 's/.* exec\/s:\{0,1\} \([0-9]*\).*/\1/p' <<<"$last")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    summary="${execs:-?} executions, ${rate:-?} exec/s, cov ${cov:-?} ft ${ft:-?}, corpus ${corp:-?}"

    crash=$(find "$WORK/artifacts-$h" -maxdepth 1 -type f \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | head -n 1)
    if ((rc == 0)) && [[ -z $crash ]] && grep -q 'Done [0-9]* runs\|DONE\|INFO: exiting: 0' "$log"; then
        echo "ok $n - $name ($summary)"
        ((JOBS > 0)) || grep -E "^$name: " "$log" | tail -n 1 | sed 's/^/# /'
    else
        failed=1
        echo "not ok $n - $name (exit $rc; $summary)"
        # the report: from the first error line on
        awk '/PROPERTY VIOLATED|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|==[0-9]+==ERROR|SUMMARY:/ {p = 1} p' "$log" |
            grep -v '^###### \|# Uses: ' | head -n 80 | sed 's/^/# /'
        if [[ -n $crash ]]; then
            note "reproducer: $crash"
            note "  base64: $(base64 -w0 "$crash")"
            note "rerun: $bin $crash"
        else
            tail -n 20 "$log" | sed 's/^/# /'
        fi
        note "full log: $log"
    fi
done

if ((failed)); then
    note "work directory kept: $WORK"
    exit 1
fi
if ((KEEP == 0)); then
    rm -rf "$WORK"
else
    note "work directory kept: $WORK"
fi
exit 0

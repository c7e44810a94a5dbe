#!/usr/bin/env bash
# bench/fold_beside.sh — what a fold costs the sessions verifying keys next
# to it, and whether running it at a lower CPU priority spares them.
#
# Usage: bash bench/fold_beside.sh [MODE...]
#   MODE is none (no fold: the baseline), nice10 (the workers' priority),
#   nice19 or idle (SCHED_IDLE); default "none nice10 nice10 none".
#   FLUSHES and PER (environment, default 6 and 180000) size the synthetic
#   log, as bench/fold.sh's; SECS (default 60) is each run's length.
# Connects with the PG* environment variables to a database made by
# bench/setup.sql with 1,000,000 keys, on a server started with
# apikey.workers = off.  Run as root or as the server's OS user (it changes
# the priority of the folding backend).  Changes the keys' counts: use a
# scratch cluster.
#
# Each run: two pgbench clients verify random keys (row 2's script) for SECS
# seconds; 5 s in, another session folds a synthetic log with
# apikey_flush(), its backend set to MODE.  Prints the clients' tps, how long
# the fold took, and the tps of each 5 s interval.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FLUSHES=${FLUSHES:-6}
PER=${PER:-180000}
SECS=${SECS:-60}
MODES=("$@")
((${#MODES[@]})) || MODES=(none nice10 nice10 none)
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA)

if [[ $("${PSQL[@]}" -c "SHOW apikey.workers") != off ]]; then
    echo "bench/fold_beside.sh: apikey.workers must be off on this server" >&2
    exit 2
fi
for m in "${MODES[@]}"; do
    [[ $m =~ ^(none|nice10|nice19|idle)$ ]] || { echo "bench/fold_beside.sh: unknown mode $m" >&2; exit 2; }
done
"${PSQL[@]}" -f "$BENCH/synthetic_log.sql"
NKEYS=$("${PSQL[@]}" -c "SELECT count(*) FROM bench_key_ids")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

for m in "${MODES[@]}"; do
    "${PSQL[@]}" -c "SELECT apikey_flush()" >/dev/null
    [[ $m == none ]] || "${PSQL[@]}" -c "CALL bench_log_flushes($FLUSHES, $PER)"
    "${PSQL[@]}" -c "VACUUM apikey_keys" -c "VACUUM apikey_usage" -c "CHECKPOINT"
    pgbench -n -M prepared -c 2 -j 2 -T "$SECS" -P 5 -D nkeys="$NKEYS" -f "$BENCH/verify.sql" \
        >"$TMP/pgbench" 2>&1 &
    pb=$!
    fold=""
    sleep 5
    if [[ $m != none ]]; then
        # the session prints its pid, gives us a second to lower its priority, folds
        "${PSQL[@]}" -c "SELECT pg_backend_pid()" -c "SELECT pg_sleep(1)" -c "SELECT apikey_flush()" \
            >"$TMP/fold" &
        fl=$!
        until [[ -s $TMP/fold ]]; do   # (a session that fails prints nothing: stop)
            kill -0 "$fl" 2>/dev/null || { wait "$fl"; exit 1; }
            sleep 0.1
        done
        pid=$(head -1 "$TMP/fold")
        case $m in
            nice10) renice -n 10 -p "$pid" >/dev/null ;;
            nice19) renice -n 19 -p "$pid" >/dev/null ;;
            idle) chrt --idle -p 0 "$pid" ;;
        esac
        t0=$(date +%s%N)
        wait "$fl"
        fold=$(awk -v a="$(date +%s%N)" -v b="$t0" 'BEGIN { printf ", fold %.1f s", (a - b) / 1e9 - 1 }')
    fi
    wait "$pb"
    printf '%-6s %7.0f tps%s; every 5 s: %s\n' "$m" \
        "$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$TMP/pgbench" | head -1)" "$fold" \
        "$(awk '/^progress/ { printf "%d ", $4 }' "$TMP/pgbench")"
done

#!/usr/bin/env bash
# bench/fold.sh — what one fold of a minute of usage counts costs, fold after
# fold, and where that time does not go (WAL, non-HOT updates).
#
# Usage: bash bench/fold.sh [FOLDS] [FLUSHES] [KEYS_PER_FLUSH]
#   defaults 3 folds of 6 flushes of 180,000 random keys: about 660,000
#   distinct keys of a million, what a minute of row 2 logs.
# Connects with the PG* environment variables (PGHOST, PGPORT, PGDATABASE,
# PGUSER) to a database made by bench/setup.sql, on a server started with
# apikey.workers = off (else the sweep would fold the synthetic log itself).
# Writes a synthetic usage log (random keys, one request each, this hour),
# folds it with apikey_flush(), and commits; then VACUUMs apikey_keys and
# apikey_usage, as autovacuum would after such a fold.  Last, a fold behind
# a fold: one transaction folds a log of FLUSHES x KEYS_PER_FLUSH keys and
# commits 3 s later, while an apikey_flush() that folds the same keys waits
# for it (the fold lock), then folds with a snapshot that sees its writes.
# It prints the total and the time after the first committed: rechecking
# rows the first had updated since its snapshot (EvalPlanQual) took 379 s for
# 780,000 keys in the bench run of 2026-12-01, while the fold found its rows
# by "= ANY (array)"; with a join it costs no more than the fold alone.
# Changes the counts of the bench's keys: use a scratch cluster.
set -euo pipefail

FOLDS=${1:-3}
FLUSHES=${2:-6}
PER=${3:-180000}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA)

if [[ $("${PSQL[@]}" -c "SHOW apikey.workers") != off ]]; then
    echo "bench/fold.sh: apikey.workers must be off on this server (ALTER SYSTEM SET apikey.workers = off; SELECT pg_reload_conf())" >&2
    exit 2
fi

"${PSQL[@]}" -f "$(dirname "${BASH_SOURCE[0]}")/synthetic_log.sql"

TMPF=$(mktemp)
trap 'rm -f "$TMPF"' EXIT
secs_since() { awk -v a="$(date +%s%N)" -v b="$1" 'BEGIN { printf "%.1f", (a - b) / 1e9 }'; }

# Each fold's transaction reads its own statistics (pg_stat_xact_user_tables):
# the HOT counts are the fold's alone, with no wait for another backend to
# report its statistics.
echo "fold of $FLUSHES flushes x $PER random keys, $FOLDS times"
for i in $(seq 1 "$FOLDS"); do
    "${PSQL[@]}" -c "CALL bench_log_flushes($FLUSHES, $PER)"
    line=$("${PSQL[@]}" -v fold="$i" <<'SQL'
SELECT count(DISTINCT k) AS keys FROM apikey_usage_log, unnest(key_ids) k \gset
BEGIN;
SELECT clock_timestamp() AS t0, pg_current_wal_lsn() AS lsn0 \gset
SELECT apikey_flush() AS taken \gset
SELECT format('fold %s: %s keys in %s s (WAL %s); HOT updates: apikey_keys %s, apikey_usage %s',
              :'fold', :'keys',
              round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 1),
              pg_size_pretty(pg_current_wal_lsn() - :'lsn0'::pg_lsn),
              (SELECT n_tup_hot_upd || '/' || n_tup_upd FROM pg_stat_xact_user_tables
                WHERE relid = 'apikey_keys'::regclass),
              (SELECT n_tup_hot_upd || '/' || n_tup_upd FROM pg_stat_xact_user_tables
                WHERE relid = 'apikey_usage'::regclass));
COMMIT;
SQL
)
    t0=$(date +%s%N)
    "${PSQL[@]}" -c "VACUUM apikey_keys" -c "VACUUM apikey_usage"
    printf '%s; then VACUUM %s s\n' "$line" "$(secs_since "$t0")"
done

"${PSQL[@]}" -c "CALL bench_log_flushes($FLUSHES, $PER)"
keys=$("${PSQL[@]}" -c "SELECT count(DISTINCT k) FROM apikey_usage_log, unnest(key_ids) k")
# the first prints when it committed (epoch ns), to tell the second's wait from its work
"${PSQL[@]}" -c "BEGIN" -c "SELECT apikey_flush()" -c "SELECT pg_sleep(3)" -c "COMMIT" \
    -c "SELECT (extract(epoch FROM clock_timestamp()) * 1e9)::bigint" >"$TMPF" &
first=$!
sleep 1
# the same keys again, logged by a committed row of their own
"${PSQL[@]}" -c "INSERT INTO apikey_usage_log (entries, key_ids, buckets, requests, denied, responses,
                     response_ms, client_errors, server_errors, last_used)
                 SELECT entries, key_ids, buckets, requests, denied, responses, response_ms,
                        client_errors, server_errors, last_used FROM apikey_usage_log"
t0=$(date +%s%N)
"${PSQL[@]}" -c "SELECT apikey_flush()" >/dev/null
t1=$(date +%s%N)
wait "$first"
committed=$(grep -E '^[0-9]+$' "$TMPF" | tail -1)
printf 'fold behind a fold of the same %s keys: %s s, of which %s s after the first committed\n' \
    "$keys" "$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.1f", (a - b) / 1e9 }')" \
    "$(awk -v a="$t1" -v b="$committed" 'BEGIN { printf "%.1f", (a - b) / 1e9 }')"

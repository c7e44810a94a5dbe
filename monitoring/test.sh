#!/usr/bin/env bash
# monitoring/test.sh: postgres_exporter, with monitoring/apikey-queries.yaml,
# against a scratch PostgreSQL server, connected as a role that is only a
# member of pg_monitor; the apikey_* series must be in its /metrics.
#
# Run as root from anywhere.  The apikey extension (with its 2.2 scripts)
# must already be built and installed into the PostgreSQL that PG_CONFIG
# names (default /usr/lib/postgresql/15/bin/pg_config), e.g. by
# scripts/test.sh or `make install`.
#
# What it does:
#   1. installs prometheus-postgres-exporter and curl with apt-get, only if
#      missing (the package's own service is not used);
#   2. starts a scratch cluster as the "postgres" OS user (Unix socket in a
#      temporary directory, no TCP, a free port, apikey preloaded, workers
#      on and quick), creates the extension at 2.2, a monitoring role with
#      nothing but membership in pg_monitor, and keys, and verifies them;
#   3. runs the exporter on 127.0.0.1 (a free port) as that role, as the
#      "postgres" OS user, and checks its /metrics with curl: each apikey_*
#      family, values that match what was verified, the workers' series,
#      no scrape error, nothing that names a key or an organization; then
#      that the counters move with the next verifications.
#
# Output: one line per check, `ok N - ...` or `not ok N - ...` (diagnostics
# on `# ` lines), then the plan `1..N`.  Exit status 1 if a check failed.
# The server, the exporter and all temporary files are removed on exit, also
# on failure (APIKEY_KEEP_TMP=1 keeps the files of a failed run).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$REPO/scripts/lib.sh" # PG_CONFIG, AS_PG, pg_paths, give_to_pg, free_port, stop_servers_under

EXPORTER=/usr/bin/prometheus-postgres-exporter
QUERIES=$REPO/monitoring/apikey-queries.yaml
WORK=""
EXPORTER_PID=""
T0=$SECONDS

# shellcheck source=SCRIPTDIR/../scripts/tap.sh
. "$REPO/scripts/tap.sh" # note, result; N and FAILED

# A setup step that failed: one failing check, then stop.
abort() {
    result "setup: $1" "${@:2}"
    exit 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $EXPORTER_PID ]]; then
        kill -TERM "$EXPORTER_PID" 2>/dev/null
        for ((i = 0; i < 50; i++)); do
            kill -0 "$EXPORTER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$EXPORTER_PID" 2>/dev/null
        wait "$EXPORTER_PID" 2>/dev/null
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ -f $WORK/pg/data/postmaster.pid ]]; then
            timeout 60 "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$WORK/pg/data" stop -m fast -w -t 45 \
                >/dev/null 2>&1 </dev/null
        fi
        stop_servers_under "$WORK" >/dev/null
        if ((rc != 0 || FAILED > 0)); then
            for f in exporter.log pg/server.log; do
                [[ -s $WORK/$f ]] || continue
                note "last lines of $f:"
                tail -n 15 "$WORK/$f" | sed 's/^/#   /'
            done
        fi
        if ((rc != 0 || FAILED > 0)) && [[ ${APIKEY_KEEP_TMP:-} == 1 ]]; then
            note "keeping $WORK"
        else
            rm -rf "$WORK" 2>/dev/null || { sleep 1; rm -rf "$WORK"; }
        fi
    fi
    tap_end monitoring/test.sh "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORK=$(mktemp -d /tmp/apikey-monitoring.XXXXXX)
chmod 755 "$WORK"

# ------------------------------------------------------------ dependencies

apt_install_missing "$WORK/apt.log" prometheus-postgres-exporter curl ||
    abort "install prometheus-postgres-exporter curl" "$(tail -n 5 "$WORK/apt.log")"
[[ -x $EXPORTER ]] || abort "$EXPORTER is installed"
command -v setpriv >/dev/null || abort "setpriv (util-linux) is installed"
note "$("$EXPORTER" --version 2>&1 | head -n 1)"

# ------------------------------------------------------------ scratch cluster

pg_paths 2>/dev/null || abort "pg_config at $PG_CONFIG"
ext=$("$PG_CONFIG" --sharedir)/extension
[[ -f $("$PG_CONFIG" --pkglibdir)/apikey.so && -f $ext/apikey.control ]] ||
    abort "the apikey extension is installed" "build and install it first: make install PG_CONFIG=$PG_CONFIG"
[[ -f $ext/apikey--2.1--2.2.sql ]] ||
    abort "apikey 2.2 is installed" "$ext has no apikey--2.1--2.2.sql: build and install the current tree"

mkdir -p "$WORK/pg/sock"
give_to_pg "$WORK/pg"
SOCK=$WORK/pg/sock
PGPORT=$(free_port) || abort "a free port for PostgreSQL"
if ! timeout 120 "${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 \
    --locale=C.UTF-8 --no-instructions --no-sync >"$WORK/initdb.log" 2>&1 </dev/null; then
    abort "initdb" "$(tail -n 5 "$WORK/initdb.log")"
fi
# Appending keeps the file owned by postgres.  The workers run, quickly, so
# that the seconds-since-last-flush/fold/sweep series appear within seconds.
# A throwaway cluster: no fsync.
cat >>"$WORK/pg/data/postgresql.conf" <<EOF

# monitoring/test.sh
listen_addresses = ''
unix_socket_directories = '$SOCK'
port = $PGPORT
fsync = off
shared_preload_libraries = 'apikey'
apikey.flush_interval = '500ms'
apikey.fold_interval = '1s'
apikey.sweep_interval = '1s'
EOF
if ! timeout 90 "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" \
    -w -t 60 start >"$WORK/pg_ctl.log" 2>&1 </dev/null; then
    abort "start PostgreSQL" "$(tail -n 5 "$WORK/pg/server.log" 2>/dev/null)"
fi

# psql_as ROLE SQL...: run statements in appdb, print unaligned tuples.
psql_as() {
    local role=$1
    shift
    timeout 60 "${AS_PG[@]}" "$PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PGPORT" \
        -U "$role" -d appdb "$@" </dev/null
}

timeout 60 "${AS_PG[@]}" "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PGPORT" \
    -U postgres -d postgres -c 'CREATE DATABASE appdb' >"$WORK/setup.log" 2>&1 </dev/null ||
    abort "CREATE DATABASE" "$(tail -n 5 "$WORK/setup.log")"

# The extension at 2.2, the monitoring role (nothing but pg_monitor), keys,
# and verifications: 5 VALID, 1 INSUFFICIENT_SCOPE, 1 REVOKED, 1 MALFORMED
# and 2 NOT_FOUND, the failures from one client address.
psql_as postgres >"$WORK/setup.log" 2>&1 -c "
CREATE EXTENSION apikey VERSION '2.2';
CREATE ROLE apikey_monitor LOGIN;
GRANT pg_monitor TO apikey_monitor;
CREATE TEMP TABLE k AS SELECT * FROM apikey_create('acme', 'monitored', '{documents:read}');
CREATE TEMP TABLE r AS SELECT * FROM apikey_create('acme', 'revoked');
SELECT apikey_revoke(key_id) FROM r;
SELECT count(apikey_verify(token, '{documents:read}')) FROM k, generate_series(1, 5);
SELECT apikey_verify(token, '{documents:delete}', '203.0.113.9') FROM k;
SELECT apikey_verify(token, '{}', '203.0.113.9') FROM r;
SELECT apikey_verify('ak_live_nonsense', '{}', '203.0.113.9');
SELECT apikey_verify('sk_unknown_token', '{}', '203.0.113.9') FROM generate_series(1, 2);
" || abort "create the extension, the monitoring role and keys, and verify" "$(tail -n 5 "$WORK/setup.log")"
KEY_ID=$(psql_as postgres -c "SELECT key_id FROM apikey_keys WHERE name = 'monitored'" 2>>"$WORK/setup.log")
[[ -n $KEY_ID ]] || abort "read back the key" "$(tail -n 5 "$WORK/setup.log")"

version=$(psql_as postgres -c "SELECT extversion FROM pg_extension WHERE extname = 'apikey'" 2>&1)
if [[ $version == 2.2 ]]; then
    result "apikey is at version 2.2"
else
    result "apikey is at version 2.2" "got: $version"
fi

# Its roles: pg_monitor and what pg_monitor includes, nothing else; no
# superuser or other attribute that would bypass privileges.
out=$(psql_as apikey_monitor -c "
SELECT pg_has_role('pg_monitor', 'MEMBER') AND NOT r.rolsuper AND NOT r.rolbypassrls
       AND NOT r.rolcreaterole AND NOT r.rolcreatedb,
       coalesce((SELECT string_agg(o.rolname, ',') FROM pg_roles o
                  WHERE pg_has_role(o.oid, 'MEMBER') AND o.rolname NOT IN ('apikey_monitor', 'pg_monitor')
                    AND NOT pg_has_role('pg_monitor', o.oid, 'MEMBER')), '')
  FROM pg_roles r WHERE r.rolname = current_user" 2>&1)
if [[ $out == 't|' ]]; then
    result "the monitoring role has pg_monitor and nothing more"
else
    result "the monitoring role has pg_monitor and nothing more" "got: $out"
fi
denied=()
for q in "SELECT count(*) FROM apikey_keys" "SELECT count(*) FROM apikey_events" \
    "SELECT count(*) FROM apikey_usage" "SELECT count(*) FROM apikey_pending_usage()" \
    "SELECT count(*) FROM apikey_stats"; do
    out=$(psql_as apikey_monitor -c "$q" 2>&1) && denied+=("not refused: $q -> $out")
    [[ $out == *"permission denied"* ]] || denied+=("$q -> $out")
done
result "the monitoring role reads no keys, events or usage" "${denied[@]}"

# The workers' first visits (flush, fold, sweep), so that their series exist.
for ((i = 0; i < 100; i++)); do
    steps=$(psql_as apikey_monitor -c "SELECT count(*) FROM apikey_metrics WHERE name = 'apikey_seconds_since_last' AND labels->>'database' = 'appdb'" 2>/dev/null)
    [[ $steps == 3 ]] && break
    sleep 0.2
done
[[ $steps == 3 ]] || note "the workers have not visited appdb yet ($steps of 3 steps)"

# ------------------------------------------------------------ the exporter

XPORT=$(free_port) || abort "a free port for the exporter"
# The queries file where the postgres OS user can read it.
cp "$QUERIES" "$WORK/queries.yaml"
chmod 644 "$WORK/queries.yaml"
# setpriv execs the exporter as postgres (no process in between to signal).
env -i PATH=/usr/bin:/bin \
    DATA_SOURCE_NAME="host=$SOCK port=$PGPORT user=apikey_monitor dbname=appdb sslmode=disable" \
    setpriv --reuid=postgres --regid=postgres --init-groups -- \
    "$EXPORTER" --web.listen-address="127.0.0.1:$XPORT" \
    --extend.query-path="$WORK/queries.yaml" >"$WORK/exporter.log" 2>&1 </dev/null &
EXPORTER_PID=$!
URL=http://127.0.0.1:$XPORT/metrics
for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null --max-time 2 "$URL" 2>/dev/null && break
    kill -0 "$EXPORTER_PID" 2>/dev/null || abort "start the exporter" "$(tail -n 5 "$WORK/exporter.log")"
    sleep 0.1
done

# scrape FILE: fetch /metrics into FILE.
scrape() { curl -fsS --max-time 20 -o "$1" "$URL" 2>"$WORK/curl.err"; }

# value FILE NAME [LABELS]: the value of the first series NAME{...} that
# has every label of LABELS (space-separated, e.g. 'database="appdb"
# step="flush"'; the exporter sorts labels and adds its own "server");
# empty if none.
value() {
    awk -v n="$2" -v m="${3:-}" '
        $0 !~ /^#/ {
            split($0, a, /[{ ]/)
            if (a[1] != n) next
            k = split(m, want, " ")
            ok = 1
            for (i = 1; i <= k; i++)
                if (index($0, "{" want[i] ",") == 0 && index($0, "," want[i] ",") == 0 &&
                    index($0, "," want[i] "}") == 0 && index($0, "{" want[i] "}") == 0)
                    ok = 0
            if (ok) { print $NF; exit }
        }' "$1"
}

# check_value DESC FILE NAME LABEL-MATCH AWK-CONDITION (on v)
check_value() {
    local desc=$1 file=$2 name=$3 match=$4 cond=$5 v
    v=$(value "$file" "$name" "$match")
    if [[ -z $v ]]; then
        result "$desc" "no series $name{$match} in /metrics"
    elif awk -v v="$v" "BEGIN { exit !($cond) }"; then
        result "$desc"
    else
        result "$desc" "$name{$match} = $v, expected $cond"
    fi
}

if scrape "$WORK/m1"; then
    result "the exporter serves /metrics on 127.0.0.1"
else
    abort "fetch $URL" "$(cat "$WORK/curl.err")" "$(tail -n 5 "$WORK/exporter.log")"
fi
M=$WORK/m1

check_value "the exporter is connected (pg_up 1)" "$M" pg_up "" 'v == 1'
check_value "the queries file loaded (pg_exporter_user_queries_load_error 0)" "$M" \
    pg_exporter_user_queries_load_error "" 'v == 0'
check_value "the library is preloaded (apikey_preloaded 1)" "$M" apikey_preloaded "" 'v == 1'

# Verifications by code: exactly what was done above (the counters are the
# server's, and nothing else verified).
for cv in VALID:5 INSUFFICIENT_SCOPE:1 REVOKED:1 MALFORMED:1 NOT_FOUND:2 EXPIRED:0 FORBIDDEN:0 RATE_LIMITED:0; do
    check_value "apikey_verifications_total{code=\"${cv%%:*}\"} is ${cv#*:}" "$M" \
        apikey_verifications_total "code=\"${cv%%:*}\"" "v == ${cv#*:}"
done
if grep -q '^# TYPE apikey_verifications_total counter' "$M"; then
    result "apikey_verifications_total is a counter"
else
    result "apikey_verifications_total is a counter" "$(grep '^# TYPE apikey_verifications_total' "$M")"
fi

max_keys=$(psql_as postgres -c 'SHOW apikey.max_tracked_keys')
check_value "apikey_tracked_keys_max is apikey.max_tracked_keys ($max_keys)" "$M" apikey_tracked_keys_max "" "v == $max_keys"
check_value "apikey_tracked_keys{kind=\"pending_counts\"} is present" "$M" apikey_tracked_keys 'kind="pending_counts"' 'v >= 0'
check_value "apikey_tracked_keys{kind=\"rate_windows\"} counts the key's window" "$M" apikey_tracked_keys 'kind="rate_windows"' 'v >= 1'
check_value "apikey_tracked_clients counts the failing client address" "$M" apikey_tracked_clients "" 'v >= 1'
check_value "apikey_tracked_clients_max is positive" "$M" apikey_tracked_clients_max "" 'v > 0'
for kind in rate_windows pending_counts clients; do
    check_value "apikey_shared_memory_bytes{kind=\"$kind\"} is present" "$M" apikey_shared_memory_bytes "kind=\"$kind\"" 'v >= 0'
done
check_value "apikey_shared_memory_bytes{kind=\"rate_windows\"} is taken" "$M" apikey_shared_memory_bytes 'kind="rate_windows"' 'v > 0'
check_value "apikey_shared_memory_bytes_max is positive" "$M" apikey_shared_memory_bytes_max "" 'v > 0'
for name in apikey_rate_limited_untracked_total apikey_failures_untracked_total \
    apikey_untracked_requests_total apikey_untracked_denied_total; do
    check_value "$name is 0" "$M" "$name" "" 'v == 0'
done
for step in flush fold sweep; do
    check_value "apikey_seconds_since_last{database=\"appdb\",step=\"$step\"} is recent" "$M" \
        apikey_seconds_since_last "database=\"appdb\" step=\"$step\"" 'v >= 0 && v < 60'
done

# Every family of the view made it into /metrics (the area size only where
# the server reports it).
families=$(psql_as apikey_monitor -c "SELECT DISTINCT name FROM apikey_metrics ORDER BY 1")
absent=()
for f in $families; do
    grep -q "^${f}[{ ]" "$M" || absent+=("$f")
done
if ((${#absent[@]} == 0)); then
    result "every series of apikey_metrics is exported ($(wc -w <<<"$families") families)"
else
    result "every series of apikey_metrics is exported" "missing: ${absent[*]}"
fi

err=$(value "$M" pg_exporter_last_scrape_error "")
if [[ $err == 0 ]]; then
    result "no scrape error (pg_exporter_last_scrape_error 0)"
else
    result "no scrape error" "pg_exporter_last_scrape_error = ${err:-absent}" \
        "$(grep -E 'level=(error|warn)' "$WORK/exporter.log" | tail -n 3)"
fi
if grep -E 'level=(error|warn)' "$WORK/exporter.log" | grep -q -i -e apikey -e query; then
    result "the exporter logged no error about the queries" \
        "$(grep -E 'level=(error|warn)' "$WORK/exporter.log" | tail -n 3)"
else
    result "the exporter logged no error about the queries"
fi
if grep -v '^#' "$M" | grep -q -e "$KEY_ID" -e acme -e 203.0.113.9; then
    result "no key, organization or client address in /metrics" "$(grep -v '^#' "$M" | grep -e "$KEY_ID" -e acme -e 203.0.113.9 | head -n 3)"
else
    result "no key, organization or client address in /metrics"
fi

# The counters move: 3 more VALID, 1 more NOT_FOUND.
psql_as postgres >"$WORK/more.log" 2>&1 -c "
CREATE TEMP TABLE k AS SELECT * FROM apikey_create('acme', 'second');
SELECT count(apikey_verify(token)) FROM k, generate_series(1, 3);
SELECT apikey_verify('sk_unknown_token');
" || abort "verify again" "$(tail -n 5 "$WORK/more.log")"
scrape "$WORK/m2" || abort "fetch $URL again" "$(cat "$WORK/curl.err")"
check_value "apikey_verifications_total{code=\"VALID\"} moved to 8" "$WORK/m2" apikey_verifications_total 'code="VALID"' 'v == 8'
check_value "apikey_verifications_total{code=\"NOT_FOUND\"} moved to 3" "$WORK/m2" apikey_verifications_total 'code="NOT_FOUND"' 'v == 3'

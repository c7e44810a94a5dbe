#!/usr/bin/env bash
# examples/test.sh: HTTP tests of the Node (examples/node) and Python
# (examples/python) example applications against a scratch PostgreSQL server.
#
# Run as root from anywhere (the project's runner runs it from the repository
# root). The apikey extension must already be built and installed into the
# PostgreSQL that PG_CONFIG names (default /usr/lib/postgresql/15/bin/pg_config),
# e.g. by scripts/test.sh or `make install`.
#
# What it does:
#   1. installs what it needs, only if missing: python3-psycopg,
#      python3-psycopg-pool and curl (apt), the Node example's packages
#      (`npm ci` in a temporary copy of examples/node: nothing is written
#      into the repository). Node.js and npm must be installed already.
#   2. starts a scratch cluster as the "postgres" OS user (Unix socket in a
#      temporary directory, TCP on 127.0.0.1 only, a free port, apikey
#      preloaded), creates the extension, an application role with no
#      privileges of its own, and keys for each case;
#   3. starts each app twice on 127.0.0.1: an IPv4 listener, and an IPv6
#      socket bound to ::ffff:127.0.0.1, where the app sees the client as
#      ::ffff:127.0.0.1 as on any dual-stack listener;
#   4. checks every status with curl, the headers and JSON bodies, then
#      stops PostgreSQL and checks the 503, and finally that no token is in
#      the logs of the apps or of PostgreSQL.
#
# Output: one line per check, `ok N - ...` or `not ok N - ...` (diagnostics
# on `# ` lines), then the plan `1..N`. Exit status 1 if a check failed.
# Servers and temporary files are removed on exit, also on failure.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EXAMPLES=$REPO/examples
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$REPO/scripts/lib.sh" # PG_CONFIG, AS_PG, give_to_pg, free_port, stop_servers_under

PY=/usr/bin/python3 # Debian's Python: the one that sees python3-psycopg
WORK=""
APP_PIDS=()
NPM_PID=""
PGPORT=""
SOCK=""
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
    local pid alive i
    [[ -n $NPM_PID ]] && kill -TERM "$NPM_PID" 2>/dev/null
    for pid in "${APP_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    # The apps stop by themselves on SIGTERM; after 5 s they are killed.
    for ((i = 0; i < 50; i++)); do
        alive=0
        for pid in "${APP_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${APP_PIDS[@]}" $NPM_PID; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ -f $WORK/pg/data/postmaster.pid ]]; then
            timeout 60 "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$WORK/pg/data" stop -m fast -w -t 45 \
                >/dev/null 2>&1 </dev/null
        fi
        stop_servers_under "$WORK" >/dev/null
        if ((rc != 0 || FAILED > 0)) && [[ ${APIKEY_KEEP_TMP:-} == 1 ]]; then
            note "keeping $WORK"
        else
            rm -rf "$WORK" 2>/dev/null || { sleep 1; rm -rf "$WORK"; }
        fi
    fi
    tap_end examples/test.sh "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORK=$(mktemp -d /tmp/apikey-examples.XXXXXX)
chmod 755 "$WORK"

# ------------------------------------------------------------ dependencies

apt_install_missing "$WORK/apt.log" python3-psycopg python3-psycopg-pool curl ||
    abort "install python3-psycopg python3-psycopg-pool curl" "$(tail -n 5 "$WORK/apt.log")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    abort "node and npm are installed" "install Node.js 18+ with npm"
fi

# The Node example runs from a copy, so that node_modules never lands in the
# repository; npm's cache makes this fast after the first time.
mkdir -p "$WORK/node" "$WORK/python"
cp "$EXAMPLES/node/package.json" "$EXAMPLES/node/package-lock.json" "$EXAMPLES/node/.npmrc" \
    "$EXAMPLES/node/apikey.js" "$EXAMPLES/node/server.js" "$WORK/node/"
cp "$EXAMPLES/python/apikey_auth.py" "$EXAMPLES/python/server.py" "$WORK/python/"
# In the background, while the cluster is set up.
(cd "$WORK/node" && exec timeout 300 npm ci --no-audit --no-fund --prefer-offline) \
    >"$WORK/npm.log" 2>&1 </dev/null &
NPM_PID=$!

# ------------------------------------------------------------ scratch cluster

pg_paths 2>/dev/null || abort "pg_config at $PG_CONFIG"
[[ -f $("$PG_CONFIG" --pkglibdir)/apikey.so && -f $("$PG_CONFIG" --sharedir)/extension/apikey.control ]] ||
    abort "the apikey extension is installed" "build and install it first: make install PG_CONFIG=$PG_CONFIG"

mkdir -p "$WORK/pg/sock"
give_to_pg "$WORK/pg"
SOCK=$WORK/pg/sock
PGPORT=$(free_port) || abort "a free port for PostgreSQL"
if ! timeout 120 "${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 \
    --locale=C.UTF-8 --no-instructions >"$WORK/initdb.log" 2>&1 </dev/null; then
    abort "initdb" "$(tail -n 5 "$WORK/initdb.log")"
fi
# Appending keeps the file owned by postgres. Every statement is logged
# (log_min_duration_statement = 0), so that the check that no token reaches
# the server log means something, and so that the log shows how often the
# apps' statements are parsed.
cat >>"$WORK/pg/data/postgresql.conf" <<EOF

# examples/test.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
port = $PGPORT
shared_preload_libraries = 'apikey'
apikey.workers = off
log_min_duration_statement = 0
log_line_prefix = '%m [%p] %a: '
EOF
if ! timeout 90 "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" \
    -w -t 60 start >"$WORK/pg_ctl.log" 2>&1 </dev/null; then
    abort "start PostgreSQL" "$(tail -n 5 "$WORK/pg/server.log" 2>/dev/null)"
fi

psql_su() { # as the superuser, on the Unix socket
    timeout 60 "${AS_PG[@]}" "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PGPORT" \
        -U postgres "$@" </dev/null
}

psql_su -d postgres -c 'CREATE DATABASE appdb' >"$WORK/setup.log" 2>&1 ||
    abort "CREATE DATABASE" "$(tail -n 5 "$WORK/setup.log")"

# Keys for each app (its own, so that one app's requests do not use the
# other's quota). The tokens go to a file that only root can read; psql
# prints them (query results are not logged by the server).
{
    cat <<'SQL'
CREATE EXTENSION apikey;
-- The applications' role: nothing granted (EXECUTE on apikey_verify is PUBLIC).
-- Bind parameters (the Authorization header) are kept out of the server log
-- even when statements are logged.
CREATE ROLE apikey_app LOGIN;
ALTER ROLE apikey_app SET log_parameter_max_length = 0;
ALTER ROLE apikey_app SET log_parameter_max_length_on_error = 0;
CREATE TEMP TABLE k(name text, key_id text, token text);
SQL
    for app in node python; do
        cat <<SQL
INSERT INTO k SELECT '$app-valid', c.* FROM apikey_create('acme', '$app valid', '{documents:read}') c;
INSERT INTO k SELECT '$app-writer', c.* FROM apikey_create('acme', '$app writer', '{documents:*}') c;
INSERT INTO k SELECT '$app-revoked', c.* FROM apikey_create('acme', '$app revoked', '{documents:read}') c;
INSERT INTO k SELECT '$app-expired', c.* FROM apikey_create('acme', '$app expired', '{documents:read}') c;
INSERT INTO k SELECT '$app-ip10', c.* FROM apikey_create('acme', '$app ip10', '{documents:read}', allowed_ips => '{10.0.0.0/8}') c;
INSERT INTO k SELECT '$app-ip127', c.* FROM apikey_create('acme', '$app ip127', '{documents:read}', allowed_ips => '{127.0.0.1/32}') c;
INSERT INTO k SELECT '$app-rate', c.* FROM apikey_create('acme', '$app rate', '{documents:read}', rate_limit => 2) c;
SQL
    done
    cat <<'SQL'
SELECT count(*) FILTER (WHERE apikey_revoke(key_id, 'examples/test.sh')) AS revoked
  FROM k WHERE name LIKE '%-revoked' \gset
-- As superuser, direct DML is allowed (and audited): expired a minute ago.
UPDATE apikey_keys SET expires_at = now() - interval '1 minute'
 WHERE key_id IN (SELECT key_id FROM k WHERE name LIKE '%-expired');
-- A well-formed token that no key has (any more).
INSERT INTO k SELECT 'unknown', c.* FROM apikey_create('acme', 'deleted') c;
DELETE FROM apikey_keys WHERE key_id = (SELECT key_id FROM k WHERE name = 'unknown');
\pset format unaligned
\pset tuples_only on
\pset fieldsep ' '
SELECT name, token FROM k ORDER BY name;
SQL
} >"$WORK/setup.sql"
give_to_pg "$WORK/setup.sql"
(umask 077 && psql_su -d appdb -f "$WORK/setup.sql" >"$WORK/tokens" 2>"$WORK/setup.log") ||
    abort "create the extension, the role and the keys" "$(tail -n 5 "$WORK/setup.log")"

declare -A TOK
while read -r name token; do
    [[ -n $name && -n $token ]] && TOK[$name]=$token
done <"$WORK/tokens"
((${#TOK[@]} == 15)) || abort "15 tokens issued" "got ${#TOK[@]}: $(cut -d' ' -f1 "$WORK/tokens" | tr '\n' ' ')"
# A token of the right shape with its checksum broken, and one that is not
# even the right shape: both MALFORMED.
last=${TOK[node-valid]: -1}
[[ $last == A ]] && repl=B || repl=A
TOK[tampered]=${TOK[node-valid]%?}$repl
TOK[malformed]=ak_live_tooshort
# Everything a log must never contain.
printf '%s\n' "${TOK[@]}" >"$WORK/secrets"

# ------------------------------------------------------------ the apps

npm_rc=0
wait "$NPM_PID" || npm_rc=$?
NPM_PID=""
((npm_rc == 0)) || abort "npm ci in a copy of examples/node" "$(tail -n 5 "$WORK/npm.log")"

declare -A URL
# start_app NAME HOST DATABASE CMD... : start an app, remember its pid and URL.
start_app() {
    local name=$1 host=$2 db=$3 port dir
    shift 3
    port=$(free_port) || abort "a free port for $name"
    dir=$WORK/node
    [[ $name == python* ]] && dir=$WORK/python
    # A clean environment: only what the app needs, the database over TCP on
    # 127.0.0.1 as the unprivileged role.
    (cd "$dir" && exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$WORK" LANG=C.UTF-8 \
        PGHOST=127.0.0.1 PGPORT="$PGPORT" PGDATABASE="$db" PGUSER=apikey_app \
        PGAPPNAME="$name" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
        HOST="$host" PORT="$port" TRUST_PROXY=loopback "$@" \
        >"$WORK/$name.log" 2>&1 </dev/null) &
    APP_PIDS+=("$!")
    URL[$name]=http://127.0.0.1:$port
}
# Each app three times: the main instance; one on an IPv6 socket bound to
# ::ffff:127.0.0.1, where IPv4 clients appear as ::ffff:127.0.0.1 (as on
# any dual-stack listener); one connected to a database without the
# extension, for the 500.
APPS=()
IPV6=0
[[ -e /proc/net/if_inet6 ]] && IPV6=1 # a kernel without IPv6: no dual-stack checks
for app in node python; do
    cmd=(node server.js)
    [[ $app == python ]] && cmd=("$PY" server.py)
    start_app "$app" 127.0.0.1 appdb "${cmd[@]}"
    APPS+=("$app")
    if ((IPV6)); then
        start_app "$app-dualstack" ::ffff:127.0.0.1 appdb "${cmd[@]}"
        APPS+=("$app-dualstack")
    fi
    start_app "$app-noext" 127.0.0.1 postgres "${cmd[@]}"
    APPS+=("$app-noext")
done

for name in "${APPS[@]}"; do
    up=0
    for ((i = 0; i < 100; i++)); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${URL[$name]}/health") == 200 ]]; then
            up=1
            break
        fi
        sleep 0.1
    done
    ((up)) || abort "start the $name app" "$(tail -n 5 "$WORK/$name.log")"
done

# ------------------------------------------------------------ helpers

# request APP METHOD PATH TOKEN_NAME|- [HEADER...]: STATUS, and the response
# headers and body in $WORK/resp.h / $WORK/resp.b. The Authorization header
# goes through a file, not the command line (ps shows command lines).
request() {
    local app=$1 method=$2 path=$3 tok=$4
    shift 4
    local args=(-s -o "$WORK/resp.b" -D "$WORK/resp.h" -w '%{http_code}' --max-time 15 -X "$method")
    : >"$WORK/auth.h"
    if [[ $tok != - ]]; then
        if [[ $tok == raw:* ]]; then
            printf 'Authorization: %s\n' "${tok#raw:}" >"$WORK/auth.h"
        else
            printf 'Authorization: Bearer %s\n' "${TOK[$tok]}" >"$WORK/auth.h"
        fi
        args+=(-H "@$WORK/auth.h")
    fi
    local h
    for h in "$@"; do args+=(-H "$h"); done
    [[ $method == POST ]] && args+=(-H 'Content-Type: application/json' --data '{"title": "a document"}')
    STATUS=$(curl "${args[@]}" "${URL[$app]}$path" 2>/dev/null) || STATUS=${STATUS:-000}
}

# header NAME: its value in the last response ("" if absent).
header() {
    awk -v n="$(tr '[:upper:]' '[:lower:]' <<<"$1")" -F': ' '
        { sub(/\r$/, "") }
        tolower($1) == n { sub(/^[^:]*: */, ""); print; exit }' "$WORK/resp.h"
}

# body_code: the "code" of the last JSON body; "(not JSON)" if it is not an
# object with string members error and code.
body_code() {
    "$PY" - "$WORK/resp.b" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    assert isinstance(d, dict) and isinstance(d.get("error"), str) and isinstance(d.get("code"), str)
    print(d["code"])
except Exception:
    print("(not JSON)")
EOF
}

# expect DESC STATUS CODE WWW -- REQUEST-ARGS...: one check of a refusal.
# CODE: the JSON body's code ("" = the body is not checked). WWW: an ERE the
# WWW-Authenticate header must match, "none" = must be absent, "" = ignored.
expect() {
    local desc=$1 want=$2 code=$3 www=$4 got why=()
    shift 5
    request "$@"
    [[ $STATUS == "$want" ]] || why+=("status $STATUS, expected $want")
    if [[ -n $code ]]; then
        got=$(body_code)
        [[ $got == "$code" ]] || why+=("body code $got, expected $code")
    fi
    got=$(header WWW-Authenticate)
    if [[ $www == none ]]; then
        [[ -z $got ]] || why+=("unexpected WWW-Authenticate: $got")
    elif [[ -n $www ]]; then
        [[ $got =~ $www ]] || why+=("WWW-Authenticate '$got' does not match /$www/")
    fi
    ((${#why[@]})) && why+=("body: $(head -c 300 "$WORK/resp.b")")
    result "$desc" "${why[@]}"
}

# rate_headers LIMIT REMAINING: reasons if X-RateLimit-* are not as expected.
rate_headers() {
    local l r s now
    l=$(header X-RateLimit-Limit)
    r=$(header X-RateLimit-Remaining)
    s=$(header X-RateLimit-Reset)
    now=$(date +%s)
    [[ $l == "$1" ]] || echo "X-RateLimit-Limit '$l', expected $1"
    if [[ $2 == '<' ]]; then
        [[ $r =~ ^[0-9]+$ ]] && ((r < l)) || echo "X-RateLimit-Remaining '$r', expected a number below the limit"
    else
        [[ $r == "$2" ]] || echo "X-RateLimit-Remaining '$r', expected $2"
    fi
    # The default window is an hour: the reset is within the next hour.
    [[ $s =~ ^[0-9]+$ ]] && ((s > now && s <= now + 3601)) ||
        echo "X-RateLimit-Reset '$s' is not epoch seconds in the next hour (now $now)"
}

INVALID='^Bearer realm="api", error="invalid_token"'

# ------------------------------------------------------------ the checks

for app in node python; do
    p=$app # keys of this app

    request "$app" GET /health -
    why=()
    [[ $STATUS == 200 ]] || why+=("status $STATUS")
    result "$app: GET /health answers 200 without a key" "${why[@]}"

    expect "$app: 401 with a bare Bearer challenge for a request without Authorization" \
        401 MISSING_TOKEN '^Bearer realm="api"$' -- "$app" GET /documents -
    expect "$app: 401 invalid_token for a malformed key" \
        401 MALFORMED "$INVALID" -- "$app" GET /documents malformed
    expect "$app: 401 invalid_token for a key with a wrong checksum" \
        401 MALFORMED "$INVALID" -- "$app" GET /documents tampered
    expect "$app: 401 invalid_token for an unknown key" \
        401 NOT_FOUND "$INVALID" -- "$app" GET /documents unknown
    expect "$app: 401 invalid_token for a revoked key" \
        401 REVOKED "$INVALID" -- "$app" GET /documents "$p-revoked"
    expect "$app: 401 invalid_token for an expired key" \
        401 EXPIRED "$INVALID" -- "$app" GET /documents "$p-expired"

    request "$app" GET /documents "$p-valid"
    why=()
    [[ $STATUS == 200 ]] || why+=("status $STATUS, body $(head -c 300 "$WORK/resp.b")")
    mapfile -t -O "${#why[@]}" why < <(rate_headers 1000 '<')
    result "$app: 200 for a valid key, with X-RateLimit-Limit/Remaining/Reset" "${why[@]}"

    request "$app" GET /documents "raw:bearer ${TOK[$p-valid]}"
    why=()
    [[ $STATUS == 200 ]] || why+=("status $STATUS, body $(head -c 300 "$WORK/resp.b")")
    result "$app: 200 for a valid key with the scheme written in lower case" "${why[@]}"

    expect "$app: 403 insufficient_scope (naming the scope) for POST /documents without documents:create" \
        403 INSUFFICIENT_SCOPE '^Bearer realm="api", error="insufficient_scope", scope="documents:create"$' \
        -- "$app" POST /documents "$p-valid"

    request "$app" POST /documents "$p-writer"
    why=()
    [[ $STATUS == 201 ]] || why+=("status $STATUS, body $(head -c 300 "$WORK/resp.b")")
    result "$app: 201 for POST /documents with documents:*" "${why[@]}"

    expect "$app: 403 FORBIDDEN for a key allowed only from 10.0.0.0/8" \
        403 FORBIDDEN none -- "$app" GET /documents "$p-ip10"
    expect "$app: 200 for a key allowed from 127.0.0.1/32" \
        200 "" "" -- "$app" GET /documents "$p-ip127"
    if ((IPV6)); then
        expect "$app: 200 for a key allowed from 127.0.0.1/32 on a dual-stack listener (client ::ffff:127.0.0.1)" \
            200 "" "" -- "$app-dualstack" GET /documents "$p-ip127"
    else
        N=$((N + 1))
        printf 'ok %d - %s # SKIP no IPv6 on this machine\n' "$N" "$app: dual-stack listener"
    fi

    # X-Forwarded-For through `trust proxy` (Node) / TRUST_PROXY=loopback (Python).
    expect "$app: 200 for a key allowed from 10.0.0.0/8 behind a trusted proxy (X-Forwarded-For: 10.1.2.3)" \
        200 "" "" -- "$app" GET /documents "$p-ip10" 'X-Forwarded-For: 10.1.2.3'
    expect "$app: 200, not 500, for a valid key with a malformed X-Forwarded-For" \
        200 "" "" -- "$app" GET /documents "$p-valid" 'X-Forwarded-For: not-an-address'
    request "$app" GET /documents "$p-ip10" 'X-Forwarded-For: 10.1.2.3:4567'
    why=()
    [[ $STATUS == 403 && $(body_code) == FORBIDDEN ]] ||
        why+=("status $STATUS, body $(head -c 300 "$WORK/resp.b")")
    ! grep -qi 'inet\|syntax' "$WORK/resp.b" || why+=("the body shows the database error")
    result "$app: 403 FORBIDDEN, not 500, for an allowlisted key with a malformed X-Forwarded-For" "${why[@]}"

    # Rate limit 2 per hour: two admitted, the third refused.
    why=()
    request "$app" GET /documents "$p-rate"
    [[ $STATUS == 200 ]] || why+=("first request: status $STATUS")
    mapfile -t -O "${#why[@]}" why < <(rate_headers 2 1 | sed 's/^/first request: /')
    request "$app" GET /documents "$p-rate"
    [[ $STATUS == 200 ]] || why+=("second request: status $STATUS")
    mapfile -t -O "${#why[@]}" why < <(rate_headers 2 0 | sed 's/^/second request: /')
    result "$app: 200 twice for a key limited to 2 requests, X-RateLimit-Remaining 1 then 0" "${why[@]}"

    request "$app" GET /documents "$p-rate"
    why=()
    [[ $STATUS == 429 ]] || why+=("status $STATUS, expected 429")
    ra=$(header Retry-After)
    [[ $ra =~ ^[0-9]+$ ]] && ((ra >= 1 && ra <= 3600)) || why+=("Retry-After '$ra' is not 1..3600 seconds")
    mapfile -t -O "${#why[@]}" why < <(rate_headers 2 0)
    # Retry-After and X-RateLimit-Reset tell the same moment.
    s=$(header X-RateLimit-Reset)
    [[ $s =~ ^[0-9]+$ && $ra =~ ^[0-9]+$ ]] && (( (s - $(date +%s) - ra) ** 2 <= 4 )) ||
        why+=("Retry-After $ra does not match X-RateLimit-Reset $s")
    result "$app: 429 with Retry-After and X-RateLimit-* when the limit is used up" "${why[@]}"
    got=$(body_code)
    why=()
    [[ $got == RATE_LIMITED ]] || why+=("body code $got, body $(head -c 300 "$WORK/resp.b")")
    [[ $(header Content-Type) == application/json* ]] || why+=("Content-Type: $(header Content-Type)")
    result "$app: 429 has a JSON body with code RATE_LIMITED" "${why[@]}"

    request "$app-noext" GET /documents "$p-valid"
    why=()
    [[ $STATUS == 500 ]] || why+=("status $STATUS, expected 500")
    got=$(body_code)
    [[ $got == INTERNAL_ERROR ]] || why+=("body code $got")
    ! grep -qiE 'apikey_verify|exist|function|42883' "$WORK/resp.b" ||
        why+=("the body shows the database error: $(head -c 300 "$WORK/resp.b")")
    result "$app: 500 with a JSON body, without the database's message, for a database error" "${why[@]}"
done

# How often the server parsed the verify statement: a named (prepared)
# statement is parsed once per connection and then only executed.
for app in node python; do
    read -r parses executes unnamed < <(awk -v a="$app:" '
        $5 == a && /duration: .* (parse|execute) [^:]+: SELECT valid, code/ {
            if (/ parse /) p++; else if (/ execute <unnamed>:/) u++; else e++ }
        END { print p + 0, e + 0, u + 0 }' "$WORK/pg/server.log")
    why=()
    ((executes > 0 && parses < executes && unnamed == 0)) ||
        why+=("parsed $parses times, executed $executes times as a named statement, $unnamed times unnamed")
    result "$app: apikey_verify runs as a named prepared statement (parsed $parses times, executed $executes)" "${why[@]}"
done

# The database goes away: the apps answer 503 with JSON, keep running, and
# say nothing about the database to the client.
timeout 60 "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$WORK/pg/data" stop -m fast -w -t 45 \
    >/dev/null 2>&1 </dev/null
for app in node python; do
    request "$app" GET /documents "$app-valid"
    why=()
    [[ $STATUS == 503 ]] || why+=("status $STATUS, expected 503")
    got=$(body_code)
    [[ $got == SERVICE_UNAVAILABLE ]] || why+=("body code $got")
    ! grep -qiE 'ECONN|refused|terminat|connect|postgres|socket' "$WORK/resp.b" ||
        why+=("the body shows the database error: $(head -c 300 "$WORK/resp.b")")
    result "$app: 503 with a JSON body, without the database's message, when PostgreSQL is down" "${why[@]}"
    request "$app" GET /health -
    why=()
    [[ $STATUS == 200 ]] || why+=("status $STATUS: the app died? $(tail -n 3 "$WORK/$app.log")")
    result "$app: still running after the database went away" "${why[@]}"
done

# Logs: no token anywhere (they hold request lines, errors, and the server's
# statement log with every verification).
for log in "${APPS[@]}" pg/server; do
    why=()
    [[ -s $WORK/$log.log ]] || why+=("$WORK/$log.log is empty or missing")
    if hits=$(grep -c -F -f "$WORK/secrets" "$WORK/$log.log"); then
        why+=("$hits lines contain a token")
    fi
    case $log in pg/server) what="PostgreSQL's log" ;; *) what="the $log app's log" ;; esac
    result "no token in $what" "${why[@]}"
done

#!/usr/bin/env bash
# scripts/demo.sh — see apikey work end to end on a throwaway server.
#
# Run as root.  Installs prerequisites, builds and installs the extension,
# starts a scratch PostgreSQL 15 cluster (owned by the "postgres" OS user,
# Unix socket only, its own port, apikey preloaded) and walks through:
# issue a key, verify it, verify with a missing scope, verify a tampered
# token, revoke it, verify again, the audit trail, and what is stored.
# The cluster and all temporary files are removed on exit, also on failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$REPO/scripts/lib.sh"

WORK=""

heading() { printf '\n=== %s ===\n' "$*"; }

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_child
    if ((rc != 0)); then
        warn "demo FAILED (exit status $rc)"
        if [[ -n $WORK && -f $WORK/server.log ]]; then
            echo "----- last 40 lines of the server log -----" >&2
            tail -n 40 "$WORK/server.log" >&2
        fi
    fi
    if [[ -n $WORK ]]; then
        if [[ -f $WORK/data/postmaster.pid ]]; then heading "Stopping the scratch server"; fi
        timeout 60 "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$WORK/data" stop -m fast -w -t 45 \
            >/dev/null 2>&1 </dev/null
        stop_servers_under "$WORK" # whatever is still running (pg_ctl failed)
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

WORK=$(mktemp -d /tmp/apikey-demo.XXXXXX)

heading "Installing prerequisites (only if missing)"
watched 600 "$WORK/install-deps.log" 1 bash "$REPO/scripts/install-deps.sh"
pg_paths
give_to_pg "$WORK"

heading "Building and installing apikey"
copy_tree "$REPO" "$WORK/tree"
build_and_install "$WORK/tree" "$WORK" 300
echo "installed into $("$PG_CONFIG" --pkglibdir) and $("$PG_CONFIG" --sharedir)/extension"

heading "Starting a scratch PostgreSQL 15 server"
PORT=$(free_port)
SOCK=$WORK/sock
mkdir -p "$SOCK"
give_to_pg "$SOCK"
if ! watched 120 "$WORK/initdb.log" 0 "${AS_PG[@]}" "$PG_BINDIR/initdb" \
    -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-instructions; then
    tail -n 40 "$WORK/initdb.log" >&2
    exit 1
fi
# Appending keeps the file owned by postgres.
cat >>"$WORK/data/postgresql.conf" <<EOF

# apikey demo
listen_addresses = ''
unix_socket_directories = '$SOCK'
port = $PORT
shared_preload_libraries = 'apikey'
EOF
if ! watched 90 "$WORK/pg_ctl.log" 0 "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" \
    -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start; then
    cat "$WORK/pg_ctl.log" >&2
    exit 1
fi
echo "server running: data $WORK/data, socket $SOCK, port $PORT"

# The walkthrough is one psql session: \gset keeps the issued key's key_id
# and token in psql variables for the later steps.
cat >"$WORK/demo.sql" <<'SQL'
\echo '\n=== CREATE EXTENSION apikey ==='
CREATE EXTENSION apikey;
\set QUIET on

\echo '\n=== 1. Issue a key for tenant acme with scope documents:read ==='
SELECT * FROM apikey_create('acme', 'demo key', '{documents:read}') \gset
\echo 'key_id:' :key_id
\echo 'token: ' :token
\echo '(the token is shown once; the server keeps only its hash)'

\x on
\echo '\n=== 2. Verify the token for documents:read (expect: valid) ==='
SELECT * FROM apikey_verify(:'token', '{documents:read}', '127.0.0.1');

\echo '\n=== 3. Verify for documents:delete, a scope the key lacks (expect: INSUFFICIENT_SCOPE) ==='
SELECT * FROM apikey_verify(:'token', '{documents:delete}', '127.0.0.1');

\echo '\n=== 4. Verify a tampered token, last character changed (expect: MALFORMED) ==='
SELECT left(:'token', -1)
       || CASE WHEN right(:'token', 1) = 'A' THEN 'B' ELSE 'A' END AS bad_token \gset
\echo 'tampered token:' :bad_token
SELECT * FROM apikey_verify(:'bad_token', '{documents:read}', '127.0.0.1');
\x off

\echo '\n=== 5. Revoke the key ==='
SELECT apikey_revoke(:'key_id', 'demo over');

\x on
\echo '\n=== 6. Verify the revoked key (expect: REVOKED) ==='
SELECT * FROM apikey_verify(:'token', '{documents:read}', '127.0.0.1');
\x off

\echo '\n=== 7. Audit trail ==='
SELECT event, actor, key_id FROM apikey_events ORDER BY event_id;

\echo '\n=== 8. What is stored: a hint and the hash, never the token ==='
SELECT key_id, hint, encode(hash, 'hex') AS hash FROM apikey_keys;
SQL
give_to_pg "$WORK/demo.sql"
if ! watched 120 "$WORK/demo.out" 1 "${AS_PG[@]}" "$PG_BINDIR/psql" -X -v ON_ERROR_STOP=1 \
    -P pager=off -h "$SOCK" -p "$PORT" -U postgres -d postgres -f "$WORK/demo.sql"; then
    warn "psql failed; see the error above"
    exit 1
fi

# The walkthrough must have shown each refusal it promises (in query
# output, not just in the "=== ... (expect: ...)" headings).
for outcome in INSUFFICIENT_SCOPE MALFORMED REVOKED; do
    if ! grep -v '^=== ' "$WORK/demo.out" | grep -q "$outcome"; then
        warn "expected to see $outcome in the output above"
        exit 1
    fi
done

heading "Demo finished"

# shellcheck shell=bash
# Helpers shared by scripts/test.sh and scripts/demo.sh.  Sourced, not run.
#
# The caller sets REPO (the repository root) before sourcing this file.

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PG_BINDIR=/usr/lib/postgresql/15/bin # replaced by pg_config's answer in pg_paths
PG_OS_USER=postgres                  # initdb and the server refuse to run as root

say() { printf '==> %s\n' "$*"; }
warn() { printf '!! %s\n' "$*" >&2; }

# Command prefixes: AS_PG runs a command as the unprivileged OS user that owns
# the scratch trees and servers; AS_ROOT runs one with root rights (make
# install).  Run as root (CI), both are plain; a developer running as an
# ordinary user gets no user switch for tests and sudo for installing.
if [[ $EUID -eq 0 ]]; then
    AS_PG=(runuser -u "$PG_OS_USER" --)
    AS_ROOT=()
else
    AS_PG=()
    AS_ROOT=(sudo --)
fi

# Ask $PG_CONFIG where things live (only valid once installed):
#   PG_BINDIR             initdb, postgres, pg_ctl, psql ...
#   PG_REGRESS, PG_ISOLATION_REGRESS, PG_PERL_LIB
#                         the test drivers and TAP modules PGXS installs
#                         under lib/pgxs/src/test (next to src/makefiles).
pg_paths() {
    local pgxs_test
    PG_BINDIR=$("$PG_CONFIG" --bindir)
    pgxs_test=$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")/test
    # shellcheck disable=SC2034 # used by test.sh
    PG_REGRESS=$pgxs_test/regress/pg_regress
    # shellcheck disable=SC2034
    PG_ISOLATION_REGRESS=$pgxs_test/isolation/pg_isolation_regress
    # shellcheck disable=SC2034
    PG_PERL_LIB=$pgxs_test/perl
}

# Hand DIR (recursively) to the test OS user when running as root.
give_to_pg() { # DIR
    if [[ $EUID -eq 0 ]]; then chown -R "$PG_OS_USER": "$1"; fi
}

# Copy the working tree (uncommitted edits included, .git and old test
# output excluded) to DEST, owned by the test OS user.
copy_tree() { # SRC DEST
    local src=$1 dest=$2
    mkdir -p "$dest"
    tar -C "$src" \
        --exclude=./.git --exclude=./tmp_check --exclude=./tmp_check_iso \
        --exclude=./results --exclude=./output_iso --exclude=./log \
        --exclude=./regression.diffs --exclude=./regression.out \
        -cf - . | tar -C "$dest" -xf -
    give_to_pg "$dest"
}

# True if something already uses PORT (a TCP listener on localhost or a
# PostgreSQL socket in one of the usual directories).
port_in_use() { # PORT
    local p=$1
    [[ -e /tmp/.s.PGSQL.$p || -e /var/run/postgresql/.s.PGSQL.$p ]] && return 0
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
    return 1
}

# Print a port nothing is using, chosen at random in 20000..39999.
free_port() {
    local p tries
    for ((tries = 0; tries < 200; tries++)); do
        p=$((20000 + RANDOM % 20000))
        if ! port_in_use "$p"; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    warn "could not find a free port"
    return 1
}

# Stop every PostgreSQL server whose data directory lies under DIR, found by
# its postmaster.pid (first line = postmaster PID).  Only processes that are
# still a "postgres" and were started from our own scratch directory are
# touched.
stop_servers_under() { # DIR
    local dir=$1 pidfile pid datadir
    [[ -n $dir && -d $dir ]] || return 0
    while IFS= read -r -d '' pidfile; do
        pid=$(head -n 1 "$pidfile" 2>/dev/null) || continue
        [[ $pid =~ ^[0-9]+$ ]] || continue
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == postgres ]] || continue
        datadir=$(dirname "$pidfile")
        say "stopping leftover server in $datadir (pid $pid)"
        timeout 40 "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$datadir" stop -m immediate -w -t 30 \
            >/dev/null 2>&1 </dev/null ||
            kill -KILL "$pid" 2>/dev/null || true
    done < <(find "$dir" -name postmaster.pid -print0 2>/dev/null)
}

# watched SECS LOG SHOW CMD... : run CMD (no stdin) under `timeout SECS`,
# output to LOG, and also shown live when SHOW=1; returns CMD's status (124
# or 137 = timed out).  CMD runs in the background and we `wait` for it, so a
# signal trap in the calling script runs at once (see stop_child); with a
# plain foreground command bash would hold the trap until CMD ended, and
# Ctrl-C would not reach CMD, which `timeout` puts in its own process group.
CHILD_PID=""
TAIL_PID=""
watched() {
    local secs=$1 logf=$2 show=$3 rc=0
    shift 3
    : >"$logf"
    timeout -k 20 "$secs" "$@" </dev/null >>"$logf" 2>&1 &
    CHILD_PID=$!
    if [[ $show == 1 ]]; then
        # Follows the log until the command has exited, then stops by itself.
        tail -n +1 -f --pid="$CHILD_PID" "$logf" &
        TAIL_PID=$!
    fi
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    if [[ -n $TAIL_PID ]]; then wait "$TAIL_PID" || true; fi
    TAIL_PID=""
    return "$rc"
}

# For signal traps: stop the command `watched` is running (timeout passes the
# signal on to its whole process group, and kills it 20 s later if need be).
stop_child() {
    if [[ -n $CHILD_PID ]]; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
        CHILD_PID=""
    fi
    if [[ -n $TAIL_PID ]]; then
        kill "$TAIL_PID" 2>/dev/null || true
        wait "$TAIL_PID" 2>/dev/null || true
        TAIL_PID=""
    fi
}

# Build TREE as the test OS user (make clean, make all), then install it as
# root (make install).  Logs go to LOGDIR/build-*.log; the three steps
# together may take SECS seconds.  On failure prints the tail of the failing
# step's log and returns non-zero.
build_and_install() { # TREE LOGDIR SECS
    local tree=$1 logdir=$2 deadline=$((SECONDS + $3)) jobs step logf secs
    jobs=$(nproc 2>/dev/null || echo 2)
    for step in clean all install; do
        secs=$((deadline - SECONDS))
        if ((secs < 1)); then
            warn "build: out of time before 'make $step'"
            return 1
        fi
        logf=$logdir/build-$step.log
        local -a cmd=("${AS_PG[@]}")
        [[ $step == install ]] && cmd=("${AS_ROOT[@]}")
        cmd+=(make -C "$tree" -s PG_CONFIG="$PG_CONFIG")
        [[ $step == all ]] && cmd+=(-j"$jobs")
        cmd+=("$step")
        if ! watched "$secs" "$logf" 0 "${cmd[@]}"; then
            warn "'make $step' failed; last lines of its output:"
            tail -n 100 "$logf" >&2
            return 1
        fi
    done
}

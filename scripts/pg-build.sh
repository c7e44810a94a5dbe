#!/usr/bin/env bash
# scripts/pg-build.sh MAJOR FLAVOR — build PostgreSQL from Debian's source
# package, once per machine, and print its installation prefix.
#
#   MAJOR   15 (bookworm, bookworm-security), 17 (trixie, trixie-security),
#           18 (sid)
#   FLAVOR  cassert   --enable-cassert --enable-debug --enable-tap-tests, -O2 -g
#           asan      cassert + -O1 -fsanitize=address,undefined
#           valgrind  cassert + -DUSE_VALGRIND, -O1
#
# The last line on stdout is the prefix ($prefix/bin/pg_config exists);
# progress and step times go to stderr, so `prefix=$(pg-build.sh 18 cassert)`
# works.
#
# Why Debian's source packages: the machines reach Debian's archive and no
# other download site.  `apt-get source --download-only` runs with a private
# apt configuration (its own sources list, lists and cache under the build
# cache) so the system's apt setup is never touched; the archive addresses are
# read at run time from the system's own sources (no host name is written in
# this repository).  Only the upstream tarball (*.orig.tar.*) is used, without
# Debian's patches.  Minor versions are not pinned: the archive's versions are
# tried newest first, falling back to the next when a download fails (a
# security-suite version can be listed before the file is on the mirror).
#
# Everything lives under ${APIKEY_PG_CACHE:-/var/cache/apikey-pg}:
#   apt-MAJOR/             private apt state and the downloaded source files
#   MAJOR-FLAVOR/src/      the extracted, configured and built tree
#   MAJOR-FLAVOR/logs/     one log per step
#   MAJOR-FLAVOR/install/  the prefix
#   MAJOR-FLAVOR/stamp     written last: version and configure flags
# With a stamp whose flags match, a re-run prints the prefix at once (no
# network).  Without one (first run, or an attempt that died half-way) the
# build starts over from a clean directory.  A lock per build makes a second
# caller wait for the first one and then use its result.
#
# Using the asan flavor: run its programs with ASAN_OPTIONS=detect_leaks=0.
# Frontend programs (pg_config, psql, pg_regress ...) do not free what they
# allocate before exiting, so LeakSanitizer reports them and exits non-zero,
# and, as it exits without flushing stdio, their buffered output is lost
# when it goes to a pipe: `$(pg_config --pgxs)` comes back empty.
#
# Environment: APIKEY_PG_CACHE (see above), APIKEY_PG_JOBS (make -j, default
# nproc).
set -euo pipefail
umask 022 # the tree is built as root but used by the postgres OS user

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${APIKEY_PG_CACHE:-/var/cache/apikey-pg}
JOBS=${APIKEY_PG_JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { printf 'pg-build: %s\n' "$*" >&2; }
die() {
    printf 'pg-build: ERROR: %s\n' "$*" >&2
    exit 1
}

usage() { die "usage: $0 MAJOR FLAVOR   (MAJOR: 15, 17, 18; FLAVOR: cassert, asan, valgrind)"; }
(($# == 2)) || usage
MAJOR=$1
FLAVOR=$2

# Debian suites that carry postgresql-MAJOR.  Which archive a suite lives in
# (main or security) is decided by its -security suffix.
case $MAJOR in
15) SUITES=(bookworm bookworm-security) ;;
17) SUITES=(trixie trixie-security) ;;
18) SUITES=(sid) ;;
*) usage ;;
esac

# ---------------------------------------------------------------- configure flags

# Shared by every flavor.  --without-readline/--without-icu avoid build
# dependencies the tests do not need (psql is only run non-interactively);
# ICU is on by default from 16 on.  zlib (pg_dump -Fc) and OpenSSL (as in
# Debian's own build, and pg_strong_random) come from packages the project
# installs anyway.  The TAP modules need IPC::Run.
CONFIGURE=(--enable-debug --enable-cassert --enable-tap-tests
    --without-readline --with-zlib --with-openssl)
if ((MAJOR >= 16)); then CONFIGURE+=(--without-icu); fi
case $FLAVOR in
cassert)
    CONFIGURE+=("CFLAGS=-O2 -g")
    ;;
asan)
    # -O1 keeps stack traces usable; -fno-sanitize-recover makes the first
    # UBSan report fatal (a crashed backend the tests will notice) instead of
    # a line in a log nobody reads.
    CONFIGURE+=("CFLAGS=-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
        "LDFLAGS=-fsanitize=address,undefined")
    # See the header: no leak reports from the programs this script runs
    # (configure's test programs, the checks after make install).
    export ASAN_OPTIONS=detect_leaks=0
    ;;
valgrind)
    # USE_VALGRIND makes the memory-context code tell memcheck about pfree'd
    # and not-yet-initialized chunks.
    CONFIGURE+=("CPPFLAGS=-DUSE_VALGRIND" "CFLAGS=-O1 -g")
    ;;
*) usage ;;
esac

DIR=$CACHE/$MAJOR-$FLAVOR
PREFIX=$DIR/install
STAMP=$DIR/stamp
FLAGS_LINE="flags: --prefix=$PREFIX ${CONFIGURE[*]}"

# True if a complete build with the same flags is there.
have_build() {
    [[ -f $STAMP && -x $PREFIX/bin/pg_config ]] && grep -qxF -- "$FLAGS_LINE" "$STAMP"
}

# Fast path, no lock and no network: the common case on a warm machine.
if have_build; then
    log "using $(head -n 1 "$STAMP") ($STAMP)"
    echo "$PREFIX"
    exit 0
fi

mkdir -p "$CACHE" "$DIR"
chmod 755 "$CACHE" "$DIR"

# One build of MAJOR-FLAVOR at a time; a caller that waited here finds the
# stamp the other one wrote.
exec 8>"$DIR.lock"
if ! flock -n 8; then
    log "another pg-build.sh is building $MAJOR-$FLAVOR; waiting for it"
    flock 8
fi
if have_build; then
    log "using $(head -n 1 "$STAMP") (built by a concurrent run)"
    echo "$PREFIX"
    exit 0
fi

# ---------------------------------------------------------------- steps

LOGS=$DIR/logs
T_ALL=$SECONDS

# step NAME CMD... : run CMD with its output in LOGS/NAME.log, print how long
# it took, and on failure stop with the step's name and the end of its log.
step() {
    local name=$1 t0=$SECONDS rc=0
    shift
    log "step $name ..."
    "$@" >"$LOGS/$name.log" 2>&1 </dev/null || rc=$?
    if ((rc != 0)); then
        printf 'pg-build: ERROR: step "%s" failed (exit %d) after %ds; last 40 lines of %s:\n' \
            "$name" "$rc" $((SECONDS - t0)) "$LOGS/$name.log" >&2
        tail -n 40 "$LOGS/$name.log" >&2
        exit 1
    fi
    log "step $name done in $((SECONDS - t0))s"
}

# Start from scratch: whatever is here is a previous attempt without a stamp
# (or with other flags).
rm -rf "$DIR/src" "$PREFIX" "$LOGS" "$STAMP"
mkdir -p "$LOGS"

# Build prerequisites (compiler, zlib, OpenSSL, IPC::Run, bison/flex ...):
# installs only what is missing.
deps=(build-pg)
if [[ $FLAVOR == valgrind ]]; then deps+=(valgrind); fi
step deps bash "$REPO/scripts/install-deps.sh" "${deps[@]}"

# ---------------------------------------------------------------- download

# The archive addresses, from the system's deb822 sources (the first URI that
# does not end in -security is the main archive) or, failing that, from the
# one-line sources.list format.
MAIN_URI=""
SECURITY_URI=""
read_archive_uris() {
    local uri
    local -a uris=()
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        mapfile -t uris < <(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources | tr ' ' '\n' | sed '/^$/d')
    fi
    if ((${#uris[@]} == 0)) && [[ -r /etc/apt/sources.list ]]; then
        mapfile -t uris < <(awk '$1 == "deb" || $1 == "deb-src" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' /etc/apt/sources.list)
    fi
    for uri in "${uris[@]}"; do
        uri=${uri%/}
        if [[ $uri == *-security ]]; then
            [[ -n $SECURITY_URI ]] || SECURITY_URI=$uri
        else
            [[ -n $MAIN_URI ]] || MAIN_URI=$uri
        fi
    done
    [[ -n $MAIN_URI ]] || die "no Debian archive address found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    # The security archive sits beside the main one (.../debian -> .../debian-security).
    [[ -n $SECURITY_URI ]] || SECURITY_URI=$MAIN_URI-security
}
read_archive_uris

APTDIR=$CACHE/apt-$MAJOR
SRCDL=$APTDIR/download
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$SRCDL"
{
    for suite in "${SUITES[@]}"; do
        uri=$MAIN_URI
        [[ $suite == *-security ]] && uri=$SECURITY_URI
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main"
    done
} >"$APTDIR/sources.list"

# The private apt configuration: nothing of the system's sources, lists or
# cache is read or written.  Sandbox::User=root because the cache is root's
# (apt would warn and fall back to root anyway).
APT_OPTS=(-o Dir::Etc::sourcelist="$APTDIR/sources.list" -o Dir::Etc::sourceparts=-
    -o Dir::State::Lists="$APTDIR/lists" -o Dir::Cache="$APTDIR/cache"
    -o Acquire::Retries=3 -o Acquire::Languages=none)
if [[ $EUID -eq 0 ]]; then APT_OPTS+=(-o APT::Sandbox::User=root); fi

# Two builds of the same major (asan and valgrind, say) share apt-MAJOR:
# one apt at a time.
exec 9>"$APTDIR.lock"
flock 9
step apt-update apt-get -q "${APT_OPTS[@]}" update

PKG=postgresql-$MAJOR
# The candidates: "VERSION SUITE" for each suite that carries the package.
# A suite is asked by name (PKG/SUITE) rather than by version: a version
# listed in two suites would otherwise always be fetched from the first one.
CANDIDATES=()
for suite in "${SUITES[@]}"; do
    v=$(apt-get "${APT_OPTS[@]}" source --print-uris "$PKG/$suite" 2>/dev/null </dev/null |
        sed -n "s/^Selected version '\([^']*\)' .*/\1/p" | head -n 1) || true
    [[ -n $v ]] && CANDIDATES+=("$v $suite")
done
((${#CANDIDATES[@]} > 0)) || die "no suite lists $PKG (suites: ${SUITES[*]}; see $LOGS/apt-update.log)"

# Newest first, by dpkg's version ordering (insertion sort: a handful).
sort_candidates() {
    local -a out=()
    local c i inserted
    for c in "$@"; do
        inserted=0
        for i in "${!out[@]}"; do
            if dpkg --compare-versions "${c%% *}" gt "${out[$i]%% *}"; then
                out=("${out[@]:0:i}" "$c" "${out[@]:i}")
                inserted=1
                break
            fi
        done
        ((inserted)) || out+=("$c")
    done
    printf '%s\n' "${out[@]}"
}
mapfile -t CANDIDATES < <(sort_candidates "${CANDIDATES[@]}")
listed=""
for c in "${CANDIDATES[@]}"; do listed+=" ${c%% *} (${c#* })"; done
log "$PKG versions listed:$listed"

# Download the newest version that can be had.
VERSION=""
TARBALL=""
t0=$SECONDS
for c in "${CANDIDATES[@]}"; do
    v=${c%% *}
    suite=${c#* }
    upstream=${v#*:}
    upstream=${upstream%-*}
    dl=$SRCDL/$v
    mkdir -p "$dl"
    log "downloading $PKG $v from $suite ..."
    if (cd "$dl" && apt-get -q "${APT_OPTS[@]}" source --download-only "$PKG/$suite") \
        >"$LOGS/download-$v-$suite.log" 2>&1 </dev/null; then
        for f in "$dl/${PKG}_$upstream.orig.tar."*; do
            [[ $f == *.asc ]] && continue
            [[ -f $f ]] && TARBALL=$f
        done
        if [[ -n $TARBALL ]]; then
            VERSION=$v
            break
        fi
        log "  downloaded, but there is no ${PKG}_$upstream.orig.tar.*; trying the next candidate"
    else
        log "  could not be downloaded: $(grep -E '^(E|W):' "$LOGS/download-$v-$suite.log" | head -n 2 | tr '\n' ' ')"
    fi
    rm -rf "$dl" # keep no partial files around
done
flock -u 9
[[ -n $VERSION ]] || die "no version of $PKG could be downloaded (tried:$listed; logs in $LOGS/download-*.log)"
log "step download done in $((SECONDS - t0))s: $TARBALL"

# ---------------------------------------------------------------- build

mkdir -p "$DIR/src"
step extract tar -C "$DIR/src" -xf "$TARBALL"
SRC=$(find "$DIR/src" -mindepth 1 -maxdepth 1 -type d -name 'postgresql-*' | head -n 1)
[[ -n $SRC && -f $SRC/configure ]] || die "the tarball $TARBALL has no postgresql-*/configure"

cd "$SRC"
step configure ./configure --prefix="$PREFIX" "${CONFIGURE[@]}"
# ECPG (embedded SQL in C) is the one part of src/ the tests never use, and
# its generated grammar is among the slowest files to compile: leave it out
# of src/interfaces (libpq stays).  If a release words that line differently,
# ECPG is simply built.
if grep -qx 'SUBDIRS = libpq ecpg' src/interfaces/Makefile; then
    sed -i 's/^SUBDIRS = libpq ecpg$/SUBDIRS = libpq/' src/interfaces/Makefile
    log "ECPG left out (src/interfaces/Makefile: SUBDIRS = libpq)"
fi
# The top level's `all` builds src/ and config/ only (no contrib, no docs):
# the server, the client programs, PL/pgSQL, libpq, PGXS and src/test/regress,
# src/test/isolation.
step make make -j"$JOBS" all
step install make install
# `make install` installs pg_regress, pg_isolation_regress/isolationtester and
# (with --enable-tap-tests) the TAP modules under PGXS's src/test; check, so
# a layout change in a later release fails here and not in a test run.  (PGXS
# is in lib/postgresql/pgxs: a prefix without "postgres" or "pgsql" in its
# path gets a postgresql/ level; ask pg_config rather than guess.)
PGXS_TEST=$(dirname "$(dirname "$("$PREFIX/bin/pg_config" --pgxs)")")/test
for f in regress/pg_regress isolation/pg_isolation_regress isolation/isolationtester \
    perl/PostgreSQL/Test/Cluster.pm; do
    [[ -e $PGXS_TEST/$f ]] || die "make install did not install $PGXS_TEST/$f"
done
for f in initdb postgres pg_ctl psql pg_dump pg_restore pg_upgrade pgbench pg_controldata; do
    [[ -x $PREFIX/bin/$f ]] || die "make install did not install $PREFIX/bin/$f"
done
# Readable by everyone whatever the umask of whoever unpacked the tarball.
chmod -R a+rX "$PREFIX"

# The stamp goes last and atomically: its presence means a complete build.
{
    echo "$PKG $VERSION ($FLAVOR)"
    echo "tarball: ${TARBALL##*/}"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - T_ALL))s"
    echo "$FLAGS_LINE"
} >"$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
# CPU time of the steps, for comparing runs on a busy machine with runs on
# an idle one (wall time is about CPU time / JOBS for the make step).
times >"$LOGS/times" # not in $(...): a subshell's `times` would not see the steps
cpu=$(tail -n 1 "$LOGS/times")
log "built $PKG $VERSION ($FLAVOR) in $((SECONDS - T_ALL))s (CPU of the steps, user and system: $cpu)"
echo "$PREFIX"

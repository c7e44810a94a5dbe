#!/usr/bin/env bash
# Install the Debian 12 packages needed to build, test and demo apikey.
#
#   install-deps.sh [GROUP...] [-- PACKAGE...]
#
# PACKAGEs are further Debian packages by name (the shell test scripts'
# own, through scripts/tap.sh).  GROUP (default: base, unless only
# PACKAGEs are named):
#   base      build the extension and test it on Debian's PostgreSQL 15
#   build-pg  build PostgreSQL from source (scripts/pg-build.sh)
#   valgrind  the valgrind flavor of pg-build.sh (memcheck.h)
#   dev       developer tools the scripts do not need (shellcheck)
#
# Idempotent: if everything is already installed it does nothing (and needs
# neither root nor the network).  Otherwise it runs, as root (or via sudo),
#   apt-get update && apt-get install -y <missing packages>
set -euo pipefail

BASE=(
    postgresql-15            # server binaries: initdb, postgres, pg_ctl
    postgresql-client-15     # psql
    postgresql-server-dev-15 # PGXS, pg_config, pg_regress, pg_isolation_regress, TAP modules
    libipc-run-perl          # IPC::Run, needed by PostgreSQL::Test::Cluster
    libssl-dev               # the unit-test binary links -lcrypto
    make
    gcc
    libc6-dev                # only a Recommends of gcc, so ask for it by name
    perl                     # perl and prove
)

# pg-build.sh: ./configure --enable-tap-tests --with-zlib --with-openssl
# --without-readline --without-icu.  bison and flex: from PostgreSQL 17 on
# the release tarballs no longer ship the generated parsers.
BUILD_PG=(
    gcc make libc6-dev perl
    libipc-run-perl         # configure --enable-tap-tests checks for IPC::Run
    zlib1g-dev libssl-dev
    bison flex
    bzip2 xz-utils          # the .orig.tar.bz2 / .tar.xz
    debian-archive-keyring  # verifies the private apt-get update
)

PACKAGES=()
(($# > 0)) || set -- base
while (($# > 0)); do
    group=$1
    shift
    case $group in
    --)
        PACKAGES+=("$@")
        break
        ;;
    base) PACKAGES+=("${BASE[@]}") ;;
    build-pg) PACKAGES+=("${BUILD_PG[@]}") ;;
    valgrind) PACKAGES+=(valgrind) ;;
    dev) PACKAGES+=(shellcheck) ;;
    *)
        echo "install-deps: ERROR: unknown group '$group' (base, build-pg, valgrind, dev)" >&2
        exit 2
        ;;
    esac
done

missing=()
declare -A checked=()
for pkg in "${PACKAGES[@]}"; do
    [[ -z ${checked[$pkg]-} ]] || continue
    checked[$pkg]=1
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all prerequisites are installed"
    exit 0
fi

SUDO=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        # never a password prompt nobody sees (the test scripts call this
        # with no terminal): sudo -n fails instead
        if [[ -t 0 ]]; then SUDO=(sudo); else SUDO=(sudo -n); fi
    else
        echo "install-deps: ERROR: missing packages (${missing[*]}); run as root to install them" >&2
        exit 1
    fi
fi

APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
    -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)

logf=$(mktemp /tmp/apikey-install-deps.XXXXXX)
trap 'rm -f "$logf"' EXIT

# Run an apt-get step quietly; on failure show why and stop.
apt_step() { # DESCRIPTION ARGS...
    local what=$1
    shift
    if ! "${APT[@]}" "$@" </dev/null >"$logf" 2>&1; then
        echo "install-deps: ERROR: $what failed; last lines of apt-get output:" >&2
        tail -n 40 "$logf" >&2
        exit 1
    fi
}

echo "install-deps: installing ${missing[*]}"
# An install that was killed midway leaves dpkg "interrupted", and every
# later apt-get refuses to run until it is finished; finishing it is a no-op
# otherwise.
"${SUDO[@]}" dpkg --configure -a </dev/null >"$logf" 2>&1 ||
    { echo "install-deps: ERROR: dpkg --configure -a failed:" >&2; tail -n 40 "$logf" >&2; exit 1; }
apt_step "apt-get update" update
apt_step "apt-get install" install --no-install-recommends "${missing[@]}"

# Double-check, so a half-finished install is reported here and not as an
# obscure build error later.
for pkg in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != installed ]]; then
        echo "install-deps: ERROR: $pkg is still not installed (status: ${status:-unknown})" >&2
        exit 1
    fi
done
echo "install-deps: done"

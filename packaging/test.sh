#!/usr/bin/env bash
# packaging/test.sh — the package test: the PGXN archive (`make dist`) and the
# Debian package postgresql-NN-apikey (debian/, pg_buildext).
#
#   bash packaging/test.sh        as root, from anywhere (the project's runner
#                                 runs it from the repository root or its copy)
#
# 1. Installs the build prerequisites if missing (apt-get update first, only
#    then): dpkg-dev, debhelper, fakeroot, build-essential,
#    postgresql-server-dev-all, python3-jsonschema, git, and the server and
#    client of each PostgreSQL major the package is built for.
# 2. Copies the tree (no .git) to a scratch directory, runs `make dist` there
#    and checks the archive: one top-level directory apikey-VERSION/,
#    META.json (valid, and in agreement with the control file), the control
#    file, every script of the Makefile's DATA, the C sources, no build or
#    test output; and that a git checkout of the same files (`git archive
#    HEAD`) gives the same file list.
# 3. Builds the .deb from that archive (dpkg-buildpackage -us -uc -b, in the
#    scratch directory, never in the repository; in the background while the
#    archive is checked) and checks what it holds.
# 4. For each PostgreSQL major the package is built for (15 on Debian 12):
#    moves aside the files `make install` put into that PostgreSQL (the
#    project's runner installs the extension before this stage), installs the
#    .deb with apt-get, starts a scratch cluster as the "postgres" OS user
#    (Unix socket in a temporary directory, its own port,
#    shared_preload_libraries = 'apikey'), creates the extension, checks its
#    version is the control file's default_version, issues a key and verifies
#    it; stops the cluster, removes the package, checks its files are gone,
#    and puts the `make install` files back.
#
# Output: one line per check, `ok N - ...` or `not ok N - ...` (diagnostics
# on `# ` lines), then the plan `1..N` and the run time.  Exit status 1 if a
# check failed.  On exit, also after a failure or a signal: the cluster is
# stopped, a package this run installed is removed, the moved files are put
# back, and the scratch directory is removed (APIKEY_KEEP_TMP=1 keeps it).
#
# The install part holds a lock (/var/lock/apikey-packaging-test.lock): two
# runs at once would move each other's files.  A run killed with SIGKILL
# leaves a stash in /var/tmp/apikey-packaging-stash.PID; the next run stops
# its cluster, removes its package and puts the files back before its own
# install.
#
# Environment: APIKEY_WORK (a scratch directory for this stage; default
# $TMPDIR or /tmp), APIKEY_KEEP_TMP=1.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$REPO/scripts/lib.sh" # AS_PG, PG_OS_USER, free_port, stop_servers_under

PY=/usr/bin/python3
EXT=apikey
# Files moved aside while the package is tested survive a killed run here;
# the next run puts them back (see recover_stashes).
STASH_PREFIX=/var/tmp/apikey-packaging-stash
LOCK_FILE=/var/lock/apikey-packaging-test.lock
LOCKED=""
PREREQS=(dpkg-dev debhelper fakeroot build-essential postgresql-server-dev-all
    python3-jsonschema git)

T0=$SECONDS
WORK=""
STASH=""
STASHED=()          # paths moved into $STASH (absolute, as they were)
PKG_INSTALLED=""    # a package this run installed and has not removed yet
CLUSTER_DIR=""
CLUSTER_BIN=""
BUILD_PID=""        # the background dpkg-buildpackage (under timeout)

# shellcheck source=SCRIPTDIR/../scripts/tap.sh
. "$REPO/scripts/tap.sh" # note, result; N and FAILED

# check DESC CMD...: run CMD (output to $WORK/check-N.log); ok if it succeeds,
# else a failure showing the end of its output.
check() {
    local desc=$1 logf
    shift
    logf=$WORK/check-$((N + 1)).log
    if "$@" >"$logf" 2>&1; then
        result "$desc"
        return 0
    fi
    result "$desc" "command failed: $*" "$(tail -n 25 "$logf")"
    return 1
}

# A step the rest depends on failed: one failing check, then stop.
abort() {
    result "$@"
    exit 1
}

finish() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $BUILD_PID ]]; then
        kill -TERM "$BUILD_PID" 2>/dev/null
        wait "$BUILD_PID" 2>/dev/null
    fi
    if [[ -n $CLUSTER_DIR ]]; then
        [[ -n $CLUSTER_BIN ]] && PG_BINDIR=$CLUSTER_BIN
        stop_servers_under "$CLUSTER_DIR" >/dev/null 2>&1
        rm -rf "$CLUSTER_DIR"
    fi
    if [[ -n $PKG_INSTALLED ]]; then
        note "removing $PKG_INSTALLED (installed by this run)"
        dpkg --purge "$PKG_INSTALLED" >/dev/null 2>&1
    fi
    restore_stash
    if [[ -n $WORK ]]; then
        if [[ ${APIKEY_KEEP_TMP:-0} == 1 ]]; then
            note "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    tap_end packaging/test.sh "$rc"
}
trap finish EXIT
trap 'note "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ helpers

# Put back files moved aside by this run (or, given a directory, by another
# one); sets RESTORED and KEPT.  A path that exists again (a later `make
# install`) is left alone and counted in KEPT.
RESTORED=0
KEPT=0
restore_stash() { # [STASH_DIR]
    local dir=${1:-$STASH} path
    RESTORED=0
    KEPT=0
    [[ -n $dir && -d $dir ]] || return 0
    if [[ -f $dir/paths ]]; then
        while IFS= read -r path; do
            [[ -e $dir/files$path || -L $dir/files$path ]] || continue
            if [[ -e $path ]]; then
                KEPT=$((KEPT + 1))
                continue
            fi
            mkdir -p "$(dirname "$path")"
            mv "$dir/files$path" "$path" && RESTORED=$((RESTORED + 1))
        done <"$dir/paths"
    fi
    rm -rf "$dir"
    [[ $dir != "$STASH" ]] || STASH=""
}

# A run killed with SIGKILL leaves its stash behind, maybe with its package
# installed and its cluster running: undo all that first.  Runs under the
# install lock, so a stash found here belongs to no running test.
recover_stashes() {
    local dir pkg cluster work
    for dir in "$STASH_PREFIX".*; do
        [[ -d $dir ]] || continue
        work=$(cat "$dir/work" 2>/dev/null)
        [[ $work == */apikey-packaging.* && -d $work ]] && rm -rf "$work"
        cluster=$(cat "$dir/cluster" 2>/dev/null)
        if [[ $cluster == /tmp/apikey-pkg-pg.* && -d $cluster ]]; then
            stop_servers_under "$cluster" >/dev/null 2>&1
            rm -rf "$cluster"
        fi
        pkg=$(cat "$dir/package" 2>/dev/null)
        if [[ -n $pkg && $(pkg_status "$pkg") == installed ]]; then
            note "removing $pkg, left installed by a killed run"
            dpkg --purge "$pkg" >/dev/null 2>&1
        fi
        restore_stash "$dir"
        note "put back the files a killed run had moved aside ($dir): $RESTORED restored, $KEPT present again"
    done
}

# The apikey files a `make install` (or the package) puts into PostgreSQL
# MAJOR: library, JIT bitcode, control file, scripts, manual.
installed_paths() { # MAJOR
    local v=$1 p
    for p in "/usr/lib/postgresql/$v/lib/$EXT.so" \
        "/usr/lib/postgresql/$v/lib/bitcode/$EXT" \
        "/usr/lib/postgresql/$v/lib/bitcode/$EXT.index.bc" \
        "/usr/share/postgresql/$v/extension/$EXT.control" \
        /usr/share/postgresql/"$v"/extension/"$EXT"--*.sql \
        "/usr/share/doc/postgresql-doc-$v/extension/$EXT.md" \
        "/usr/share/doc/postgresql-doc-$v/extension/$EXT.md.gz"; do
        [[ -e $p || -L $p ]] && printf '%s\n' "$p"
    done
}

stash_installed() { # MAJOR
    local p
    STASH=$STASH_PREFIX.$$
    mkdir -p "$STASH/files"
    printf '%s\n' "$WORK" >"$STASH/work"
    while IFS= read -r p; do
        mkdir -p "$STASH/files$(dirname "$p")"
        printf '%s\n' "$p" >>"$STASH/paths"
        mv "$p" "$STASH/files$p" || return 1
        STASHED+=("$p")
    done < <(installed_paths "$1")
}

pkg_status() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true; }

apt_get() {
    env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 \
        -o Acquire::Retries=3 "$@" </dev/null
}

# The control file's default_version and its semantic version (2.1 -> 2.1.0).
control_version() { # CONTROL_FILE
    sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\{0,1\}\([^' #]*\).*/\1/p" "$1" | head -n 1
}
semver_of() {
    local a b c
    IFS=. read -r a b c <<<"$1"
    printf '%s.%s.%s\n' "$a" "${b:-0}" "${c:-0}"
}

# make VAR's value as the Makefile computes it.
make_var() { # TREE VAR
    # shellcheck disable=SC2016 # $($*) is for make
    make -s --no-print-directory -C "$1" -f Makefile \
        -f <(printf 'apikey-print-%%:\n\t@echo $($*)\n') \
        PG_CONFIG="$PKG_PG_CONFIG" "apikey-print-$2"
}

# The names in a zip archive, one a line.
zip_names() { "$PY" -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$1"; }

psql_scratch() { # SQL-on-stdin, extra psql args...
    "${AS_PG[@]}" "$CLUSTER_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$CLUSTER_DIR" \
        -p "$CLUSTER_PORT" -U postgres -d postgres "$@"
}

# ------------------------------------------------------------------ setup

[[ $EUID -eq 0 ]] || abort "run as root (installs packages, moves PostgreSQL files)" "EUID is $EUID"
# Undo what a killed run left behind, unless a live run holds the lock.
exec 9>"$LOCK_FILE"
if flock -n 9; then
    recover_stashes
    flock -u 9
fi

base=${APIKEY_WORK:-${TMPDIR:-/tmp}}
mkdir -p "$base"
WORK=$(mktemp -d "$(cd "$base" && pwd)/apikey-packaging.XXXXXX") || abort "scratch directory" "mktemp failed in $base"
case "$WORK/" in
"$REPO"/*) abort "scratch directory outside the repository" "$WORK is inside $REPO" ;;
esac
chmod 755 "$WORK"
note "scratch directory $WORK"

# 1. prerequisites: installed only if missing (then apt-get update first).
ensure_packages() { # DESC PACKAGE...
    local desc=$1 p missing=()
    shift
    for p in "$@"; do
        [[ $(pkg_status "$p") == installed ]] || missing+=("$p")
    done
    if ((${#missing[@]})); then
        note "installing ${missing[*]}"
        if ! apt_get update >>"$WORK/apt.log" 2>&1 ||
            ! apt_get install --no-install-recommends "${missing[@]}" >>"$WORK/apt.log" 2>&1; then
            abort "$desc" "apt-get failed:" "$(tail -n 20 "$WORK/apt.log")"
        fi
    fi
}
ensure_packages "build prerequisites are installed" "${PREREQS[@]}"

# The PostgreSQL majors the package is built for: debian/pgversions on this
# system (pg_buildext supported-versions).  Their servers run the test.
mapfile -t MAJORS < <(cd "$REPO" && pg_buildext supported-versions 2>/dev/null)
((${#MAJORS[@]})) || abort "debian/pgversions names a PostgreSQL this system supports" \
    "pg_buildext supported-versions printed nothing"
servers=()
for v in "${MAJORS[@]}"; do servers+=("postgresql-$v" "postgresql-client-$v"); done
ensure_packages "build prerequisites are installed" "${servers[@]}"
result "build prerequisites are installed (${PREREQS[*]} ${servers[*]})"
PKG_PG_CONFIG=/usr/lib/postgresql/${MAJORS[0]}/bin/pg_config
[[ -x $PKG_PG_CONFIG ]] || abort "PostgreSQL ${MAJORS[0]} server development files" "no $PKG_PG_CONFIG"

DEFAULT_VERSION=$(control_version "$REPO/$EXT.control")
VERSION=$(semver_of "$DEFAULT_VERSION")
note "default_version '$DEFAULT_VERSION' -> $VERSION; PostgreSQL ${MAJORS[*]}"

# ------------------------------------------------------------------ 2. PGXN

# The tree as the runner has it (build products included: make dist must
# leave them out), without .git.
mkdir "$WORK/src"
tar -C "$REPO" --exclude=./.git -cf - . | tar -C "$WORK/src" --no-same-owner -xf -

if out=$(cd "$WORK/src" && make -s --no-print-directory dist PG_CONFIG="$PKG_PG_CONFIG" 2>"$WORK/dist.log"); then
    ZIP=$(tail -n 1 <<<"$out")
else
    ZIP=""
fi
if [[ $ZIP == "$WORK/src/$EXT-$VERSION.zip" && -f $ZIP ]]; then
    result "make dist builds $EXT-$VERSION.zip and prints its path"
else
    abort "make dist builds $EXT-$VERSION.zip and prints its path" "printed: ${out:-nothing}" \
        "$(tail -n 25 "$WORK/dist.log")"
fi
note "$(tail -n 1 "$WORK/dist.log")"

zip_names "$ZIP" >"$WORK/zip.list"
TOP=$EXT-$VERSION
bad=$(grep -v "^$TOP/" "$WORK/zip.list" | head -n 5)
if [[ -z $bad ]]; then
    result "the archive has one top-level directory, $TOP/"
else
    result "the archive has one top-level directory, $TOP/" "outside it: $bad"
fi

# Extract the archive as unzip(1) does, keeping the files' modes.
unzip_to() { # DIR
    "$PY" - "$ZIP" "$1" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o7777
        if mode:
            os.chmod(path, mode)
PY
}
mkdir "$WORK/unzip" "$WORK/deb"
unzip_to "$WORK/unzip"
D=$WORK/unzip/$TOP

# The .deb is built from the archive's files while the archive is checked
# (the build takes most of this test's time).  As root, in the scratch
# directory; no -dbgsym package.
unzip_to "$WORK/deb"
B=$WORK/deb/$TOP
BUILD_T0=$SECONDS
# shellcheck disable=SC2016 # $1 and $(nproc) are for the inner bash
DEB_BUILD_OPTIONS="noddebs${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}" \
    timeout 900 bash -c 'cd "$1" && exec dpkg-buildpackage -us -uc -b -j"$(nproc)"' _ "$B" \
    >"$WORK/deb-build.log" 2>&1 </dev/null &
BUILD_PID=$!

want=(META.json "$EXT.control" Makefile README.md doc/"$EXT".md debian/control debian/rules
    debian/changelog debian/pgversions scripts/dist.sh test/check-meta.py test/meta-schema.json)
missing=()
for f in "${want[@]}"; do grep -qxF "$TOP/$f" "$WORK/zip.list" || missing+=("$f"); done
if ((${#missing[@]} == 0)); then
    result "the archive holds META.json, the control file, Makefile, README, manual and debian/"
else
    result "the archive holds META.json, the control file, Makefile, README, manual and debian/" \
        "missing: ${missing[*]}"
fi

notexec=()
for f in debian/rules scripts/dist.sh test/check-meta.py packaging/test.sh; do
    [[ -x $D/$f ]] || notexec+=("$f")
done
if ((${#notexec[@]} == 0)); then
    result "the archive keeps the executable bit (debian/rules, scripts)"
else
    result "the archive keeps the executable bit (debian/rules, scripts)" "not executable: ${notexec[*]}"
fi

check "META.json in the archive is valid and agrees with $EXT.control ($VERSION)" \
    "$PY" "$REPO/test/check-meta.py" --jsonschema --root "$D" "$D/META.json"
check "check-meta.py rejects broken META.json documents (--self-test, also with python3-jsonschema)" \
    "$PY" "$REPO/test/check-meta.py" --self-test --jsonschema

read -r -a DATA <<<"$(make_var "$WORK/src" DATA)"
missing=()
for f in "${DATA[@]}"; do grep -qxF "$TOP/$f" "$WORK/zip.list" || missing+=("$f"); done
if ((${#DATA[@]} && ${#missing[@]} == 0)); then
    result "the archive holds every script of the Makefile's DATA (${#DATA[@]})"
else
    result "the archive holds every script of the Makefile's DATA (${#DATA[@]})" "missing: ${missing[*]:-DATA is empty}"
fi
for f in "$WORK/src/$EXT"--*.sql; do
    f=${f##*/}
    [[ " ${DATA[*]} " == *" $f "* ]] || note "$f is in the tree but not in the Makefile's DATA: neither make install nor the package installs it"
done

read -r -a OBJS <<<"$(make_var "$WORK/src" OBJS)"
missing=()
for o in "${OBJS[@]}"; do grep -qxF "$TOP/${o%.o}.c" "$WORK/zip.list" || missing+=("${o%.o}.c"); done
for h in "$WORK"/src/src/*.h; do
    h=src/${h##*/}
    grep -qxF "$TOP/$h" "$WORK/zip.list" || missing+=("$h")
done
if ((${#OBJS[@]} && ${#missing[@]} == 0)); then
    result "the archive holds the C sources (${#OBJS[@]} .c files of OBJS, the headers)"
else
    result "the archive holds the C sources" "missing: ${missing[*]:-OBJS is empty}"
fi

bad=$(grep -E '\.(o|so|bc|a|pyc|zip|deb)$|/(\.git|results|tmp_check|tmp_check_iso|output_iso|log|node_modules|__pycache__)/|/regression\.(diffs|out)$|/test/unit/run_unit$|/debian/(\.debhelper|tmp|files|postgresql-[0-9]+-apikey)' \
    "$WORK/zip.list" | head -n 10)
if [[ -z $bad ]]; then
    result "the archive holds no build or test output (the tree copy had them)"
else
    result "the archive holds no build or test output" "found: $bad"
fi

# The same files committed to git: `make dist` then archives HEAD.
mkdir "$WORK/git"
tar -C "$WORK/src" --exclude="./$EXT-*.zip" -cf - . | tar -C "$WORK/git" --no-same-owner -xf -
if (cd "$WORK/git" && git init -q && git add -A &&
    git -c user.name=packaging-test -c user.email=test@apikey.invalid commit -q -m snapshot &&
    make -s --no-print-directory dist PG_CONFIG="$PKG_PG_CONFIG") >"$WORK/dist-git.log" 2>&1 &&
    [[ -f $WORK/git/$TOP.zip ]]; then
    if diff <(sort "$WORK/zip.list") <(zip_names "$WORK/git/$TOP.zip" | sort) >"$WORK/dist-diff.txt"; then
        result "a git checkout of the same files (git archive HEAD) gives the same file list"
    else
        result "a git checkout of the same files (git archive HEAD) gives the same file list" \
            "differences (< tree, > git):" "$(head -n 20 "$WORK/dist-diff.txt")"
    fi
else
    result "make dist in a git checkout" "$(tail -n 20 "$WORK/dist-git.log")"
fi

# ------------------------------------------------------------------ 3. .deb

deb_version=$(dpkg-parsechangelog -l "$D/debian/changelog" -S Version 2>/dev/null)
if [[ ${deb_version%-*} == "$VERSION" ]]; then
    result "debian/changelog's version $deb_version is default_version $DEFAULT_VERSION"
else
    result "debian/changelog's version is default_version $DEFAULT_VERSION" \
        "debian/changelog says '$deb_version'; add an entry for $VERSION-1 (dch -v $VERSION-1)"
fi

rc=0
wait "$BUILD_PID" || rc=$?
BUILD_PID=""
if ((rc == 0)); then
    result "dpkg-buildpackage -us -uc -b builds the package from the archive ($((SECONDS - BUILD_T0)) s)"
else
    abort "dpkg-buildpackage -us -uc -b builds the package from the archive" "$(tail -n 40 "$WORK/deb-build.log")"
fi

for v in "${MAJORS[@]}"; do
    pkg=postgresql-$v-$EXT
    debs=("$WORK/deb/${pkg}_${deb_version}"_*.deb)
    if [[ ! -f ${debs[0]} ]]; then
        result "$pkg was built" "no ${pkg}_${deb_version}_*.deb in $WORK/deb: $(ls "$WORK/deb")"
        continue
    fi
    DEB=${debs[0]}
    note "$(basename "$DEB"): $(du -k "$DEB" | cut -f1) kB"
    dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$WORK/deb-$v.list"
    missing=()
    for f in "/usr/lib/postgresql/$v/lib/$EXT.so" "/usr/share/postgresql/$v/extension/$EXT.control"; do
        grep -qxF "$f" "$WORK/deb-$v.list" || missing+=("$f")
    done
    for f in "${DATA[@]}"; do
        grep -qxF "/usr/share/postgresql/$v/extension/$f" "$WORK/deb-$v.list" || missing+=("$f")
    done
    grep -qE "^/usr/share/doc/postgresql-doc-$v/extension/$EXT\.md(\.gz)?$" "$WORK/deb-$v.list" ||
        missing+=("the manual ($EXT.md)")
    if ((${#missing[@]} == 0)); then
        result "$pkg holds $EXT.so in /usr/lib/postgresql/$v/lib, the control file, the ${#DATA[@]} scripts and the manual"
    else
        result "$pkg holds the library, control file, scripts and manual" "missing: ${missing[*]}"
    fi

    # ---------------------------------------------------------- 4. install
    # One test at a time from here on: two would move each other's files
    # and remove each other's package.
    if [[ -z $LOCKED ]]; then
        if ! flock -n 9; then
            note "waiting for another packaging test to finish installing (lock $LOCK_FILE)"
            flock -w 600 9 ||
                abort "wait for another packaging test to finish installing" \
                    "$LOCK_FILE held for 600 s by: $(fuser -v "$LOCK_FILE" 2>&1 | tail -n +2 | head -n 5)"
        fi
        LOCKED=1
        recover_stashes
    fi
    if [[ $(pkg_status "$pkg") == installed ]]; then
        note "$pkg is installed already (a killed run?): it is removed first"
    fi
    if ! stash_installed "$v"; then
        abort "move the make-installed $EXT files of PostgreSQL $v aside" "mv failed"
    fi
    note "moved aside ${#STASHED[@]} make-installed path(s) into $STASH"
    if [[ $(pkg_status "$pkg") == installed ]]; then
        dpkg --purge "$pkg" >"$WORK/pre-remove.log" 2>&1 ||
            abort "remove the $pkg left installed" "$(tail -n 10 "$WORK/pre-remove.log")"
    fi
    left=$(installed_paths "$v")
    if [[ -z $left ]]; then
        result "PostgreSQL $v has no $EXT files before the package is installed (${#STASHED[@]} moved aside)"
    else
        abort "PostgreSQL $v has no $EXT files before the package is installed" "still there: $left"
    fi

    PKG_INSTALLED=$pkg
    printf '%s\n' "$pkg" >"$STASH/package"
    if apt_get install --no-install-recommends "$DEB" >"$WORK/install-$v.log" 2>&1 &&
        [[ $(pkg_status "$pkg") == installed ]]; then
        result "apt-get install ./$(basename "$DEB")"
    else
        abort "apt-get install ./$(basename "$DEB")" "$(tail -n 20 "$WORK/install-$v.log")"
    fi
    dpkg -L "$pkg" >"$WORK/files-$v.list"
    owner=$(dpkg -S "/usr/lib/postgresql/$v/lib/$EXT.so" 2>/dev/null | cut -d: -f1)
    if [[ $owner == "$pkg" ]]; then
        result "/usr/lib/postgresql/$v/lib/$EXT.so belongs to $pkg"
    else
        result "/usr/lib/postgresql/$v/lib/$EXT.so belongs to $pkg" "dpkg -S says: ${owner:-no package}"
    fi

    # A scratch cluster with the library preloaded.
    CLUSTER_BIN=/usr/lib/postgresql/$v/bin
    # shellcheck disable=SC2034 # lib.sh's stop_servers_under uses it
    PG_BINDIR=$CLUSTER_BIN
    CLUSTER_DIR=$(mktemp -d /tmp/apikey-pkg-pg.XXXXXX)
    printf '%s\n' "$CLUSTER_DIR" >"$STASH/cluster"
    chmod 755 "$CLUSTER_DIR"
    chown "$PG_OS_USER": "$CLUSTER_DIR"
    CLUSTER_PORT=$(free_port) || abort "a free port for the scratch cluster"
    if "${AS_PG[@]}" "$CLUSTER_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres -A trust --no-sync \
        >"$WORK/initdb-$v.log" 2>&1; then
        cat >>"$CLUSTER_DIR/data/postgresql.conf" <<EOF
port = $CLUSTER_PORT
listen_addresses = ''
unix_socket_directories = '$CLUSTER_DIR'
shared_preload_libraries = '$EXT'
fsync = off
EOF
    fi
    # 9>&-: the server must not inherit the install lock (a server left by a
    # killed run would hold it, and the next run would wait for it forever).
    if "${AS_PG[@]}" "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" \
        -w -t 60 start >"$WORK/pg_ctl-$v.log" 2>&1 9>&-; then
        result "a scratch PostgreSQL $v cluster with shared_preload_libraries = '$EXT' starts"
    else
        abort "a scratch PostgreSQL $v cluster with shared_preload_libraries = '$EXT' starts" \
            "$(tail -n 10 "$WORK/initdb-$v.log")" "$(tail -n 20 "$CLUSTER_DIR/server.log" 2>/dev/null)"
    fi

    check "CREATE EXTENSION $EXT" psql_scratch -c "CREATE EXTENSION $EXT"
    got=$(psql_scratch -c "SELECT extversion FROM pg_extension WHERE extname = '$EXT'" 2>&1)
    if [[ $got == "$DEFAULT_VERSION" ]]; then
        result "the installed extension's version is default_version $DEFAULT_VERSION"
    else
        result "the installed extension's version is default_version $DEFAULT_VERSION" "extversion: $got"
    fi
    row=$(psql_scratch -F ' ' -c "SELECT key_id, token FROM apikey_create('acme', 'package test', '{documents:read}')" 2>&1)
    key_id=${row%% *}
    token=${row#* }
    if [[ -n $key_id && $token == ak_live_* ]]; then
        result "apikey_create issues a key ($key_id)"
    else
        result "apikey_create issues a key" "got: $row"
    fi
    got=$(printf "SELECT code FROM apikey_verify(:'tok', '{documents:read}');\n" | psql_scratch -v tok="$token" 2>&1)
    if [[ $got == VALID ]]; then
        result "apikey_verify answers VALID for it"
    else
        result "apikey_verify answers VALID for it" "got: $got"
    fi
    got=$(printf "SELECT code FROM apikey_verify(:'tok', '{documents:write}');\n" | psql_scratch -v tok="$token" 2>&1)
    if [[ $got == INSUFFICIENT_SCOPE ]]; then
        result "apikey_verify answers INSUFFICIENT_SCOPE for a scope it lacks"
    else
        result "apikey_verify answers INSUFFICIENT_SCOPE for a scope it lacks" "got: $got"
    fi
    if "${AS_PG[@]}" "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w -t 60 stop \
        >>"$WORK/pg_ctl-$v.log" 2>&1; then
        result "the cluster stops"
    else
        result "the cluster stops" "$(tail -n 10 "$WORK/pg_ctl-$v.log")"
    fi
    if grep -qE 'TRAP:|PANIC|terminated by signal' "$CLUSTER_DIR/server.log"; then
        result "the server log shows no crash" "$(grep -E 'TRAP:|PANIC|terminated by signal' "$CLUSTER_DIR/server.log" | head -n 5)"
    else
        result "the server log shows no crash"
    fi
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=""

    # ---------------------------------------------------------- remove
    removed_at=$(date +%s)
    if apt_get remove "$pkg" >"$WORK/remove-$v.log" 2>&1 && [[ $(pkg_status "$pkg") != installed ]]; then
        PKG_INSTALLED=""
        result "apt-get remove $pkg"
    else
        result "apt-get remove $pkg" "$(tail -n 20 "$WORK/remove-$v.log")"
    fi
    # A file created after the removal began is another process's (a
    # `make install` running at the same time on a shared machine), not one
    # dpkg failed to remove: noted, not counted.
    left=()
    while IFS= read -r f; do
        if (($(stat -c %Z "$f") >= removed_at)); then
            note "$f was created again after the removal (a concurrent make install?)"
        else
            left+=("$f")
        fi
    done < <({
        while IFS= read -r f; do [[ -f $f ]] && printf '%s\n' "$f"; done <"$WORK/files-$v.list"
        installed_paths "$v"
    } | sort -u)
    if ((${#left[@]} == 0)); then
        result "the package's files are gone ($(wc -l <"$WORK/files-$v.list") paths checked)"
    else
        result "the package's files are gone" "still there: ${left[*]:0:10}"
    fi

    restore_stash
    missing=()
    for f in "${STASHED[@]}"; do [[ -e $f ]] || missing+=("$f"); done
    restored_count=${#STASHED[@]}
    STASHED=()
    if ((${#missing[@]} == 0)); then
        result "the make-installed files are back ($restored_count path(s))"
    else
        result "the make-installed files are back" "missing: ${missing[*]}"
    fi
done

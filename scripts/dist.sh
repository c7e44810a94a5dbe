#!/usr/bin/env bash
# scripts/dist.sh — build the PGXN archive NAME-VERSION.zip (what `make dist` runs).
#
#   make dist                        or   bash scripts/dist.sh
#   APIKEY_DIST_SOURCE=tree make dist     archive the working tree, not HEAD
#
# Writes NAME-VERSION.zip (e.g. apikey-2.1.0.zip) into the current directory
# and prints its path as the last line on stdout (messages go to stderr).  The
# archive has one top-level directory, NAME-VERSION/, holding the sources, as
# PGXN expects (https://pgxn.org/spec/).
#
# Which files:
#   git   (default in a git checkout whose top is this tree) the files of HEAD,
#         as `git archive` gives them.  Uncommitted changes are NOT in the
#         archive; a warning lists them.
#   tree  (default without .git, e.g. the test runner's copy of the tree) the
#         files of the working tree that git would track: everything that
#         .gitignore does not exclude.
# Both then drop build and test output (is_build_product below), so a clean
# checkout gives the same file list either way.
#
# Before anything is written, the META.json and control file that go into the
# archive are checked by test/check-meta.py against test/meta-schema.json (the
# PGXN Meta Spec 1.0's keys and formats): "version" and
# provides.<extension>.version must be the control file's default_version as a
# semantic version (2.1 -> 2.1.0) and the files named must exist.  If not, it
# says what to change and exits 1 without making an archive.
#
# Needs git and /usr/bin/python3 (standard library only); no root, no network.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(pwd)
PY=/usr/bin/python3
SOURCE=${APIKEY_DIST_SOURCE:-auto}

die() {
    printf 'dist: ERROR: %s\n' "$*" >&2
    exit 1
}
note() { printf 'dist: %s\n' "$*" >&2; }

[[ -x $PY ]] || die "$PY is needed (apt-get install python3)"
command -v git >/dev/null 2>&1 || die "git is needed (apt-get install git)"
[[ -f $SRC/test/check-meta.py && -f $SRC/test/meta-schema.json ]] ||
    die "test/check-meta.py or test/meta-schema.json is missing from $SRC"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/apikey-dist.XXXXXX")
ZIP_TMP=""
trap 'rm -rf "$STAGE"; [[ -z $ZIP_TMP ]] || rm -f "$ZIP_TMP"' EXIT
mkdir "$STAGE/tree"

case $SOURCE in
auto)
    if [[ -e $SRC/.git ]]; then SOURCE=git; else SOURCE=tree; fi
    ;;
git | tree) ;;
*) die "APIKEY_DIST_SOURCE must be git or tree, not '$SOURCE'" ;;
esac

if [[ $SOURCE == git ]]; then
    top=$(git -C "$SRC" rev-parse --show-toplevel 2>&1) ||
        die "git cannot read the repository in $SRC: $top (APIKEY_DIST_SOURCE=tree archives the working tree instead)"
    [[ $(cd "$top" && pwd -P) == $(cd "$SRC" && pwd -P) ]] ||
        die "$SRC is not the top of its git repository ($top)"
    git -C "$SRC" rev-parse --verify -q HEAD >/dev/null || die "the repository has no commit yet"
    git -C "$SRC" archive --format=tar HEAD | tar -x -C "$STAGE/tree"
    dirty=$(git -C "$SRC" status --porcelain --untracked-files=normal)
    if [[ -n $dirty ]]; then
        note "WARNING: the archive is built from HEAD ($(git -C "$SRC" rev-parse --short HEAD));" \
            "these uncommitted changes are not in it:"
        printf '%s\n' "$dirty" | head -n 15 | sed 's/^/dist:   /' >&2
        (($(printf '%s\n' "$dirty" | wc -l) <= 15)) || note "  ..."
    fi
    what="HEAD $(git -C "$SRC" rev-parse --short HEAD)"
else
    # An empty repository whose work tree is $SRC: its untracked, not
    # ignored files are what `git add -A` would add.  The user's global
    # excludes file is left out so that every machine gives the same list.
    git init -q "$STAGE/git"
    git --git-dir="$STAGE/git/.git" --work-tree="$SRC" -c core.excludesFile=/dev/null \
        ls-files -z --others --exclude-standard >"$STAGE/files" ||
        die "git could not list the files of $SRC"
    tar -C "$SRC" --null -T "$STAGE/files" -cf - | tar -x -C "$STAGE/tree"
    what="the working tree $SRC"
fi

# Drop build and test output, in both modes.
"$PY" - "$STAGE/tree" <<'PY'
import fnmatch, os, shutil, sys
root = sys.argv[1]

# Directories that are never sources, at any depth.
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".deps", "tmp_check", "tmp_check_iso",
             "results", "output_iso"}
# Paths from the top: PGXS, pg_regress and Debian build output.
TOP_GLOBS = ["log", "log/*", "*.zip", "*.deb", "*.ddeb", "*.buildinfo", "*.changes",
             "*.orig.tar.*", "build-[0-9]*", "build-[0-9]*/*", "test/unit/run_unit",
             "debian/.debhelper", "debian/.debhelper/*", "debian/tmp", "debian/tmp/*",
             "debian/files", "debian/*.substvars", "debian/*.debhelper.log",
             "debian/debhelper-build-stamp", "debian/postgresql-*-*", "debian/postgresql-*-*/*"]
# File names anywhere.
NAME_GLOBS = ["*.o", "*.so", "*.bc", "*.a", "*.pyc", "regression.diffs", "regression.out"]

def is_build_product(rel, is_dir):
    parts = rel.split("/")
    if any(p in SKIP_DIRS for p in parts):
        return True
    if any(fnmatch.fnmatchcase(rel, g) for g in TOP_GLOBS):
        return True
    return not is_dir and any(fnmatch.fnmatchcase(parts[-1], g) for g in NAME_GLOBS)

dropped = []
for dirpath, dirnames, filenames in os.walk(root, topdown=True):
    reldir = os.path.relpath(dirpath, root)
    reldir = "" if reldir == "." else reldir + "/"
    for d in list(dirnames):
        if is_build_product(reldir + d, True):
            dirnames.remove(d)
            dropped.append(reldir + d + "/")
            shutil.rmtree(os.path.join(dirpath, d))
    for f in filenames:
        if is_build_product(reldir + f, False):
            dropped.append(reldir + f)
            os.unlink(os.path.join(dirpath, f))
if dropped:
    print("dist: left out as build or test output: %s" % " ".join(sorted(dropped)[:20])
          + (" ..." if len(dropped) > 20 else ""), file=sys.stderr)
PY

[[ -f $STAGE/tree/META.json ]] || die "there is no META.json in $what"
if ! dist=$("$PY" "$SRC/test/check-meta.py" --schema "$SRC/test/meta-schema.json" \
    --root "$STAGE/tree" --label "META.json of $what" --print-dist "$STAGE/tree/META.json"); then
    die "no archive made: fix META.json as said above"
fi
read -r name version <<<"$dist"
base=$name-$version
mv "$STAGE/tree" "$STAGE/$base"

zip_path=$OUT/$base.zip
ZIP_TMP=$OUT/.$base.zip.tmp.$$
"$PY" - "$STAGE" "$base" "$ZIP_TMP" <<'PY'
import os, stat, sys, time, zipfile
stage, base, out = sys.argv[1:4]
entries = []
for dirpath, dirnames, filenames in os.walk(os.path.join(stage, base)):
    dirnames.sort()
    rel = os.path.relpath(dirpath, stage)
    entries.append((rel + "/", dirpath))
    for f in sorted(filenames):
        entries.append((rel + "/" + f, os.path.join(dirpath, f)))
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for arcname, path in entries:
        st = os.lstat(path)
        stamp = time.localtime(max(st.st_mtime, 315532800))[:6]   # zip starts in 1980
        info = zipfile.ZipInfo(arcname, stamp)
        info.create_system = 3                                    # Unix: keep modes
        info.external_attr = (st.st_mode & 0xFFFF) << 16
        if stat.S_ISDIR(st.st_mode):
            info.external_attr |= 0x10
            z.writestr(info, b"")
        elif stat.S_ISLNK(st.st_mode):
            z.writestr(info, os.readlink(path).encode())
        else:
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read())
PY
mv -f "$ZIP_TMP" "$zip_path"
ZIP_TMP=""
count=$(find "$STAGE/$base" -type f | wc -l)
note "$base.zip: $count files from $what"
printf '%s\n' "$zip_path"

#!/usr/bin/env bash
# test/check-docs.sh — the documentation's checks as one test stage
# (scripts/test.sh, stage "docs"): one "ok N" / "not ok N" line per check.
#
#   * every code excerpt of doc/apikey.md and README.md marked
#     <!-- excerpt: FILE --> is made of lines of FILE, which a test runs
#     (test/check-doc-excerpts.py: one line per excerpt);
#   * META.json follows the PGXN Meta Spec and names the control file's
#     default_version (test/check-meta.py), and the checker's own cases pass
#     (--self-test, one line in all).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

out=$(python3 "$ROOT/test/check-doc-excerpts.py" "$ROOT")
printf '%s\n' "$out"
n=$(grep -cE '^(not )?ok [0-9]+' <<<"$out")

n=$((n + 1))
if msg=$(python3 "$ROOT/test/check-meta.py" "$ROOT/META.json" 2>&1); then
    echo "ok $n - $msg"
else
    echo "not ok $n - META.json"
    sed 's/^/# /' <<<"$msg"
fi

n=$((n + 1))
if self=$(python3 "$ROOT/test/check-meta.py" --self-test 2>&1) && ! grep -q '^not ok' <<<"$self"; then
    echo "ok $n - check-meta.py --self-test ($(grep -c '^ok' <<<"$self") cases)"
else
    echo "not ok $n - check-meta.py --self-test"
    grep -A3 '^not ok' <<<"$self" | sed 's/^/# /'
fi

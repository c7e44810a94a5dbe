#!/usr/bin/python3
"""check-doc-excerpts.py: the manual's code excerpts are taken from files
that tests run, and must not drift from them.

A fenced code block in a Markdown file that follows a line

    <!-- excerpt: examples/node/apikey.js -->

must consist of lines of that file, in the file's order (leading and
trailing blanks ignored; a line "..." in the block stands for lines left
out).  Prints one "ok N - ..." / "not ok N - ..." line per excerpt (the
test runner counts them) and exits 1 if any excerpt drifted.

Usage: check-doc-excerpts.py [REPO_ROOT] [MARKDOWN...]
(default: the repository around this script, doc/apikey.md and README.md)
"""
import os
import re
import sys

MARKER = re.compile(r"<!--\s*excerpt:\s*(\S+)\s*-->")


def excerpts(path):
    """(source file, first line number, lines) of every marked block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = MARKER.search(lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            k = j + 1
            while k < len(lines) and not lines[k].startswith("```"):
                k += 1
            yield m.group(1), j + 2, lines[j + 1:k]
            i = k
        i += 1


def in_order(block, source):
    """None if every line of block is a line of source, in order; else the
    first line that is not."""
    src = [l.strip() for l in source]
    pos = 0
    for line in block:
        want = line.strip()
        if want == "" or want == "...":
            continue
        try:
            pos = src.index(want, pos) + 1
        except ValueError:
            return line
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    docs = sys.argv[2:] or ["doc/apikey.md", "README.md"]
    n = 0
    failed = 0
    for doc in docs:
        for source, lineno, block in excerpts(os.path.join(root, doc)):
            n += 1
            path = os.path.join(root, source)
            if not os.path.exists(path):
                failed += 1
                print(f"not ok {n} - {doc}:{lineno}: excerpt of {source}, which does not exist")
                continue
            bad = in_order(block, open(path, encoding="utf-8").read().split("\n"))
            if bad is None:
                print(f"ok {n} - {doc}:{lineno}: excerpt of {source} ({len(block)} lines)")
            else:
                failed += 1
                print(f"not ok {n} - {doc}:{lineno}: excerpt of {source} has drifted")
                print(f"# this line is not in {source} (after the previous ones): {bad.strip()}")
    if n == 0:
        print("not ok 1 - no excerpts found")
        return 1
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

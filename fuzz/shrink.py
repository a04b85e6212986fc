#!/usr/bin/env python3
"""Shrinks a fuzz corpus below what `cargo fuzz cmin` keeps.

cmin keeps every input that adds a libFuzzer *feature* (an edge at a new
hit-count bucket, a new comparison value), which for text formats is
thousands of near-duplicates: megabytes in git and seconds in the replay
test. This keeps, for every *edge* the corpus reaches, the smallest input
that reaches it, and drops the rest: edge coverage is unchanged.

    cargo +nightly fuzz cmin <target>
    python3 fuzz/shrink.py <target>

The edges come from libFuzzer's own merge control file: a merge runs the
inputs smallest first and lists after each (`COV i pc...`) the edges no
earlier input reached.
"""

import os
import subprocess
import sys
import tempfile

FUZZ = os.path.dirname(os.path.abspath(__file__))


def control_file(target, corpus, work):
    binary = os.path.join(
        FUZZ, "target", "x86_64-unknown-linux-gnu", "release", target
    )
    out = os.path.join(work, "out")
    os.mkdir(out)
    ctl = os.path.join(work, "control")
    subprocess.run(
        [binary, "-merge=1", f"-merge_control_file={ctl}", out, corpus],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return ctl


def first_reachers(ctl):
    """Inputs that reach an edge no smaller input reached, with those edges."""
    with open(ctl) as f:
        lines = f.read().splitlines()
    n = int(lines[0])
    paths = lines[2 : 2 + n]
    new_edges = {}
    for line in lines[2 + n :]:
        parts = line.split()
        if parts and parts[0] == "COV" and len(parts) > 2:
            new_edges[paths[int(parts[1])]] = len(parts) - 2
    return new_edges, n


def main():
    target = sys.argv[1]
    corpus = os.path.join(FUZZ, "corpus", target)
    with tempfile.TemporaryDirectory() as work:
        keep, total = first_reachers(control_file(target, corpus, work))
    for name in os.listdir(corpus):
        path = os.path.join(corpus, name)
        if path not in keep:
            os.remove(path)
    size = sum(os.path.getsize(p) for p in keep)
    print(
        f"{target}: kept {len(keep)} of {total} inputs, {size} bytes, "
        f"reaching all {sum(keep.values())} edges"
    )


if __name__ == "__main__":
    main()

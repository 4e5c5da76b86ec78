#!/usr/bin/env python3
"""Fuzz every command's input path with mutated manifests (tests/support/fuzz.py), many more than
the test suite runs. Reports how many inputs worked, were refused with a located error, or crashed,
and writes each crash (input and traceback) under --out.

    .venv/bin/python scripts/fuzz.py --runs 20000 [--seed 0] [--out fuzz-crashes]

Memory is capped (--max-gb) so a runaway input fails here instead of taking the machine down.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.fuzz import run_one  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fuzz-crashes")
    ap.add_argument("--max-gb", type=float, default=4.0)
    args = ap.parse_args()
    cap = int(args.max_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    counts: collections.Counter[str] = collections.Counter()
    out = Path(args.out)

    def crashed(seed: int, text: str, tb: str) -> None:
        out.mkdir(exist_ok=True)
        (out / f"{seed}.yaml").write_text(text)
        (out / f"{seed}.txt").write_text(tb)

    start = time.monotonic()
    for seed in range(args.seed, args.seed + args.runs):
        counts[run_one(seed, crashed)] += 1
    took = time.monotonic() - start
    print(f"{args.runs} inputs in {took:.1f} s: {counts['ok']} ok, {counts['refused']} refused, "
          f"{counts['crash']} crashed" + (f" (see {out}/)" if counts["crash"] else ""))
    return 1 if counts["crash"] else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

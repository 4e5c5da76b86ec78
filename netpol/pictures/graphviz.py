"""Layout by Graphviz's `dot` (the Debian package `graphviz`): the only I/O of the pictures."""

from __future__ import annotations

import shutil
import subprocess

from netpol.errors import QueryError

TIMEOUT = 120.0  # seconds: a layout of the largest graph we draw takes a few


def render(dot_text: str, fmt: str = "svg") -> str:
    exe = shutil.which("dot")
    if exe is None:
        raise QueryError("-o svg and -o html need Graphviz's dot: install it (apt-get install graphviz), "
                         "or use -o dot and lay it out elsewhere")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_text, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        raise QueryError(f"graphviz took more than {TIMEOUT:.0f} s: narrow the graph (--by namespace, "
                         "--focus)") from None
    if done.returncode != 0:
        raise QueryError(f"graphviz failed: {done.stderr.strip()[:300]}")
    return done.stdout

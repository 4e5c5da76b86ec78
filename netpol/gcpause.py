"""Pausing the cyclic garbage collector while building many long-lived objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Building many small objects that all stay alive makes the cyclic GC rescan them again and
    again (loads, compiles and renders run several times slower); nothing built meanwhile is
    garbage, so pause it and restore its state after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

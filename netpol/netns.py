"""Entering Linux network namespaces from Python (3.11 has no os.setns)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from netpol.errors import NetnsError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name_or_path: str) -> str:
    """`ip netns` names live under /run/netns; anything with a slash is a path."""
    path = name_or_path if "/" in name_or_path else os.path.join(NETNS_RUN_DIR, name_or_path)
    if not os.path.exists(path):
        raise NetnsError(f"network namespace {name_or_path!r} not found ({path})")
    return path


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name_or_path: str | None) -> Iterator[None]:
    """Move the *calling thread* into a netns and back. None means stay put.

    Only the current thread moves, so callers that share a process should use
    `run_in` (a dedicated thread) rather than this on the main thread.
    """
    if name_or_path is None:
        yield
        return
    target = os.open(netns_path(name_or_path), os.O_RDONLY)
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def run_in(name_or_path: str | None, fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread inside the namespace; sockets it opens stay there."""
    if name_or_path is None:
        return fn()

    def body() -> T:
        with entered(name_or_path):
            return fn()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(body).result()

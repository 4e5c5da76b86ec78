"""The checks lint knows: a code, a name, a default severity, a one-line summary and a longer doc.

A check is a small function over the lint context that yields `(Location, message)` pairs; the engine
attaches code and severity, and applies selection and suppression.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from netpol.k8s.source import Path_, RawObject

SEVERITIES = ("info", "warning", "error")  # in rising order; --fail-on compares by position


def rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Location:
    file: str
    line: int = 0  # 1-based; 0 when unknown
    column: int = 0  # 1-based; 0 when unknown
    raw: RawObject | None = field(default=None, compare=False, repr=False)  # for annotation suppression
    namespace: str | None = None

    @classmethod
    def of(cls, raw: RawObject, path: Path_ = (), namespace: str | None = None) -> Location:
        line, col = raw.position(path)
        return cls(raw.source.file, line, col, raw, namespace)


Hit = tuple[Location, str]
CheckFn = Callable[..., Iterator[Hit]]


@dataclass(frozen=True)
class Check:
    code: str
    name: str
    severity: str
    summary: str
    doc: str
    fn: CheckFn | None
    default: bool = True  # on unless deselected; opt-in checks run only when selected by code


def check(code: str, name: str, severity: str, summary: str, default: bool = True) -> Callable[[CheckFn], Check]:
    """Make a function a Check; its docstring is the `--explain` text. Nothing is registered here:
    `lint/checks/__init__.py` lists every check in one table."""
    assert severity in SEVERITIES, code

    def wrap(fn: CheckFn) -> Check:
        return Check(code, name, severity, summary, inspect.cleandoc(fn.__doc__ or ""), fn, default)
    return wrap


INPUT_ERROR = Check(
    "NP000", "input-error", "error", "The input could not be read or is not a valid Kubernetes object.",
    "A file that is not valid YAML or JSON, or an object the API server would refuse (for example an ipBlock\n"
    "next to a podSelector in one peer, an invalid CIDR, a port out of range, a duplicate name). The object is\n"
    "left out and the rest of the input is linted. Input errors cannot be deselected or suppressed, and make\n"
    "`netpol lint` exit with 2.", None)

"""Lint settings: `[tool.netpol.lint]` in pyproject.toml, command-line overrides, and the suppression rules.

    [tool.netpol.lint]
    select = ["ALL"]                  # codes or prefixes; default: every check that is on by default
    ignore = ["NP005"]
    fail-on = "warning"               # error (default), warning or info
    tenant-label = "tenant"           # turns NP011 on
    ipblock-pods = true
    severity = { NP008 = "warning" }  # per-code severity
    exclude = ["charts/*"]            # files to skip (globs, relative to this file)
    per-file-ignores = { "legacy/*" = ["NP001", "NP002"] }

An object opts out of codes with the annotation `netpol.io/lint-ignore: NP003,NP007` (or `all`); on a
Namespace it covers every finding located in that namespace.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field, replace

from netpol.errors import InputError
from netpol.lint.checks import all_checks
from netpol.lint.registry import INPUT_ERROR, SEVERITIES, Location

ANNOTATION = "netpol.io/lint-ignore"
KEYS = ("select", "ignore", "fail-on", "tenant-label", "ipblock-pods", "severity", "exclude", "per-file-ignores")


@dataclass(frozen=True)
class Settings:
    select: tuple[str, ...] | None = None  # None: the default selection
    ignore: tuple[str, ...] = ()
    fail_on: str = "error"
    tenant_label: str | None = None
    ipblock_pods: bool = True
    severity: dict[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    root: str = "."  # where relative globs start: the config file's folder
    source: str | None = None  # the config file, for messages

    def with_cli(self, select: str | None = None, ignore: str | None = None, fail_on: str | None = None,
                 tenant_label: str | None = None, ipblock_pods: bool | None = None) -> Settings:
        """Command-line options win; --ignore adds to the configured ignores."""
        out = self
        if select is not None:
            out = replace(out, select=codes(select, "--select"))
        if ignore is not None:
            out = replace(out, ignore=out.ignore + codes(ignore, "--ignore"))
        if fail_on is not None:
            out = replace(out, fail_on=severity(fail_on, "--fail-on"))
        if tenant_label is not None:
            out = replace(out, tenant_label=tenant_label)
        if ipblock_pods is not None:
            out = replace(out, ipblock_pods=ipblock_pods)
        return out


def matches(selector: str, code: str) -> bool:
    return selector == "ALL" or code.startswith(selector)


def codes(value: str | list, where: str, file: str | None = None) -> tuple[str, ...]:
    """`NP001,NP003` or a list of them; every entry must name at least one code (prefixes allowed)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InputError(f"{where}: expected a list of codes", file)
    out = tuple(i.strip().upper() for i in items if i.strip())
    known = all_checks()
    for sel in out:
        if not any(matches(sel, c) for c in known):
            raise InputError(f"{where}: {sel!r} matches no check (codes are {min(known)}..{max(known)})", file)
    return out


def severity(value, where: str, file: str | None = None) -> str:
    if not isinstance(value, str) or value.lower() not in SEVERITIES:
        raise InputError(f"{where}: {value!r} is not one of {', '.join(reversed(SEVERITIES))}", file)
    return value.lower()


def find_config(start: str = ".") -> str | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.netpol.lint] table."""
    here = os.path.abspath(start)
    while True:
        path = os.path.join(here, "pyproject.toml")
        if os.path.isfile(path) and _table(path) is not None:
            return path
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _table(path: str) -> dict | None:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc}", path) from None
    found = doc.get("tool", {}).get("netpol", {}).get("lint")
    if found is not None and not isinstance(found, dict):
        raise InputError("[tool.netpol.lint] must be a table", path)
    return found


def load_settings(path: str | None = None, start: str = ".") -> Settings:
    """Settings from an explicit pyproject.toml, or the nearest one with [tool.netpol.lint]."""
    path = path or find_config(start)
    if path is None:
        return Settings()
    table = _table(path) or {}
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise InputError(f"[tool.netpol.lint]: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})", path)
    where = "[tool.netpol.lint]"
    out = Settings(root=os.path.dirname(os.path.abspath(path)), source=path)
    if "select" in table:
        out = replace(out, select=codes(table["select"], f"{where} select", path))
    if "ignore" in table:
        out = replace(out, ignore=codes(table["ignore"], f"{where} ignore", path))
    if "fail-on" in table:
        out = replace(out, fail_on=severity(table["fail-on"], f"{where} fail-on", path))
    if "tenant-label" in table:
        if not isinstance(table["tenant-label"], str):
            raise InputError(f"{where} tenant-label: expected a string", path)
        out = replace(out, tenant_label=table["tenant-label"])
    if "ipblock-pods" in table:
        if not isinstance(table["ipblock-pods"], bool):
            raise InputError(f"{where} ipblock-pods: expected true or false", path)
        out = replace(out, ipblock_pods=table["ipblock-pods"])
    return _tables(out, table, path)


def _tables(out: Settings, table: dict, path: str) -> Settings:
    where = "[tool.netpol.lint]"
    sev = table.get("severity", {})
    if not isinstance(sev, dict):
        raise InputError(f"{where} severity: expected a table of code = severity", path)
    levels = {}
    for code, value in sev.items():
        codes([code], f"{where} severity", path)
        levels[code.upper()] = severity(value, f"{where} severity.{code}", path)
    excl = table.get("exclude", [])
    if not isinstance(excl, list) or not all(isinstance(e, str) for e in excl):
        raise InputError(f"{where} exclude: expected a list of globs", path)
    pfi = table.get("per-file-ignores", {})
    if not isinstance(pfi, dict):
        raise InputError(f"{where} per-file-ignores: expected a table of glob = [codes]", path)
    per_file = {glob: codes(v, f"{where} per-file-ignores.{glob}", path) for glob, v in pfi.items()}
    return replace(out, severity=levels, exclude=tuple(excl), per_file_ignores=per_file)


TENANT_CODES = frozenset({"NP011", "NP024", "NP025", "NP026", "NP027"})  # on with --tenant-label


def enabled_codes(settings: Settings) -> list[str]:
    """The checks to run (NP000, input errors, is always reported and not listed here)."""
    known = all_checks()
    if settings.select is None:
        chosen = {c for c, chk in known.items() if chk.default or (c in TENANT_CODES and settings.tenant_label)}
    else:
        chosen = {c for c in known if any(matches(s, c) for s in settings.select)}
    chosen -= {c for c in known if any(matches(s, c) for s in settings.ignore)}
    chosen.discard(INPUT_ERROR.code)
    return sorted(chosen)


def annotation_codes(raw) -> tuple[str, ...]:
    meta = raw.data.get("metadata") if raw is not None else None
    notes = meta.get("annotations") if isinstance(meta, dict) else None
    value = notes.get(ANNOTATION) if isinstance(notes, dict) else None
    if not isinstance(value, str):
        return ()
    return tuple(v.strip().upper() for v in value.split(",") if v.strip())


def suppressed(code: str, where: Location, settings: Settings, namespace_raw=None) -> bool:
    """By the object's annotation, its Namespace's annotation, or per-file-ignores."""
    if code == INPUT_ERROR.code:
        return False
    for raw in (where.raw, namespace_raw):
        found = annotation_codes(raw)
        if any(c in ("ALL", "*") or code.startswith(c) for c in found):
            return True
    if settings.per_file_ignores:
        rel = os.path.relpath(os.path.abspath(where.file), settings.root)
        for glob, ignored in settings.per_file_ignores.items():
            if (fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(where.file, glob)) \
                    and any(matches(s, code) for s in ignored):
                return True
    return False

"""User-supplied text made safe for the format it lands in: terminal and CI logs, Markdown, URIs.

Names are validated when read, but file names, owner references and quoted values are not names,
and a report is read by people and by machines (a CI runner executes `::command::` lines it prints;
a Markdown table ends a row at `|` or a newline). Every string from input passes one of these on
its way out.
"""

from __future__ import annotations

import re
import urllib.parse

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, bidi overrides, lone surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# A CI runner reads a line as a workflow command when it starts, after blanks, with `::` (GitHub
# Actions) or `##` (`##[cmd]`, its older syntax, and Azure Pipelines' `##vso[`); the older syntax
# may be looked for anywhere in a line, so `##[` is broken up wherever it stands.
_COMMAND = re.compile(r"^(\s*)(::|##)", re.M)
_SAFE_CODE = re.compile(r"[A-Za-z0-9 ._/:~@=,()\[\]-]*")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~&$^-])")


def _escaped(m: re.Match[str]) -> str:
    c = m.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def plain(text: str) -> str:
    """One line of printable text: controls shown as escapes, so a value cannot start a line."""
    return _CONTROL.sub(_escaped, text)


def inert(text: str) -> str:
    """Text for a terminal or a CI log: no line of it is a workflow command (a backslash goes before
    the `::` or `##` that would start one)."""
    if "::" not in text and "##" not in text:
        return text
    return _COMMAND.sub(r"\1\\\2", text).replace("##[", "#\\#[")


def md_text(text: str) -> str:
    """Literal text in Markdown (a table cell included): every character that could start markup,
    a link, HTML or a new cell is backslash-escaped; controls become visible escapes."""
    return _MD_SPECIAL.sub(r"\\\1", plain(text))


def md_code(text: str) -> str:
    """A name as inline code when it is plain, else as escaped text (a code span cannot escape `|`
    or a backtick everywhere)."""
    return f"`{text}`" if _SAFE_CODE.fullmatch(text) else md_text(text)


def uri_path(path: str) -> str:
    """A relative path as an RFC 3986 URI reference."""
    return urllib.parse.quote(path, safe="/")

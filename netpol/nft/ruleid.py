"""RuleId: the stable id of a rule in the ruleset, the one name render, metrics and logs use for it.

It travels as a value and becomes text only in a rule's comment (`tenant3/db-access ingress[0]`),
which `parse` reads back from the kernel's listing for the per-rule counters. No text from input
reaches the comment: a namespace or policy name is written as itself only in the API server's own
name alphabet, anything else as `~<hash>` (names are validated when read; this is the second line).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

COMMENT_MAX = 120  # the kernel keeps at most 128 bytes of comment
DEFAULT_DENY = "default deny"
_NAME_TEXT = re.compile(r"[a-z0-9][a-z0-9.-]{0,252}")
_COMMENT_TEXT = re.compile(r"[A-Za-z0-9 ./~#_\[\]-]{1,128}")
_POLICY = re.compile(r"(?P<ns>[^/\s]+)/(?P<policy>\S+) (?P<direction>ingress|egress)"
                     r"(?:\[(?P<index>\d+)\])?(?:\s+(?P<rest>.+))?")
_DENY = re.compile(rf"(?P<ns>[a-z0-9.~-]+) {DEFAULT_DENY} (?P<direction>ingress|egress)(?: (?P<rest>.+))?")
ALWAYS = ("node", "hairpin ipv4", "hairpin ipv6")  # what a namespace's deny chain lets through first
_ALWAYS = re.compile(rf"(?P<ns>[a-z0-9.~-]+) (?P<direction>ingress|egress) (?P<rule>{'|'.join(ALWAYS)})")


def short_id(text: str) -> str:
    """A stable short id: set and chain names must stay well within nft's limits."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def ident(text: str) -> str:
    """A namespace or object name as comments and log prefixes may carry it."""
    return text if _NAME_TEXT.fullmatch(text) else f"~{short_id(text)}"


def checked(text: str) -> str:
    """Comment and log-prefix text: nothing that could end a quoted string or a command."""
    if not _COMMENT_TEXT.fullmatch(text):
        raise ValueError(f"unsafe nft comment {text!r}")
    return text


@dataclass(frozen=True)
class RuleId:
    """Which rule: of a policy (`policy` set; `rule` its index, or `next`/`end` of its walk), of a
    namespace (`rule` "default deny", maybe with " log"/" audit", or one of ALWAYS), or of a base chain (`rule` only:
    "replies", "node-local", ...). The fields are the metric labels."""

    namespace: str = ""
    policy: str = ""
    direction: str = ""
    rule: str = ""

    def text(self) -> str:
        """The comment, at most COMMENT_MAX characters, safe inside nft's quotes."""
        ns = ident(self.namespace)
        if self.policy:
            name = ident(self.policy)
            what = f"{self.direction}[{self.rule}]" if self.rule.isdigit() else f"{self.direction} {self.rule}"
            text = f"{ns}/{name} {what}"
            if len(text) > COMMENT_MAX:
                keep = COMMENT_MAX - len(ns) - len(what) - 14
                text = f"{ns}/{name[:max(keep, 1)]}~{short_id(name)[:8]} {what}"[:COMMENT_MAX]
            return checked(text)
        if self.rule.startswith(DEFAULT_DENY):
            return checked(f"{ns} {DEFAULT_DENY} {self.direction}{self.rule[len(DEFAULT_DENY):]}")
        if self.namespace and self.rule in ALWAYS:
            return checked(f"{ns} {self.direction} {self.rule}")
        return checked(self.rule)

    @classmethod
    def parse(cls, comment: str) -> RuleId:
        """The id a comment names (a comment netpol did not write keeps its text as `rule`)."""
        text = comment.strip()
        if m := _POLICY.fullmatch(text):
            rule = m["index"] if m["index"] is not None else ""
            return cls(m["ns"], m["policy"], m["direction"], f"{rule} {m['rest']}".strip() if m["rest"] else rule)
        if m := _DENY.fullmatch(text):
            return cls(m["ns"], "", m["direction"], DEFAULT_DENY + (f" {m['rest']}" if m["rest"] else ""))
        if m := _ALWAYS.fullmatch(text):
            return cls(m["ns"], "", m["direction"], m["rule"])
        return cls(rule=text)

    def labels(self) -> tuple[str, str, str, str]:
        """(policy, namespace, direction, rule): the per-rule metric's labels."""
        return self.policy, self.namespace, self.direction, self.rule

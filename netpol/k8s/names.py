"""Identifier formats, checked as the API server checks them (apimachinery's validation package).

Each check returns None for a valid value, else the reason in the API server's words. Every name,
namespace, label, annotation key and port name netpol reads passes one of these before it reaches
a model: a value that could not exist in a cluster never reaches a ruleset, a log or a report.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_IANA_SVC = re.compile(r"[-a-z0-9]+")

Check = Callable[[str], "str | None"]


def _too_long(value: str, limit: int) -> str | None:
    return f"must be no more than {limit} characters" if len(value) > limit else None


@functools.cache
def dns1123_label(value: str) -> str | None:
    """Namespace names, Service port names: at most 63 of [a-z0-9-], alphanumeric at both ends."""
    if not _DNS1123_LABEL.fullmatch(value):
        return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')")
    return _too_long(value, 63)


@functools.cache
def dns1123_subdomain(value: str) -> str | None:
    """Most object names (Pod, NetworkPolicy, workloads) and nodeName: dot-separated labels, 253 at most."""
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'example.com')")
    return _too_long(value, 253)


@functools.cache
def dns1035_label(value: str) -> str | None:
    """Service names: a DNS-1123 label that starts with a letter."""
    if not _DNS1035_LABEL.fullmatch(value):
        return ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123')")
    return _too_long(value, 63)


@functools.cache
def qualified_name(value: str) -> str | None:
    """Label keys, annotation keys, selector keys: an optional DNS subdomain prefix and '/', then a name."""
    prefix, slash, name = value.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if prefix and (why := dns1123_subdomain(prefix)):
        return f"prefix part {why}"
    if value.count("/") > 1:
        return ("a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional "
                "DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_PART.fullmatch(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')")
    return None


@functools.cache
def label_value(value: str) -> str | None:
    """Label values and selector values: empty, or at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.fullmatch(value):
        return ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', "
                "or '12345')")
    return None


@functools.cache
def iana_svc_name(value: str) -> str | None:
    """Port names of containers and NetworkPolicy ports (RFC 6335): 1-15 of [a-z0-9-], a letter, no '--'."""
    if len(value) > 15:
        return "must be no more than 15 characters"
    if not _IANA_SVC.fullmatch(value):
        return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    if "--" in value:
        return "must not contain consecutive hyphens"
    if value[0] == "-" or value[-1] == "-":
        return "must not begin or end with a hyphen"
    if not re.search("[a-z]", value):
        return "must contain at least one letter (a-z)"
    return None

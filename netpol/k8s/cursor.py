"""A cursor on one raw object that reads fields and raises errors located at them, and the
field readers every kind shares (metadata, protocols, ports)."""

from __future__ import annotations

from typing import cast

from netpol.errors import InputError
from netpol.k8s import names
from netpol.k8s.model import PROTOCOLS, LabelSelector, Protocol, Requirement
from netpol.k8s.source import Path_, RawObject


class At:
    """A cursor on one raw object: reads fields and raises errors located at them."""

    def __init__(self, raw: RawObject, base: Path_ = (), node=None) -> None:
        self.raw, self.base = raw, base
        self.node = raw.data if node is None else node

    def sub(self, path: Path_) -> At:
        """A cursor on a nested field, so reading many of its fields does not walk from the root."""
        return At(self.raw, self.base + path, self.get(path, default={}))

    def fail(self, message: str, path: Path_) -> InputError:
        return self.raw.error(message, self.base + path)

    def get(self, path: Path_, kind: type | tuple[type, ...] | None = None, default=None):
        node = self.node
        for part in path:
            if isinstance(node, dict) and isinstance(part, str):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
            if node is None:
                return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int to Python, never to the API server
        if kind is not None and (not isinstance(node, kind) or (isinstance(node, bool) and bool not in kinds)):
            raise self.fail(f"expected {_kind_name(kind)}, got {_type_name(node)}", path)
        return node

    def items(self, path: Path_) -> list:
        return self.get(path, list, [])

    def labels(self, path: Path_, values: names.Check | None = names.label_value) -> dict[str, str]:
        """A string map whose keys are qualified names (labels, selectors, annotations); values are
        checked too unless `values` is None (annotation values are free text)."""
        found = self.get(path, dict, {})
        for k, v in found.items():
            if v is not None and not isinstance(v, str):
                raise self.fail(f"value {v!r} must be a string (quote it: \"{yaml_scalar(v)}\")", path + (k,))
            self.check(names.qualified_name(str(k).lower() if values is None else str(k)), path + (k,), "key")
            if values is not None:
                self.check(values(v or ""), path + (k,), repr(v or ""))
        return {str(k): "" if v is None else v for k, v in found.items()}

    def check(self, why: str | None, path: Path_, what: str) -> None:
        """Raise a located error when an identifier check found a reason."""
        if why is not None:
            raise self.fail(f"invalid {what}: {why}", path)

    def name(self, path: Path_, check: names.Check, default: str | None = None) -> str | None:
        """An optional identifier field, checked."""
        value = self.get(path, str)
        if value is None or value == "":
            return default
        self.check(check(value), path, f"value {value!r}")
        return value


def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def yaml_scalar(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _kind_name(kind) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", bool: "a boolean"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def protocol(at: At, path: Path_) -> Protocol:
    proto = at.get(path, str, "TCP")
    if proto not in PROTOCOLS:
        raise at.fail(f"unsupported protocol {proto!r} (TCP, UDP or SCTP)", path)
    return cast(Protocol, proto)


def port_value(at: At, path: Path_) -> int | str | None:
    value = at.get(path, (int, str))
    if value is None:
        return None
    if isinstance(value, bool):
        raise at.fail("port must be a number or a name", path)
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise at.fail(f"port {value} out of range 1-65535", path)
        return value
    at.check(names.iana_svc_name(value), path, f"port name {value!r} (an IANA service name)")
    return value


# metadata.name as the API server checks it per kind (CronJob names also become Job names plus 11)
NAME_CHECKS: dict[str, names.Check] = {"Namespace": names.dns1123_label, "Service": names.dns1035_label}
_NAME_LIMITS = {"CronJob": 52}
ANNOTATIONS_MAX = 256 * 1024  # bytes of keys and values together


def object_name(at: At, kind: str) -> str:
    name = at.get(("metadata", "name"), str)
    if not name:
        raise at.fail("metadata.name is required", ("metadata",))
    at.check(NAME_CHECKS.get(kind, names.dns1123_subdomain)(name), ("metadata", "name"), f"name {name!r}")
    limit = _NAME_LIMITS.get(kind)
    if limit is not None and len(name) > limit:
        raise at.fail(f"invalid name {name!r}: must be no more than {limit} characters", ("metadata", "name"))
    return name


def meta(at: At, kind: str) -> tuple[str, str]:
    name = object_name(at, kind)
    return at.name(("metadata", "namespace"), names.dns1123_label, "default") or "default", name


def read_annotations(at: At) -> tuple[tuple[str, str], ...]:
    found = at.labels(("metadata", "annotations"), values=None)
    if sum(len(k.encode()) + len(v.encode()) for k, v in found.items()) > ANNOTATIONS_MAX:
        raise at.fail(f"may not be more than {ANNOTATIONS_MAX} bytes", ("metadata", "annotations"))
    return tuple(sorted(found.items()))


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def selector(at: At, path: Path_) -> LabelSelector:
    at.get(path, dict)
    labels = tuple(sorted(at.labels(path + ("matchLabels",)).items()))
    reqs = []
    for i, _ in enumerate(at.items(path + ("matchExpressions",))):
        p = path + ("matchExpressions", i)
        key = at.get(p + ("key",), str)
        op = at.get(p + ("operator",), str)
        values = at.items(p + ("values",))
        if not key:
            raise at.fail("key is required", p + ("key",))
        at.check(names.qualified_name(key), p + ("key",), f"key {key!r}")
        if op not in _OPERATORS:
            raise at.fail(f"operator {op!r} is not one of {', '.join(_OPERATORS)}", p + ("operator",))
        if op in ("In", "NotIn") and not values:
            raise at.fail(f"operator {op} needs at least one value", p + ("values",))
        if op in ("Exists", "DoesNotExist") and values:
            raise at.fail(f"operator {op} must not have values", p + ("values",))
        for j, v in enumerate(values):
            if not isinstance(v, str):
                raise at.fail(f"value {v!r} must be a string (quote it: \"{yaml_scalar(v)}\")", p + ("values", j))
            at.check(names.label_value(v), p + ("values", j), f"value {v!r}")
        reqs.append(Requirement(key=key, operator=op, values=frozenset(str(v) for v in values)))
    return LabelSelector(match_labels=labels, match_expressions=tuple(reqs))

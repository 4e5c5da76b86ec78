"""Every error netpol raises, in one place.

    Exception
    ├── NetpolError              reported to a user: one line, exit code 2, no traceback
    │   ├── InputError           bad input: file, line and field path say where
    │   ├── QueryError           a question that cannot be answered as asked
    │   ├── ApplyError           nftables refused a change, or the table read back differs
    │   ├── NetnsError           a network namespace cannot be found or entered
    │   └── LabError             the lab cannot be built, used or removed
    ├── NetlinkError (OSError)   the kernel refused a netlink request, or did not answer
    ├── Unsupported (ValueError) an element the netlink path does not encode: libnftables takes it
    ├── Gone                     a watch's resourceVersion is too old: relist
    └── WatchError               a watch ended with another error

The first group leaves the program as messages; the others are caught and handled inside it.
"""

from __future__ import annotations


class NetpolError(Exception):
    """Base of every error netpol reports to a user (exit code 2, no traceback)."""


class InputError(NetpolError):
    """Bad input: a file, line and field say where. `path` is the field as data
    (`("spec", "ingress", 0)`); `field` its dotted form, for people."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 field: str | None = None, path: tuple[str | int, ...] = ()) -> None:
        self.message, self.file, self.line, self.field, self.path = message, file, line, field, path
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file or "<input>"
        if self.line:
            where += f":{self.line}"
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {what}{self.message}"


class QueryError(NetpolError):
    """A question netpol cannot answer as asked (unknown pod, unresolvable port name)."""


class ApplyError(NetpolError):
    """A change was refused by nftables, or the table read back is not what we meant."""

    def __init__(self, message: str, nft_error: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.nft_error = nft_error

    def __str__(self) -> str:
        return f"{self.message}\n{self.nft_error}" if self.nft_error else self.message


class NetnsError(NetpolError):
    """A network namespace could not be found or entered."""


class LabError(NetpolError):
    """The lab cannot be built, used or removed; the message says why and what to do."""


class NetlinkError(OSError):
    """The kernel refused a request (errno) or did not answer."""


class Unsupported(ValueError):
    """An element or set the netlink path does not encode; the caller uses libnftables instead."""


class Gone(Exception):
    """The resourceVersion we hold is older than the server's history: relist."""


class WatchError(Exception):
    """The server ended a watch with an error other than Gone."""

"""The verdict on one checksum field (or on why a layer could not be checked)."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class Status(enum.Enum):
    VALID = "valid"
    INVALID = "INVALID"
    DISABLED = "disabled"            # UDP over IPv4 with checksum 0 (RFC 768)
    NOT_CHECKABLE = "not checkable"  # truncated, fragmented, malformed, unsupported
    # a quoted L4 checksum holding its pseudo-header seed: the quoted packet
    # crossed a virtual link still CHECKSUM_PARTIAL, so the quote says nothing
    PENDING = "pending (not checkable)"
    # UDP over IPv6 with checksum 0 to a tunnel port: RFC 6935/6936 allow it,
    # and Linux accepts it where udp6zerocsumrx is set
    ZERO_TUNNEL = "zero tunnel checksum"


PENDING_QUOTE = ("the quoted packet crossed a virtual link with its checksum still pending "
                 "(CHECKSUM_PARTIAL): what a NIC would have sent cannot be known")
ZERO_TUNNEL_UDP6 = ("zero UDP checksum over IPv6 on a tunnel port (RFC 6935): valid only where "
                    "the receiver sets udp6zerocsumrx")

# what summary() says after the layer name, for the statuses it lists in short
SHORT_REASON = {Status.PENDING: "CHECKSUM_PARTIAL seed", Status.ZERO_TUNNEL: "RFC 6935"}


@dataclass(frozen=True, slots=True)
class LayerVerdict:
    """``path`` is machine-friendly ("vxlan/udp", "icmp/quote/tcp"); ``layer``
    is for people ("inner UDP", "quoted TCP"). ``offset`` is the checksum
    field's offset in the wire frame; ``wire`` what the frame carries there and
    ``correct`` what it should carry (None when it cannot be known)."""
    path: str
    layer: str
    status: Status
    field: str = "chksum"
    offset: Optional[int] = None
    wire: Optional[int] = None
    correct: Optional[int] = None
    reason: str = ""

    def annotation(self) -> str:
        """The bracketed note ``show()`` puts after the field."""
        if self.status is Status.INVALID:
            extra = f", correct 0x{self.correct:04x}" if self.correct is not None else ""
            return f"[INVALID{extra}{': ' + self.reason if self.reason else ''}]"
        if self.status is Status.NOT_CHECKABLE:
            return f"[not checkable: {self.reason}]"
        if self.status in SHORT_REASON and self.reason:
            return f"[{self.status.value}: {self.reason}]"
        return f"[{self.status.value}]"

    def brief(self) -> str:
        """The short form ``summary()`` lists a pending or zero-tunnel checksum in."""
        wire = f" wire=0x{self.wire:04x}" if self.wire is not None else ""
        return (f"{self.status.name} {self.layer} {self.field}{wire} "
                f"({SHORT_REASON.get(self.status, self.reason)})")

    def describe(self) -> str:
        """One line: status, layer, field and the values that matter."""
        text = f"{self.status.name} {self.layer}"
        if self.field:
            text += f" {self.field}"
        if self.wire is not None:
            text += f" wire=0x{self.wire:04x}"
        if self.correct is not None and self.status is not Status.VALID:
            text += f" correct=0x{self.correct:04x}"
        if self.reason:
            text += f" ({self.reason})"
        return text

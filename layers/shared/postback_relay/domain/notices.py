"""What ops are told when an affiliate endpoint's circuit opens or closes (contract section 4).

Pure: the notice and its text. The dispatcher decides when to send one (once per transition:
the conditional write recording the transition decides who sends); a Notifier sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from postback_relay.domain.times import utc_seconds

SUBJECT_MAX = 100  # SNS refuses a longer subject


class CircuitChange(StrEnum):
    OPENED = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class CircuitNotice:
    endpoint: str  # scheme://host:port, never a path or a query (they carry the affiliate's values)
    change: CircuitChange
    affiliates: tuple[str, ...]
    failure_reasons: tuple[tuple[str, int], ...]  # (reason, count), most frequent first
    at: datetime
    open_until: datetime | None = None  # when the first trial call may go (opened only)

    @property
    def subject(self) -> str:
        who = ", ".join(self.affiliates) or "unknown affiliate"
        text = f"postback relay: circuit {self.change.value} for {self.endpoint} (affiliate {who})"
        text = text.encode("ascii", "replace").decode("ascii")
        return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3] + "..."

    @property
    def text(self) -> str:
        reasons = ", ".join(f"{reason} x{count}" for reason, count in self.failure_reasons) or "none recorded"
        affiliates = ", ".join(self.affiliates) or "unknown (no failure was seen by this dispatcher)"
        if self.change is CircuitChange.OPENED:
            until = f" until {utc_seconds(self.open_until)}" if self.open_until else ""
            head = (
                f"The circuit of {self.endpoint} is open since {utc_seconds(self.at)}: its postbacks wait{until}, "
                "then one trial call goes through; none is dropped."
            )
        else:
            head = (
                f"The circuit of {self.endpoint} closed at {utc_seconds(self.at)}: a call succeeded, "
                "its postbacks are being sent again."
            )
        lines = [
            head,
            "",
            f"Affiliates: {affiliates}",
            f"Endpoint: {self.endpoint}",
            f"Last failures: {reasons}",
            "",
            "See:",
            *(f"  postback health --affiliate {affiliate}" for affiliate in self.affiliates),
        ]
        if not self.affiliates:
            lines.append("  postback health")
        return "\n".join(lines)

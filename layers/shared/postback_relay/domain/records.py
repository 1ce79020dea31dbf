"""The records the ports carry that the domain reads too (the delivery log's, for `health`):
declared here so that the domain never imports the ports (ports.py imports them)."""

from dataclasses import dataclass

from postback_relay.domain.delivery import Attempt, DeliveryRef, DeliveryState, PostbackMessage


@dataclass(frozen=True)
class DeliveryRecord:
    delivery_id: str
    message: PostbackMessage
    state: DeliveryState
    attempts: tuple[Attempt, ...]
    created_at: str
    updated_at: str
    last_error: str | None = None
    replays: int = 0

    @property
    def http_status(self) -> int | None:
        return self.attempts[-1].status if self.attempts else None

    @property
    def ref(self) -> DeliveryRef:
        return self.message.ref

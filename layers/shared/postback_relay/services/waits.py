"""How a postback waits (docs/architecture.md, "How a postback waits"): for a retry, for its
circuit, for its due time, or held once while a replay settles, without holding one of the
postback queue's in-flight slots.

A wait is a new, delayed copy of the message (SendMessage's DelaySeconds, at most 15 minutes
a hop) carrying when it is due and the receives so far; only once SQS took the copy may the
received message be deleted. When the copy is refused, the received message stays, hidden
within SQS's 12 hours from its receipt. The `Dispatcher` decides when a postback waits; this
collaborator (built by `wiring.dispatcher` on the same queue) makes it wait.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from postback_relay.domain.delivery import WaitSchedule, hop_delay, visibility_within_receipt
from postback_relay.domain.errors import DomainError

if TYPE_CHECKING:
    from postback_relay.domain.delivery import PostbackMessage
    from postback_relay.domain.records import ReceivedPostback
    from postback_relay.ports import RetryControl

logger = logging.getLogger(__name__)

# A copy received this little before its due time is due: SQS delays count whole seconds.
EARLY_TOLERANCE_S = 1.0
# How long a first receive of a `failed` delivery is held: time for `postback replay` to
# mark the deliveries it queued (one write each, after the whole queue send).
REPLAY_SETTLE_S = 60


@dataclass(frozen=True)
class Wait:
    """A wait begun: its seconds, and whether a delayed copy carries it (the received message
    may be deleted) or the received message stays on the queue, hidden."""

    delay_s: int
    requeued: bool


class Waits:
    def __init__(
        self,
        *,
        retries: RetryControl,
        delay_scale: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._retries = retries
        self._scale = delay_scale
        self._clock = clock

    def wait(self, record: ReceivedPostback, message: PostbackMessage, seconds: int) -> bool:
        """Have the postback come back in `seconds` without holding one of the queue's
        in-flight slots. True: a delayed copy is queued and the received message may be
        deleted; False: the received message stays, hidden (the caller reports it as a batch
        item failure).

        The copy carries when it is due and the receives so far (this one included); a wait
        past SQS's 15-minute delay is a chain of hops (`until_due`).
        """
        schedule = WaitSchedule(not_before=self._clock() + timedelta(seconds=seconds), receives=record.receive_count)
        return self._requeue(record, message.scheduled(schedule), seconds)

    def until_due(self, record: ReceivedPostback, message: PostbackMessage, schedule: WaitSchedule) -> Wait | None:
        """A copy received before its due time is queued again for the rest of its wait (at
        most 15 minutes a hop), with no read of the log and no call; None when it is due.
        A hop is not a receive of the postback: the copy keeps the count it came with."""
        remaining = (schedule.not_before - self._clock()).total_seconds()
        if remaining <= EARLY_TOLERANCE_S:
            return None
        carried = message.scheduled(schedule.model_copy(update={"receives": record.receive_count - 1}))
        requeued = self._requeue(record, carried, math.ceil(remaining))
        return Wait(math.ceil(remaining), requeued)

    def hold_failed(self, record: ReceivedPostback, message: PostbackMessage) -> Wait:
        """A first receive of a delivery failed for good: no call, but not deleted yet.

        It is either a second copy of the postback, or a replay: `postback replay` queues the
        message first and marks the delivery `pending` after, so its message can arrive
        while the log still says `failed`. Deleting it then would leave the delivery
        `pending` with no message. Held once, it comes back as a redelivery: sent if it was
        a replay (marked meanwhile), skipped if still failed.
        """
        delay = max(1, int(REPLAY_SETTLE_S * self._scale))
        # The copy that comes back counts this receive: it is skipped then if still failed.
        return Wait(delay, self.wait(record, message, delay))

    def _requeue(self, record: ReceivedPostback, copy: PostbackMessage, seconds: int) -> bool:
        """The new copy first: only once SQS took it may the received one be deleted. If the
        send fails, the received message stays and is hidden instead (in flight, as far as
        SQS's 12 hours from its receipt allow); a crash before its delete leaves two copies,
        and the log's delivered-once guard sends the postback once."""
        try:
            self._retries.requeue(copy.model_dump_json(), delay_s=hop_delay(seconds))
        except DomainError as exc:
            logger.warning("could not queue the postback's next copy; hiding it", extra={"error": exc.message})
        else:
            return True
        now = self._clock().timestamp()
        visibility = visibility_within_receipt(seconds, received_by=record.received_by, now=now)
        if visibility < 1:
            # SQS would refuse any longer visibility: the queue's visibility timeout applies.
            return False
        try:
            self._retries.delay(record.receipt_handle, visibility)
        except DomainError as exc:
            # The attempt is logged; without the delay the message still comes back, only
            # sooner (after the queue's visibility timeout).
            logger.warning("could not delay the message", extra={"error": exc.message})
        return False

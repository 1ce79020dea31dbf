"""The ports: what the services need from the outside world, as Protocols.

Every port of the system lives here, and nowhere else: adapters (boto3, requests) implement
them in `postback_relay.adapters`; tests of the services use in-memory fakes (tests/fakes).
Only Protocols are declared here: the records they carry are the domain's (domain/records.py).
"""

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from postback_relay.domain.changes import ChangeState, ConfigChange, HistoryEntry
from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.conversion import Conversion, ConversionResult
from postback_relay.domain.delivery import Attempt, Circuit, CircuitStatus, DeliveryRef, DeliveryState, PostbackMessage
from postback_relay.domain.notices import CircuitNotice
from postback_relay.domain.portal import PortalPass
from postback_relay.domain.records import (
    DeliveryRecord,
    FirstRecord,
    OriginalConversion,
    OutboxRecord,
    SendResult,
    StoredAffiliate,
)
from postback_relay.domain.testrun import RunVerdict, TestRun, TestStep, WorkflowExecution


class AffiliateStore(Protocol):
    def get(self, affiliate_id: str) -> StoredAffiliate | None: ...

    def put(self, config: AffiliateConfig, *, expected_version: int | None, updated_by: str) -> StoredAffiliate:
        """Create (expected_version None: must not exist) or update (must still be at
        expected_version). Raises ConflictError otherwise."""
        ...

    def list(self) -> list[StoredAffiliate]: ...

    def set_enabled(self, affiliate_id: str, enabled: bool, *, updated_by: str) -> StoredAffiliate: ...


class ConversionLog(Protocol):
    def record(
        self,
        conversion: Conversion,
        result: ConversionResult,
        messages: Sequence[PostbackMessage] = (),
        *,
        received_at: datetime | None = None,
        tracker: str | None = None,
    ) -> FirstRecord | None:
        """Record an accepted conversion with its result and its postbacks' messages (the
        outbox, queued from the table's stream), if it is new. `tracker` (the `trID_..._trID`
        read from its link) is kept, so that a reversal can fire without a link.

        Returns None when recorded, or the first record when (transaction_id, event) was
        already recorded (nothing is written then, so nothing is queued): its result and the
        fields the repeat changes (domain.repeats). One conditional write."""
        ...

    def original(self, transaction_id: str) -> OriginalConversion | None:
        """The record a reversal of `transaction_id` reverses: the first of this ID's records
        in `domain.events.ORIGINAL_EVENTS` order (a conversion before a reversal), None when
        none is kept (never recorded, or past the table's 400 days)."""
        ...


class PostbackQueue(Protocol):
    def send(self, messages: Sequence[PostbackMessage]) -> list[PostbackMessage]:
        """Queue the messages; returns those the queue refused (empty on success)."""
        ...


class ParkedRecords(Protocol):
    """Where the outbox parks a record it cannot read (its keys, why, its raw image) for ops to
    see, so that the records behind it go on (`postback outbox parked`)."""

    def park(self, records: Sequence[OutboxRecord]) -> list[OutboxRecord]:
        """Park each record; returns those that could not be parked (empty on success)."""
        ...


class DeliveryLog(Protocol):
    def get(self, ref: DeliveryRef) -> DeliveryRecord | None:
        """The delivery at this key (affiliate, creation time, ID), read consistently."""
        ...

    def record_attempt(
        self, message: PostbackMessage, attempt: Attempt, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        """Append the attempt and set the state, in one conditional write that refuses to
        touch a delivery already `delivered` (raises ConflictError then)."""
        ...

    def by_affiliate(self, affiliate_id: str, *, limit: int = 100) -> list[DeliveryRecord]: ...

    def created_since(self, affiliate_id: str, since: datetime, *, at_least: int = 0) -> list[DeliveryRecord]:
        """The affiliate's postbacks first logged at or after `since`, newest first (for
        `postback health`: the per-affiliate access path, read in one place), followed by
        older ones when fewer than `at_least` were, up to `at_least` in all (the portal's
        home: its list and its health row from one read)."""
        ...

    def at(self, refs: Sequence[DeliveryRef]) -> list[DeliveryRecord]:
        """The deliveries at these keys, in this order; those gone (TTL) are left out
        (services.lookup finds a transaction's keys)."""
        ...

    def failed(self, *, affiliate_id: str | None = None) -> list[DeliveryRecord]:
        """The failed deliveries: the affiliate's, newest first, or every one in the log."""
        ...

    def mark_replayed(self, ref: DeliveryRef) -> None:
        """Set a failed delivery back to pending, attempts kept, replay count + 1."""
        ...


class PostbackSender(Protocol):
    def send(self, message: PostbackMessage, *, headers: dict[str, str] | None = None) -> SendResult: ...


class EndpointStore(Protocol):
    """Circuit breakers shared by every dispatcher instance (EndpointsTable)."""

    def get(self, endpoint: str) -> Circuit | None: ...

    def save(
        self,
        circuit: Circuit,
        *,
        expected_opened_until: float | None = None,
        only_from: Collection[CircuitStatus] | None = None,
    ) -> bool:
        """Write the circuit, on a condition when one is given; False when it failed.

        `expected_opened_until`: only if the stored circuit still has that `opened_until` (so
        that one instance alone takes the half-open trial). `only_from`: only if the stored
        circuit is in one of these states, a missing one counting as closed (so that one
        instance alone records, and announces, an opening or a closing)."""
        ...

    def list(self) -> list[Circuit]: ...


class Notifier(Protocol):
    """Tells ops (the stack's alarm topic) that an endpoint's circuit opened or closed."""

    def notify(self, notice: CircuitNotice) -> None:
        """Raises InfrastructureError when the notice could not be sent."""
        ...


class DispatchDeliveryLog(DeliveryLog, Protocol):
    def mark_deferred(self, message: PostbackMessage, *, reason: str) -> None:
        """Keep the delivery `pending` (circuit open), no attempt appended; never touches a
        delivered one."""
        ...


class RetryControl(Protocol):
    """The source queue and the DLQ, as the dispatcher steers them."""

    def requeue(self, body: str, *, delay_s: int) -> None:
        """Send a new copy of a message to the postback queue, invisible for `delay_s` seconds
        (SendMessage with DelaySeconds, at most 900): a delayed message is not in flight."""
        ...

    def delay(self, receipt_handle: str, seconds: int) -> None:
        """Hide a received message for this long (ChangeMessageVisibility). The fallback when
        a requeue fails: the message stays in flight, within SQS's 12 hours from its receipt."""
        ...

    def dead_letter(self, body: str, *, reason: str, delivery_id: str | None) -> None:
        """Park a message that failed for good on the DLQ, with its reason."""
        ...


# --- the test link ---------------------------------------------------------------------------


class TestRunStore(Protocol):
    def create(self, run: TestRun) -> None:
        """Record a new run (a run ID is never reused)."""
        ...

    def get(self, run_id: str) -> TestRun | None: ...

    def append_step(self, run_id: str, step: TestStep) -> None: ...

    def finish(self, run_id: str, verdict: RunVerdict, *, step: str | None, reason: str | None, at: datetime) -> bool:
        """Set the verdict if the run is still running; False when it already had one."""
        ...


class HopAnswer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class HopClient(Protocol):
    """One HTTP request, redirects never followed; raises UnsafeUrlError (nothing sent) or
    DeliveryTransportError (no answer). `SafeHttpClient` is one."""

    def request(self, method: str, url: str) -> HopAnswer: ...


class TestRunLauncher(Protocol):
    """Starts a test-link run (services/testlink/runs.py TestRunStarter); returns its run ID."""

    def start(self, affiliate_id: str, started_by: str, waits: Sequence[int], deadline_s: int) -> str: ...


# --- the affiliate's portal ------------------------------------------------------------------


class PortalAccess(Protocol):
    """Each affiliate's revocation epoch, the links already used and the sessions signed out
    (PortalTable)."""

    def epoch(self, affiliate_id: str) -> int:
        """The affiliate's current epoch (0 before any revocation)."""
        ...

    def revoke(self, affiliate_id: str) -> int:
        """Raise the epoch by one: every link and session made before ends. Returns the new one."""
        ...

    def link_used(self, link: PortalPass) -> bool: ...

    def use_link(self, link: PortalPass) -> bool:
        """Mark the link used, once: False when it had been used already (one conditional write)."""
        ...

    def end_session(self, session: PortalPass) -> None:
        """Sign the session out: its cookie is refused from now on, even copied (kept until it expires)."""
        ...

    def session_ended(self, session: PortalPass) -> bool: ...


class ChangeLog(Protocol):
    """Portal changes waiting for ops, and every change's history (PortalTable)."""

    def submit(self, change: ConfigChange) -> None: ...

    def get(self, change_id: str) -> ConfigChange | None: ...

    def listed(self, *, state: ChangeState | None = None) -> list[ConfigChange]:
        """Every change (of this state), oldest first."""
        ...

    def latest(self, affiliate_id: str) -> ConfigChange | None:
        """The affiliate's most recent change, whatever its state."""
        ...

    def decide(
        self, change: ConfigChange, state: ChangeState, *, by: str, at: str, reason: str | None = None
    ) -> ConfigChange:
        """Approve or reject a pending change; ConflictError when it is no longer pending."""
        ...

    def record(self, entry: HistoryEntry) -> None: ...

    def history(self, affiliate_id: str) -> list[HistoryEntry]:
        """Newest first."""
        ...


# --- the use cases of services.lookup and services.testlink.runs --------------------------


class KeptPostbacks(Protocol):
    """Where a conversion's postbacks are logged, as its records keep them (ConversionsTable:
    each record keeps the messages it queued, the outbox)."""

    def delivery_refs(self, transaction_id: str) -> list[DeliveryRef]:
        """The keys of the postbacks the transaction's records (every event) keep; empty when
        none is kept."""
        ...


class TestWorkflow(Protocol):
    """The test-link workflow (Step Functions): one execution per run, named after it."""

    def start(self, run_id: str, execution_input: Mapping[str, object]) -> None:
        """Start the run's execution; InfrastructureError, with the reason, when it cannot."""
        ...

    def execution(self, run_id: str) -> WorkflowExecution | None:
        """The run's execution as the workflow knows it; None when there is none."""
        ...

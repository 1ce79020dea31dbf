"""Accept conversions: validate the request, resolve each conversion to its postbacks, and
record it with its rendered postback messages, in one conditional write (the idempotency
guard and the outbox at once).

Ingest never calls the queue: the conversions table's stream hands each new record to the
outbox function (services.outbox), which queues its messages. Acceptance depends on that one
write alone, so a 202 holds even while SQS is down, and there is nothing to undo: a record
written is a postback that will be queued. A repeat (refused write) writes nothing, so it
queues nothing.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from pydantic import ValidationError

from postback_relay.domain.config import AffiliateConfig, PostbackSpec
from postback_relay.domain.conversion import (
    CONVERSION_RETENTION_DAYS,
    Conversion,
    ConversionOutcome,
    ConversionResult,
)
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.errors import (  # re-exported: tests import them from the service
    BODY_FIELD,
    FieldError,
    InvalidConversionRequest,
    LinkError,
    PostbackRefused,
    TrackerError,
    UnreadableConfigError,
)
from postback_relay.domain.errors import (
    MAX_FIELD_ERRORS as MAX_FIELD_ERRORS,
)
from postback_relay.domain.events import REVERSALS, OfferType
from postback_relay.domain.jsontext import no_duplicate_keys, refuse_constant
from postback_relay.domain.links import LinkInfo, read_link, read_tracker
from postback_relay.domain.messages import validation_message
from postback_relay.domain.postbacks import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from postback_relay.domain.postbacks import postback_messages
from postback_relay.domain.records import FirstRecord, OriginalConversion
from postback_relay.domain.repeats import content_digests, differing_fields
from postback_relay.domain.tracker import parse_tracker
from postback_relay.ports import AffiliateStore, ConversionLog

MAX_BATCH = 100
# Conditional puts of a batch in flight at once: 100 puts take about 7 round trips, not 100.
RECORD_WORKERS = 16


@dataclass(frozen=True)
class ConversionRequest:
    """A parsed request: one conversion, or a batch of 1 to MAX_BATCH."""

    conversions: tuple[Conversion, ...]
    is_batch: bool


def _dotted(prefix: str, loc: Sequence[int | str]) -> str:
    parts = ([prefix] if prefix else []) + [str(part) for part in loc]
    return ".".join(parts) if parts else BODY_FIELD


def _validation_errors(exc: ValidationError, prefix: str) -> list[FieldError]:
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        errors.append(FieldError(_dotted(prefix, error["loc"]), validation_message(error["type"], error["msg"])))
    return errors


def _conversion(document: object, prefix: str, errors: list[FieldError]) -> Conversion | None:
    if not isinstance(document, dict):
        errors.append(FieldError(prefix or BODY_FIELD, "A conversion must be a JSON object."))
        return None
    try:
        return Conversion.model_validate(document)
    except ValidationError as exc:
        errors.extend(_validation_errors(exc, prefix))
        return None


def parse_conversion_request(body: bytes) -> ConversionRequest:
    """Read the body as one conversion or `{"conversions": [...]}`.

    Raises InvalidConversionRequest with every field error found. Numbers are read as Decimal,
    so an amount sent as a JSON number keeps its exact text.
    """
    document = _json_object(body)
    if "conversions" not in document:
        return _single_request(document)
    return _batch_request(document)


def _json_object(body: bytes) -> dict[str, object]:
    """The body as a JSON object: UTF-8, strict JSON (no NaN, no repeated key), numbers as
    Decimal."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidConversionRequest([FieldError(BODY_FIELD, "The body is not UTF-8 text.")]) from exc
    try:
        document = json.loads(
            text, parse_float=Decimal, parse_constant=refuse_constant, object_pairs_hook=no_duplicate_keys
        )
    except json.JSONDecodeError as exc:
        message = f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        raise InvalidConversionRequest([FieldError(BODY_FIELD, message)]) from exc
    except (ValueError, RecursionError) as exc:
        # NaN/Infinity, integers too long to convert, nesting too deep for the parser
        raise InvalidConversionRequest([FieldError(BODY_FIELD, f"The body is not acceptable JSON: {exc}.")]) from exc
    if not isinstance(document, dict):
        message = 'The body must be a JSON object: one conversion, or {"conversions": [...]}.'
        raise InvalidConversionRequest([FieldError(BODY_FIELD, message)])
    return document


def _single_request(document: dict[str, object]) -> ConversionRequest:
    errors: list[FieldError] = []
    conversion = _conversion(document, "", errors)
    if errors or conversion is None:
        raise InvalidConversionRequest(errors)
    return ConversionRequest((conversion,), is_batch=False)


def _batch_request(document: dict[str, object]) -> ConversionRequest:
    """`{"conversions": [...]}`: 1 to MAX_BATCH conversions, and no other key."""
    errors = [FieldError(key, 'A batch holds only "conversions".') for key in document if key != "conversions"]
    items = document["conversions"]
    if not isinstance(items, list):
        errors.append(FieldError("conversions", "Must be an array of conversions."))
        raise InvalidConversionRequest(errors)
    if not 1 <= len(items) <= MAX_BATCH:
        message = f"Must hold 1 to {MAX_BATCH} conversions; it holds {len(items)}."
        errors.append(FieldError("conversions", message))
        raise InvalidConversionRequest(errors)
    conversions = [_conversion(item, f"conversions.{i}", errors) for i, item in enumerate(items)]
    if errors:
        raise InvalidConversionRequest(errors)
    return ConversionRequest(tuple(c for c in conversions if c is not None), is_batch=True)


# --- the answer --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The answer for one conversion of the request: its result, and whether it was a repeat."""

    result: ConversionResult
    repeat: bool = False
    # For a repeat whose content differs from the first (contract section 2: a 409 when alone),
    # the names of the fields that differ; nothing of it was taken.
    differing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        result = self.result
        document: dict[str, object] = {
            "transaction_id": result.transaction_id,
            "event": result.event.value,
            "affiliate_id": result.affiliate_id,
            "outcome": result.outcome.value,
            "postbacks_queued": result.postbacks_queued,
            "reason": result.reason,
            "error_kind": result.error_kind,
            "repeat": self.repeat,
        }
        if self.differing:
            document["differing"] = list(self.differing)
        return document


@dataclass(frozen=True)
class IngestReport:
    """The answers in the order of the request."""

    answers: tuple[Answer, ...]
    postbacks_queued: int = 0
    new_conversions: tuple[Conversion, ...] = field(default=())

    @property
    def all_repeats(self) -> bool:
        return all(answer.repeat for answer in self.answers)

    @property
    def differing(self) -> tuple[Answer, ...]:
        """The repeats whose content differs from the conversion first taken."""
        return tuple(answer for answer in self.answers if answer.differing)


# --- the use case ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    result: ConversionResult
    messages: tuple[PostbackMessage, ...] = ()
    # The tracker (`trID_..._trID`) read from the link, kept with the record for a reversal.
    tracker: str | None = None
    # A reversal completed from its original's record (offer, tracker, affiliate): what is recorded.
    completed: Conversion | None = None


def _nothing(
    conversion: Conversion,
    affiliate_id: str | None,
    outcome: ConversionOutcome,
    reason: str,
    error_kind: str | None = None,
) -> _Resolved:
    return _Resolved(
        ConversionResult(
            transaction_id=conversion.transaction_id,
            event=conversion.event,
            affiliate_id=affiliate_id,
            outcome=outcome,
            reason=reason,
            error_kind=error_kind,
        )
    )


class IngestService:
    """Turns accepted conversions into recorded results with their postback messages."""

    def __init__(
        self,
        affiliates: AffiliateStore,
        conversions: ConversionLog,
        *,
        clock: Callable[[], datetime],
        allow_loopback: bool = False,
    ) -> None:
        self._affiliates = affiliates
        self._conversions = conversions
        self._clock = clock
        self._allow_loopback = allow_loopback
        # Threads start on first use, so a single-conversion request (recorded inline) never
        # pays for them.
        self._record_pool = ThreadPoolExecutor(max_workers=RECORD_WORKERS, thread_name_prefix="record")

    def ingest(self, conversions: Sequence[Conversion], *, batch: bool = False) -> IngestReport:
        """Record each new conversion with its result and its postbacks' messages.

        A repeat (already recorded, or twice in this request) answers its first result and
        records nothing. A reversal of a reversal raises InvalidConversionRequest, its field
        named as in the request (`batch`: `conversions.<n>.original_transaction_id`), before
        anything is recorded. Raises InfrastructureError when a write fails: the conversions
        recorded before it stay recorded (their postbacks go out from the stream), and the
        platform's retry finds them as repeats and records the rest.
        """
        now = self._clock()
        first_of: dict[str, int] = {}
        for position, conversion in enumerate(conversions):
            first_of.setdefault(conversion.conversion_id, position)
        unique = [conversions[position] for position in first_of.values()]
        resolved = self._resolve_all(unique, [first_of[c.conversion_id] for c in unique], batch=batch, now=now)

        firsts = self._record_all([(c, resolved[c.conversion_id]) for c in unique], now=now)
        answers_by_id: dict[str, Answer] = {}
        recorded: list[str] = []
        for conversion, first in zip(unique, firsts, strict=True):
            if first is None:
                recorded.append(conversion.conversion_id)
                answers_by_id[conversion.conversion_id] = Answer(resolved[conversion.conversion_id].result)
            else:
                answers_by_id[conversion.conversion_id] = Answer(first.result, repeat=True, differing=first.differing)

        answers = []
        for position, conversion in enumerate(conversions):
            answer = answers_by_id[conversion.conversion_id]
            first_position = first_of[conversion.conversion_id]
            if first_position != position:
                # The same identity twice in one request: compared with its first occurrence.
                differing = differing_fields(content_digests(conversions[first_position]), content_digests(conversion))
                answer = Answer(answer.result, repeat=True, differing=differing)
            answers.append(answer)
        by_id = {c.conversion_id: c for c in unique}
        return IngestReport(
            answers=tuple(answers),
            postbacks_queued=sum(len(resolved[cid].messages) for cid in recorded),
            new_conversions=tuple(by_id[cid] for cid in recorded),
        )

    def _record_all(self, pairs: Sequence[tuple[Conversion, _Resolved]], *, now: datetime) -> list[FirstRecord | None]:
        """Record each conversion (distinct IDs), concurrently for a batch; returns each one's
        first record (None: recorded now) in the order given. Raises the first failure, once
        every write has ended."""

        def record(conversion: Conversion, resolved: _Resolved) -> FirstRecord | None:
            return self._conversions.record(
                resolved.completed or conversion,
                resolved.result,
                resolved.messages,
                received_at=now,
                tracker=resolved.tracker,
            )

        if len(pairs) == 1:
            return [record(*pairs[0])]
        futures: list[Future[FirstRecord | None]] = [
            self._record_pool.submit(contextvars.copy_context().run, record, conversion, resolved)
            for conversion, resolved in pairs
        ]
        # Every put is waited for, even after a failure: none is left running behind the answer.
        errors = [future.exception() for future in futures]
        failure = next((error for error in errors if error is not None), None)
        if failure is not None:
            raise failure
        return [future.result() for future in futures]

    def _resolve_all(
        self, unique: Sequence[Conversion], positions: Sequence[int], *, batch: bool, now: datetime
    ) -> dict[str, _Resolved]:
        """Each conversion's result: the conversions first, then the reversals, which find an
        original sent in the same request before the log is read."""
        resolved: dict[str, _Resolved] = {}
        errors: list[FieldError] = []
        in_request: dict[str, OriginalConversion] = {}
        for conversion in (c for c in unique if not c.is_reversal):
            done = resolved[conversion.conversion_id] = self.resolve(conversion, now=now)
            in_request.setdefault(conversion.transaction_id, _as_original(conversion, done))
        for conversion, position in zip(unique, positions, strict=True):
            if not conversion.is_reversal:
                continue
            try:
                resolved[conversion.conversion_id] = self.resolve(conversion, now=now, in_request=in_request)
            except InvalidConversionRequest as exc:
                prefix = f"conversions.{position}" if batch else ""
                errors.extend(FieldError(_dotted(prefix, [e.field]), e.message) for e in exc.errors)
        if errors:
            raise InvalidConversionRequest(errors)
        return resolved

    def resolve(
        self, conversion: Conversion, *, now: datetime, in_request: Mapping[str, OriginalConversion] | None = None
    ) -> _Resolved:
        """The result of one conversion and the postback messages it fires (pure but for the
        affiliate lookup, and a reversal's read of its original: from `in_request`, the
        conversions of the same request, else from the log)."""
        if not conversion.is_reversal:
            return self._resolve_link(conversion, now=now)
        original_id = conversion.original_transaction_id or ""
        original = (in_request or {}).get(original_id) or self._conversions.original(original_id)
        completed = self._with_original(conversion, original)
        if isinstance(completed, _Resolved):
            return completed
        return replace(self._resolve_link(completed, now=now), completed=completed)

    def _with_original(self, reversal: Conversion, original: OriginalConversion | None) -> Conversion | _Resolved:
        """The reversal with its original's affiliate and tracker (and offer, when it sends none);
        or its result when
        the original is not on record. Raises InvalidConversionRequest for a reversal of a
        reversal."""
        original_id = reversal.original_transaction_id or ""
        if original is not None and original.event in REVERSALS:
            message = (
                f"{original_id} is a {original.event.value}: a chargeback or a refund reverses a conversion, "
                "never another reversal."
            )
            raise InvalidConversionRequest([FieldError("original_transaction_id", message)])
        if original is None:
            reason = (
                f"No conversion {original_id} is on record (conversions are kept {CONVERSION_RETENTION_DAYS} days): "
                f"this {reversal.event.value} reverses nothing and fires nothing."
            )
            return _nothing(reversal, reversal.affiliate_id, ConversionOutcome.ORIGINAL_NOT_FOUND, reason)
        if original.tracker is None or original.offer is None:
            reason = (
                f"Conversion {original_id} is on record without its tracker (its link could not be read): "
                f"this {reversal.event.value} has no values to fire with."
            )
            return _nothing(reversal, original.affiliate_id, ConversionOutcome.ORIGINAL_NOT_FOUND, reason)
        # The offer the reversal sends, if any (with its name), else the original's.
        return reversal.model_copy(
            update={
                "offer": reversal.offer or original.offer,
                "link": None,
                "tracker": original.tracker,
                "affiliate_id": original.affiliate_id,
            }
        )

    def _resolve_link(self, conversion: Conversion, *, now: datetime) -> _Resolved:
        offer_type = conversion.offer.type if conversion.offer is not None else OfferType.REVSHARE
        try:
            if conversion.link is not None:
                link = read_link(conversion.link, offer_type)
            else:
                link = read_tracker(conversion.tracker or "", offer_type, conversion.affiliate_id)
        except TrackerError as exc:
            return _nothing(
                conversion, conversion.affiliate_id, ConversionOutcome.TRACKER_MISMATCH, exc.message, exc.reason
            )
        except LinkError as exc:
            # Without a readable link there is no affiliate to look up.
            return _nothing(
                conversion, conversion.affiliate_id, ConversionOutcome.UNKNOWN_AFFILIATE, exc.message, exc.kind
            )

        return replace(self._resolve_affiliate(conversion, link, now=now), tracker=link.tracker)

    def _resolve_affiliate(self, conversion: Conversion, link: LinkInfo, *, now: datetime) -> _Resolved:
        if conversion.affiliate_id is not None and conversion.affiliate_id != link.affiliate_id:
            reason = f"The conversion names affiliate {conversion.affiliate_id}, its link {link.affiliate_id}."
            return _nothing(
                conversion, link.affiliate_id, ConversionOutcome.TRACKER_MISMATCH, reason, "affiliate_mismatch"
            )
        try:
            stored = self._affiliates.get(link.affiliate_id)
        except UnreadableConfigError as exc:
            # That affiliate's fault to mend (ops put the config again), nobody else's: recorded
            # and answered per conversion, never a 503 for the whole request.
            return _nothing(conversion, link.affiliate_id, ConversionOutcome.TRACKER_MISMATCH, exc.message, exc.kind)
        if stored is None:
            reason = f"No postback configuration for affiliate {link.affiliate_id}."
            return _nothing(conversion, link.affiliate_id, ConversionOutcome.UNKNOWN_AFFILIATE, reason)
        return self._fire(conversion, link, stored.config, now=now)

    def _fire(self, conversion: Conversion, link: LinkInfo, config: AffiliateConfig, *, now: datetime) -> _Resolved:
        """The postback messages a conversion fires: those its affiliate subscribed to, each
        rendered with the conversion's and its tracker's values; nothing when one of them
        cannot be sent."""
        affiliate_id = link.affiliate_id
        postbacks = _subscribed_postbacks(conversion, affiliate_id, config)
        if isinstance(postbacks, _Resolved):
            return postbacks
        try:
            tracker_values = parse_tracker(link.values, config.tracker)
        except TrackerError as exc:
            return _nothing(conversion, affiliate_id, ConversionOutcome.TRACKER_MISMATCH, exc.message, exc.reason)

        try:
            messages = postback_messages(
                conversion,
                config,
                tracker_values,
                created_at=now,
                allow_loopback=self._allow_loopback,
                postbacks=postbacks,
            )
        except PostbackRefused as exc:
            return _nothing(conversion, affiliate_id, ConversionOutcome.TRACKER_MISMATCH, exc.message, exc.kind)
        result = ConversionResult(
            transaction_id=conversion.transaction_id,
            event=conversion.event,
            affiliate_id=affiliate_id,
            outcome=ConversionOutcome.QUEUED,
            postbacks_queued=len(messages),
            delivery_ids=tuple(m.delivery_id for m in messages),
        )
        return _Resolved(result, tuple(messages))


def _as_original(conversion: Conversion, resolved: _Resolved) -> OriginalConversion:
    """What a reversal in the same request takes from a conversion, as its record will keep it."""
    return OriginalConversion(
        transaction_id=conversion.transaction_id,
        event=conversion.event,
        affiliate_id=resolved.result.affiliate_id,
        offer=conversion.offer,
        tracker=resolved.tracker,
    )


def _subscribed_postbacks(
    conversion: Conversion, affiliate_id: str, config: AffiliateConfig
) -> list[tuple[int, PostbackSpec]] | _Resolved:
    """The postbacks of the affiliate's config that this conversion fires (with their index);
    or the conversion's result when it fires none: a config of another affiliate, a disabled
    affiliate, an event or offer not subscribed to."""
    if config.affiliate_id != affiliate_id:
        reason = f"The tracker names affiliate {affiliate_id}, the configuration {config.affiliate_id}."
        return _nothing(conversion, affiliate_id, ConversionOutcome.TRACKER_MISMATCH, reason, "affiliate_mismatch")
    if not config.enabled:
        reason = f"Affiliate {affiliate_id} is disabled."
        return _nothing(conversion, affiliate_id, ConversionOutcome.AFFILIATE_DISABLED, reason)
    postbacks = config.postbacks_for(conversion.event, conversion.offer_id)
    if not postbacks:
        reason = (
            f"Affiliate {affiliate_id} has no postback for event {conversion.event.value} "
            f"on offer {conversion.offer_id}."
        )
        return _nothing(conversion, affiliate_id, ConversionOutcome.EVENT_NOT_SUBSCRIBED, reason)
    return postbacks

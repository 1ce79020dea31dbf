"""The affiliate's portal (contract section 7): what one affiliate may see and do, and nothing
of any other affiliate's. Every method takes the session; the affiliate is the session's,
whatever the request names.

Links and sessions are signed tokens (domain.portal); the store keeps each affiliate's
revocation epoch and the links already used. A change to the config is checked as
`affiliate put` checks it, then applied, kept for ops' approval or refused, as the
affiliate's `self_service` says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from postback_relay.domain.changes import ChangeSource, ConfigChange
from postback_relay.domain.config import AffiliateConfig, PostbackSpec, SelfService, dump_config, parse_config
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.delivery import DeliveryRef, DeliveryState
from postback_relay.domain.errors import ConfigError, NotFoundError, PostbackRefused
from postback_relay.domain.events import REVERSALS, Event
from postback_relay.domain.fields import human_field
from postback_relay.domain.health import AffiliateHealth
from postback_relay.domain.portal import (
    SESSION_LIFETIME_S,
    AccessProblem,
    PortalPass,
    csrf_ok,
    csrf_token,
    new_pass_id,
    read_pass,
    refused,
    sign_pass,
)
from postback_relay.domain.postbacks import postback_messages
from postback_relay.domain.presets import PRESETS
from postback_relay.domain.records import DeliveryRecord, StoredAffiliate
from postback_relay.domain.testrun import RunVerdict, TestRun
from postback_relay.domain.times import parse_utc, utc_seconds
from postback_relay.ports import (
    AffiliateStore,
    ChangeLog,
    DeliveryLog,
    EndpointStore,
    PortalAccess,
    PostbackQueue,
    TestRunLauncher,
    TestRunStore,
)
from postback_relay.services.changes import apply_change, diff_of, submit_change
from postback_relay.services.health import health_row
from postback_relay.services.replay import replay_records

logger = logging.getLogger(__name__)

HEALTH_WINDOW = timedelta(hours=24)
# A run still `running` this long after its deadline has stopped without a verdict (its
# workflow died): the deadline counts from the fire step, and each step before it and the last
# check may take up to 3 minutes a try, 4 tries (statemachine/testlink.asl.json).
STOPPED_AFTER_DEADLINE = timedelta(minutes=30)
DELIVERIES_SHOWN = 50
DELIVERIES_READ = 200  # the newest, of which those of the state and event asked for are shown
SAMPLE_OFFER = "89"


@dataclass(frozen=True)
class PostbackEdit:
    """One postback as the portal's form sends it (`index` counts the form's postbacks from 0;
    the last one of the form is a blank one, for a new postback). `preset` ("" for a URL
    template of one's own), `click_id` and `statuses` (event -> the tracker's word, "" for the
    default) are None when the form did not send them: then they stay as stored."""

    index: int
    url: str
    events: tuple[str, ...]
    offers: str = ""
    remove: bool = False
    preset: str | None = None
    click_id: str | None = None
    statuses: Mapping[str, str] | None = None


@dataclass(frozen=True)
class SaveOutcome:
    """What became of a change: `applied`, `pending`, `unchanged`, `refused` (with the field
    problems, in the words of `affiliate put`) or `read_only`."""

    state: str
    problems: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)  # form field -> its problem
    change: ConfigChange | None = None


@dataclass(frozen=True)
class PreviewLine:
    """What a sample conversion of `event` makes postback `index` (of the form) send: its URL,
    or why it would send nothing (`event` None: the config itself is refused)."""

    index: int
    event: str | None
    url: str | None
    problem: str | None = None


@dataclass(frozen=True)
class Overview:
    stored: StoredAffiliate
    latest_change: ConfigChange | None
    deliveries: list[DeliveryRecord]
    health: AffiliateHealth

    @property
    def mode(self) -> SelfService:
        return self.stored.config.portal_mode


class PortalService:
    def __init__(
        self,
        *,
        affiliates: AffiliateStore,
        access: PortalAccess,
        changes: ChangeLog,
        deliveries: DeliveryLog,
        queue: PostbackQueue,
        runs: TestRunStore,
        launcher: TestRunLauncher,
        endpoints: EndpointStore,
        secret: Callable[[], bytes],
        clock: Callable[[], datetime],
        schedule: Callable[[], tuple[list[int], int]],
        allow_loopback: bool = False,
    ) -> None:
        self._affiliates = affiliates
        self._access = access
        self._changes = changes
        self._deliveries = deliveries
        self._queue = queue
        self._runs = runs
        self._launcher = launcher
        self._endpoints = endpoints
        self._secret = secret
        self._clock = clock
        self._schedule = schedule
        self._allow_loopback = allow_loopback

    # --- links and sessions --------------------------------------------------------------------

    def open_link(self, token: str | None) -> PortalPass:
        """The link, if it can still be entered (the page with the Enter button); never uses it."""
        link = self._valid(token, "link")
        if self._access.link_used(link):
            raise refused(AccessProblem.USED)
        return link

    def enter(self, token: str | None, csrf: str | None) -> str:
        """Use the link (once) and return the session cookie's value."""
        link = self._valid(token, "link")
        if not csrf_ok(self._secret(), link.pass_id, csrf):
            raise refused(AccessProblem.INVALID)
        if not self._access.use_link(link):
            raise refused(AccessProblem.USED)
        now = int(self._clock().timestamp())
        session = PortalPass(
            "session", link.affiliate_id, new_pass_id(), min(link.expires_at, now + SESSION_LIFETIME_S), link.epoch
        )
        logger.info("portal entered", extra={"affiliate_id": link.affiliate_id})
        return sign_pass(session, self._secret())

    def session(self, cookie: str | None) -> PortalPass:
        session = self._valid(cookie, "session")
        if self._access.session_ended(session):
            raise refused(AccessProblem.SIGNED_OUT, session=True)
        return session

    def leave(self, session: PortalPass) -> None:
        """Sign out: the session's cookie is refused from now on, wherever it was copied."""
        self._access.end_session(session)
        logger.info("portal left", extra={"affiliate_id": session.affiliate_id})

    def csrf(self, portal_pass: PortalPass) -> str:
        return csrf_token(self._secret(), portal_pass.pass_id)

    def check_csrf(self, portal_pass: PortalPass, token: str | None) -> bool:
        return csrf_ok(self._secret(), portal_pass.pass_id, token)

    def _valid(self, token: str | None, kind: str) -> PortalPass:
        found = read_pass(token, kind, self._secret(), now=self._clock().timestamp())
        if found.epoch != self._access.epoch(found.affiliate_id):
            raise refused(AccessProblem.REVOKED, session=kind == "session")
        return found

    # --- what the affiliate sees ---------------------------------------------------------------

    def stored(self, session: PortalPass) -> StoredAffiliate:
        stored = self._affiliates.get(session.affiliate_id)
        if stored is None:
            raise refused(AccessProblem.REVOKED, session=True)
        return stored

    def overview(self, session: PortalPass, *, state: str | None = None, event: str | None = None) -> Overview:
        """The home page: one read of the delivery log (the newest DELIVERIES_READ, and every
        one of the health row's window) serves the list and the health row."""
        stored = self.stored(session)
        now = self._clock()
        since = now - HEALTH_WINDOW
        records = self._deliveries.created_since(session.affiliate_id, since, at_least=DELIVERIES_READ)
        return Overview(
            stored=stored,
            latest_change=self._changes.latest(session.affiliate_id),
            deliveries=_shown(records[:DELIVERIES_READ], state=state, event=event),
            health=health_row(stored.config, records, self._endpoints.get, since=since, now=now),
        )

    def deliveries(self, session: PortalPass, *, state: str | None, event: str | None) -> list[DeliveryRecord]:
        """The affiliate's postbacks, newest first, of this state and event when given."""
        records = self._deliveries.by_affiliate(session.affiliate_id, limit=DELIVERIES_READ)
        return _shown(records, state=state, event=event)

    # --- changes -------------------------------------------------------------------------------

    def save_postbacks(self, session: PortalPass, edits: Sequence[PostbackEdit]) -> SaveOutcome:
        stored = self.stored(session)
        document, kept = _with_postbacks(dump_config(stored.config), stored.config, edits)
        return self._save(session, stored, document, form_index=kept)

    def save_test_link(self, session: PortalPass, test_link: str) -> SaveOutcome:
        stored = self.stored(session)
        document = dump_config(stored.config)
        document.pop("test_link", None)
        if test_link.strip():
            document["test_link"] = test_link.strip()
        return self._save(session, stored, document, form_index=[])

    def _save(
        self, session: PortalPass, stored: StoredAffiliate, document: dict[str, object], *, form_index: list[int]
    ) -> SaveOutcome:
        if stored.config.portal_mode is SelfService.OFF:
            return SaveOutcome("read_only")
        try:
            config = parse_config(document, allow_loopback=self._allow_loopback)
        except ConfigError as exc:
            return _refusal(exc, form_index)
        if not diff_of(stored.config, config):
            return SaveOutcome("unchanged")
        by = f"affiliate {session.affiliate_id} (portal)"
        if stored.config.portal_mode is SelfService.DIRECT:
            apply_change(
                self._affiliates, self._changes, stored, config, by=by, source=ChangeSource.PORTAL, now=self._clock()
            )
            return SaveOutcome("applied")
        change = submit_change(self._changes, stored, config, by=by, now=self._clock())
        return SaveOutcome("pending", change=change)

    def preview(self, session: PortalPass, edits: Sequence[PostbackEdit]) -> list[PreviewLine]:
        """The URL a sample conversion would produce for each postback of the form, through the
        one render path (domain.postbacks, what ingest queues); a postback the config refuses, or
        that would not be sent, shows its problem instead."""
        stored = self.stored(session)
        document, kept = _with_postbacks(dump_config(stored.config), stored.config, edits)
        try:
            config = parse_config(document, allow_loopback=self._allow_loopback)
        except ConfigError as exc:
            return _refused_lines(exc, kept)
        return [
            self._sample(config, kept[i], spec_index=i, event=event)
            for i, spec in enumerate(config.postbacks)
            for event in spec.events
        ]

    def _sample(self, config: AffiliateConfig, form_index: int, *, spec_index: int, event: Event) -> PreviewLine:
        spec = config.postbacks[spec_index]
        conversion = sample_conversion(config, spec, event, self._clock())
        try:
            (message,) = postback_messages(
                conversion,
                config,
                sample_tracker_values(config),
                created_at=self._clock(),
                allow_loopback=self._allow_loopback,
                postbacks=[(spec_index, spec)],
            )
        except PostbackRefused as exc:
            return PreviewLine(form_index, event.value, None, exc.message)
        return PreviewLine(form_index, event.value, message.url)

    # --- test link -----------------------------------------------------------------------------

    def start_test(self, session: PortalPass) -> str:
        stored = self.stored(session)
        if not stored.config.test_link:
            raise NotFoundError("Add a test link first, then start the test.")
        waits, deadline_s = self._schedule()
        return self._launcher.start(
            session.affiliate_id, f"affiliate {session.affiliate_id} (portal)", waits, deadline_s
        )

    def test_run(self, session: PortalPass, run_id: str) -> TestRun:
        run = self._runs.get(run_id) if run_id else None
        if run is None or run.affiliate_id != session.affiliate_id:
            raise NotFoundError("No such test run.")
        return run

    def run_stopped(self, run: TestRun) -> bool:
        """True when the run has no verdict long after its deadline: its workflow stopped."""
        _, deadline_s = self._schedule()
        deadline = run.started_at + timedelta(seconds=deadline_s)
        return run.verdict is RunVerdict.RUNNING and self._clock() > deadline + STOPPED_AFTER_DEADLINE

    # --- replay --------------------------------------------------------------------------------

    def replay(self, session: PortalPass, delivery_key: str) -> bool:
        """Send one failed postback of the affiliate's again; False when there is none at that key."""
        created, _, delivery_id = delivery_key.partition("#")
        try:
            ref = DeliveryRef(session.affiliate_id, parse_utc(created), delivery_id)
        except ValueError:
            return False
        record = self._deliveries.get(ref) if delivery_id else None
        if record is None or record.state is not DeliveryState.FAILED:
            return False
        return bool(replay_records(self._deliveries, self._queue, [record]))


def _shown(records: Sequence[DeliveryRecord], *, state: str | None, event: str | None) -> list[DeliveryRecord]:
    """Of these postbacks (newest first), those of this state and event when given, as many as
    the page shows."""
    return [
        r for r in records if (not state or r.state.value == state) and (not event or r.message.event.value == event)
    ][:DELIVERIES_SHOWN]


def _with_postbacks(
    document: dict[str, object], config: AffiliateConfig, edits: Sequence[PostbackEdit]
) -> tuple[dict[str, object], list[int]]:
    """The config document with the form's postbacks, and the form index of each one kept."""
    stored = [dump_config_postback(config, i) for i in range(len(config.postbacks))]
    postbacks: list[dict[str, object]] = []
    kept: list[int] = []
    for edit in sorted(edits, key=lambda e: e.index):
        is_new = edit.index >= len(stored)
        if edit.remove or (is_new and not edit.url.strip()):
            continue
        postback = {} if is_new else dict(stored[edit.index])
        postback["url"] = edit.url.strip()
        postback["events"] = list(edit.events)
        offers = [offer.strip() for offer in edit.offers.split(",") if offer.strip()]
        _put(postback, "offers", offers or None)
        if edit.preset is not None:
            # No preset: the URL is a template of one's own, and a click ID field means nothing.
            preset = edit.preset.strip() or None
            _put(postback, "preset", preset)
            _put(postback, "click_id", (edit.click_id or "").strip() or None if preset else None)
        elif edit.click_id is not None:
            _put(postback, "click_id", edit.click_id.strip() or None)
        if edit.statuses is not None:
            words = {event: word.strip() for event, word in edit.statuses.items() if word.strip()}
            _put(postback, "statuses", words or None)
        postbacks.append(postback)
        kept.append(edit.index)
    return {**document, "postbacks": postbacks}, kept


def _put(postback: dict[str, object], key: str, value: object) -> None:
    """Set `key`, or leave it out when `value` is None (the config's default)."""
    if value is None:
        postback.pop(key, None)
    else:
        postback[key] = value


def stored_rows(config: AffiliateConfig) -> list[PostbackEdit]:
    """The form's postbacks as stored, then the blank one for a new postback."""
    rows = [
        PostbackEdit(
            index=i,
            url=spec.url,
            events=tuple(event.value for event in spec.events),
            offers=", ".join(spec.offers or ()),
            preset=spec.preset or "",
            click_id=spec.click_id or "",
            statuses={event.value: word for event, word in (spec.statuses or {}).items()},
        )
        for i, spec in enumerate(config.postbacks)
    ]
    return [*rows, PostbackEdit(index=len(rows), url="", events=(), preset="", click_id="", statuses={})]


def sample_tracker_values(config: AffiliateConfig) -> dict[str, str]:
    """The sample conversion's tracker: each field's name followed by 123 (`clickid123`)."""
    return {name: f"{name}123" for name in config.tracker.fields}


def sample_conversion(config: AffiliateConfig, spec: PostbackSpec, event: Event, now: datetime) -> Conversion:
    """The sample conversion the preview renders: a reversal reverses the sample conversion."""
    reversal = event in REVERSALS
    offer = spec.offers[0] if spec.offers else SAMPLE_OFFER
    return Conversion.model_validate(
        {
            "transaction_id": "sample-0002" if reversal else "sample-0001",
            "event": event.value,
            "offer": {"id": offer, "type": "revshare", "name": "Sample offer"},
            "amount": "25.00",
            "payout": "7.50",
            "currency": "EUR",
            "tracker": "trID_sample_trID",
            "affiliate_id": config.affiliate_id,
            "occurred_at": utc_seconds(now),
            **({"original_transaction_id": "sample-0001"} if reversal else {}),
        }
    )


def preset_hint(name: str) -> str:
    """What a person picking this preset must know (the refusals in `affiliate put`'s words)."""
    preset = PRESETS.get(name)
    if preset is None:
        return (
            "Your own URL template: write the whole URL, with macros such as {transaction_id}, {amount} "
            "or a field of your tracker in braces."
        )
    refusals = [message for event in Event if (message := preset.refusal_message(event)) is not None]
    return " ".join(
        [
            f"{preset.tracker}: give its endpoint as the Postback URL, like {preset.example_endpoint}, and the field "
            f"of your tracker that holds {preset.tracker}'s click ID; the preset writes the query.",
            preset.note,
            *(f"Refused: {message}." for message in refusals),
        ]
    )


def dump_config_postback(config: AffiliateConfig, index: int) -> dict[str, object]:
    return config.postbacks[index].model_dump(mode="json", exclude_none=True)


def _form_field(path: str, form_index: list[int]) -> tuple[str, str]:
    """A config path (`postbacks.0.url`) as the form's field (`pb-2-url`) and as people read it,
    counting the form's postbacks (a removed one does not shift the numbers)."""
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] == "postbacks" and parts[1].isdigit() and int(parts[1]) < len(form_index):
        index = form_index[int(parts[1])]
        parts[1] = str(index)
        leaf = parts[2] if len(parts) > 2 else "url"
        return f"pb-{index}-{leaf}", human_field(".".join(parts))
    if parts[0] == "test_link":
        return "test_link", human_field(path)
    return "", human_field(path)


def _refused_lines(exc: ConfigError, form_index: list[int]) -> list[PreviewLine]:
    """A refused config's problems, each under the form's postback it names (the first one's
    when it names none)."""
    by_index: dict[int, list[str]] = {}
    for path, reason in exc.errors:
        form_field, shown = _form_field(path, form_index)
        index = int(form_field.split("-")[1]) if form_field.startswith("pb-") else (form_index or [0])[0]
        by_index.setdefault(index, []).append(f"{shown}: {reason}")
    return [PreviewLine(index, None, None, "; ".join(problems)) for index, problems in sorted(by_index.items())]


def _refusal(exc: ConfigError, form_index: list[int]) -> SaveOutcome:
    problems: list[str] = []
    fields: dict[str, str] = {}
    for path, reason in exc.errors:
        form_field, shown = _form_field(path, form_index)
        problems.append(f"{shown}: {reason}")
        if form_field:
            fields.setdefault(form_field, reason)
    return SaveOutcome("refused", tuple(problems), fields)


EVENTS = tuple(event.value for event in Event)

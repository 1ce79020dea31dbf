"""The ingest use case over in-memory fakes: resolve, then record each conversion with its
postbacks' messages (the outbox) in one write; no queue, nothing to undo."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes import (
    INGEST_AFFILIATE_ID,
    INGEST_PPS_LINK,
    INGEST_REVSHARE_LINK,
    FakeAffiliateStore,
    FakeConversionLog,
    ingest_config,
    ingest_conversion,
)

from postback_relay.domain.conversion import ConversionOutcome
from postback_relay.domain.delivery import delivery_id_for
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.events import Event
from postback_relay.services.ingest import MAX_MESSAGE_BYTES, IngestService

NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)


class World:
    def __init__(self, *, allow_loopback: bool = False) -> None:
        self.affiliates = FakeAffiliateStore(ingest_config())
        self.log = FakeConversionLog()
        self.service = IngestService(self.affiliates, self.log, clock=lambda: NOW, allow_loopback=allow_loopback)


@pytest.fixture
def world() -> World:
    return World()


def test_revshare_sale_queues_its_postback_with_the_tracker_values(world: World) -> None:
    # GIVEN affiliate 1234567 subscribed to sales, WHEN a revshare sale arrives by link
    report = world.service.ingest([ingest_conversion()])

    # THEN one postback is queued, filled with the tracker's click ID and the exact amount
    (answer,) = report.answers
    assert answer.repeat is False
    assert answer.result.outcome is ConversionOutcome.QUEUED
    assert answer.result.postbacks_queued == 1
    (message,) = world.log.outbox
    query = parse_qs(urlsplit(message.url).query)
    assert query == {"cid": ["c123"], "payout": ["25.00"], "cur": ["EUR"], "ev": ["sale"], "offer": ["89"]}
    assert message.delivery_id == delivery_id_for("T-2026-000123", Event.SALE, INGEST_AFFILIATE_ID, 0)
    assert message.created_at == NOW
    # AND the conversion is recorded with that result
    assert world.log.records["T-2026-000123#sale"][1] == answer.result


def test_pps_conversion_reads_the_affiliate_from_the_tracker(world: World) -> None:
    # GIVEN a PPS offer link whose tracker starts with the affiliate ID
    conversion = ingest_conversion(offer={"id": "66013", "type": "pps"}, link=INGEST_PPS_LINK)

    # WHEN it is ingested
    report = world.service.ingest([conversion])

    # THEN affiliate 1234567's postback is queued for offer 66013
    assert report.answers[0].result.affiliate_id == INGEST_AFFILIATE_ID
    assert "offer=66013" in world.log.outbox[0].url


def test_tracker_instead_of_link_is_accepted(world: World) -> None:
    # GIVEN a revshare conversion sent with its tracker and affiliate_id instead of the link
    conversion = ingest_conversion(link=None, tracker="trID_a1-T9-c999-x_trID", affiliate_id=INGEST_AFFILIATE_ID)

    # WHEN it is ingested, THEN the postback carries that tracker's click ID
    world.service.ingest([conversion])
    assert "cid=c999" in world.log.outbox[0].url


def test_repeat_answers_the_first_result_and_queues_nothing(world: World) -> None:
    # GIVEN a conversion already taken
    first = world.service.ingest([ingest_conversion()]).answers[0]

    # WHEN the platform posts it again
    again = world.service.ingest([ingest_conversion(amount="99.00")]).answers[0]

    # THEN it is a repeat with the first result, and nothing more is queued
    assert again.repeat is True
    assert again.result == first.result
    assert len(world.log.outbox) == 1


def test_same_conversion_twice_in_one_request_counts_once(world: World) -> None:
    # WHEN one request carries the same (transaction_id, event) twice and a rebill of it
    report = world.service.ingest([ingest_conversion(), ingest_conversion(), ingest_conversion(event="rebill")])

    # THEN the second is answered as a repeat of the first, and two postbacks are queued
    assert [a.repeat for a in report.answers] == [False, True, False]
    assert report.answers[1].result == report.answers[0].result
    assert len(world.log.outbox) == 2
    assert world.log.writes == 2


def test_unknown_affiliate_is_recorded_without_postbacks(world: World) -> None:
    # GIVEN a link naming an affiliate without a configuration
    link = ingest_conversion().link
    assert link is not None
    report = world.service.ingest([ingest_conversion(link=link.replace("id=1234567", "id=7654321"))])

    # THEN the outcome says so, it is recorded, and nothing is queued
    result = report.answers[0].result
    assert result.outcome is ConversionOutcome.UNKNOWN_AFFILIATE
    assert result.affiliate_id == "7654321"
    assert result.reason and "7654321" in result.reason
    assert "T-2026-000123#sale" in world.log.records
    assert world.log.outbox == []


def test_unreadable_link_is_an_unknown_affiliate(world: World) -> None:
    # GIVEN a link without the affiliate's `id`
    report = world.service.ingest(
        [ingest_conversion(link="http://www.espace-plus.net/redir/x.php?tracker=trID_a-b-c-d_trID")]
    )

    # THEN it is recorded as unknown_affiliate with the link's problem
    result = report.answers[0].result
    assert result.outcome is ConversionOutcome.UNKNOWN_AFFILIATE
    assert result.error_kind == "bad_link"
    assert world.log.outbox == []


def test_disabled_affiliate_fires_nothing(world: World) -> None:
    # GIVEN the affiliate is disabled
    world.affiliates.set_enabled(INGEST_AFFILIATE_ID, False, updated_by="ops")

    # WHEN a sale arrives, THEN it is recorded as affiliate_disabled
    result = world.service.ingest([ingest_conversion()]).answers[0].result
    assert result.outcome is ConversionOutcome.AFFILIATE_DISABLED
    assert world.log.outbox == []


@pytest.mark.parametrize(
    ("event", "offer_id"),
    [("trial", "89"), ("registration", "90")],
    ids=["event-without-postback", "offer-filtered-out"],
)
def test_event_not_subscribed(world: World, event: str, offer_id: str) -> None:
    # GIVEN no postback for trials, and registrations only for offer 89
    conversion = ingest_conversion(event=event, offer={"id": offer_id, "type": "revshare"})

    # WHEN such a conversion arrives, THEN nothing is queued and the reason says why
    result = world.service.ingest([conversion]).answers[0].result
    assert result.outcome is ConversionOutcome.EVENT_NOT_SUBSCRIBED
    assert result.reason and event in result.reason
    assert world.log.outbox == []


@pytest.mark.parametrize(
    ("tracker", "error_kind"),
    [
        ("trID_a1-#TransID#-c123-x_trID", "placeholder_unfilled"),
        ("trID_a1-T9-c123_trID", "field_count"),
    ],
)
def test_tracker_mismatch_reports_the_trackers_error(world: World, tracker: str, error_kind: str) -> None:
    # GIVEN a tracker that does not fit the affiliate's structure
    conversion = ingest_conversion(link=None, tracker=tracker, affiliate_id=INGEST_AFFILIATE_ID)

    # WHEN it arrives, THEN the outcome is tracker_mismatch with the tracker error's reason
    result = world.service.ingest([conversion]).answers[0].result
    assert result.outcome is ConversionOutcome.TRACKER_MISMATCH
    assert result.error_kind == error_kind
    assert world.log.outbox == []
    assert "T-2026-000123#sale" in world.log.records


def test_pps_tracker_naming_another_affiliate_is_a_mismatch(world: World) -> None:
    # GIVEN a PPS tracker whose prefix is not the affiliate the conversion names
    conversion = ingest_conversion(
        offer={"id": "66013", "type": "pps"}, link=None, tracker="trID_999_a1-T9-c1-x_trID", affiliate_id="1234567"
    )

    # THEN it is a tracker mismatch (affiliate_mismatch)
    result = world.service.ingest([conversion]).answers[0].result
    assert result.outcome is ConversionOutcome.TRACKER_MISMATCH
    assert result.error_kind == "affiliate_mismatch"


def test_link_naming_another_affiliate_than_the_conversion_is_a_mismatch(world: World) -> None:
    # GIVEN a revshare link for 1234567 but the conversion names affiliate 42
    result = world.service.ingest([ingest_conversion(affiliate_id="42")]).answers[0].result

    # THEN nothing is queued: the two disagree
    assert result.outcome is ConversionOutcome.TRACKER_MISMATCH
    assert result.error_kind == "affiliate_mismatch"


def test_rendered_url_to_a_forbidden_address_is_refused_at_send_time() -> None:
    # GIVEN a config pointing at loopback (saved where loopback was allowed) and a service that refuses it
    world = World(allow_loopback=False)
    loopback = ingest_config(postbacks=[{"events": ["sale"], "url": "http://127.0.0.1:9/pb?cid={clickid}"}])
    world.affiliates.put(loopback, expected_version=1, updated_by="test")

    # WHEN a sale arrives, THEN nothing is queued and the outcome says unsafe_url
    result = world.service.ingest([ingest_conversion()]).answers[0].result
    assert result.outcome is ConversionOutcome.TRACKER_MISMATCH
    assert result.error_kind == "unsafe_url"
    assert world.log.outbox == []


def test_each_matching_postback_is_one_message_with_its_config_index(world: World) -> None:
    # GIVEN two postbacks for sales (index 0 and 2), one for registrations (index 1)
    config = ingest_config(
        postbacks=[
            {"events": ["sale"], "url": "https://a.example/s?c={clickid}"},
            {"events": ["registration"], "url": "https://a.example/r?c={clickid}"},
            {
                "events": ["sale"],
                "url": "https://b.example/s?t={transaction_id}",
                "method": "POST",
                "body": "c={clickid}",
            },
        ]
    )
    world.affiliates.put(config, expected_version=1, updated_by="test")

    # WHEN a sale arrives
    result = world.service.ingest([ingest_conversion()]).answers[0].result

    # THEN two messages are queued, their delivery IDs from the config indexes 0 and 2
    assert result.postbacks_queued == 2
    assert [m.delivery_id for m in world.log.outbox] == [
        delivery_id_for("T-2026-000123", Event.SALE, INGEST_AFFILIATE_ID, index) for index in (0, 2)
    ]
    assert world.log.outbox[1].body == "c=c123"
    assert list(result.delivery_ids) == [m.delivery_id for m in world.log.outbox]


def test_log_failure_mid_batch_keeps_what_was_recorded_and_the_retry_takes_the_rest() -> None:
    # GIVEN the conversion log fails on its second write
    world = World()
    world.log.fail_after = 1
    batch = [ingest_conversion(), ingest_conversion(event="rebill")]

    # WHEN a batch of two is ingested, THEN the failure surfaces (503)
    with pytest.raises(InfrastructureError):
        world.service.ingest(batch)
    # AND the first record stays, with its postback in its outbox: there is nothing to undo
    assert set(world.log.records) == {"T-2026-000123#sale"}
    assert [m.event for m in world.log.outbox] == [Event.SALE]

    # WHEN the platform retries once the log is back
    world.log.fail_after = None
    report = world.service.ingest(batch)

    # THEN the sale is a repeat that records nothing more, and the rebill is taken
    assert [a.repeat for a in report.answers] == [True, False]
    assert [m.event for m in world.log.outbox] == [Event.SALE, Event.REBILL]
    assert report.postbacks_queued == 1


def test_each_conversion_is_one_write_carrying_its_messages(world: World) -> None:
    # WHEN 25 distinct sales arrive in one request
    report = world.service.ingest([ingest_conversion(transaction_id=f"T-{n}") for n in range(25)])

    # THEN each was recorded by exactly one write, carrying its postback's message
    assert world.log.writes == 25
    assert len(world.log.outbox) == 25
    assert report.postbacks_queued == 25
    assert len(report.new_conversions) == 25
    assert not report.all_repeats


def test_a_postback_rendering_longer_than_the_limit_fires_nothing_and_says_why() -> None:
    # GIVEN a POST body template repeating the click ID 80 times, and a 250-character click ID:
    # the rendered message would pass the limit (20 postbacks of it would pass DynamoDB's 400 KB)
    world = World()
    body = "&".join(f"c{n}={{clickid}}" for n in range(80))
    spec = {"events": ["sale"], "url": "https://track.acme.example/p", "method": "POST", "body": body}
    world.affiliates.items.clear()
    world.affiliates.put(ingest_config(postbacks=[spec]), expected_version=None, updated_by="test")
    link = INGEST_REVSHARE_LINK.replace("c123", "c" * 250)

    # WHEN a sale arrives with it
    (answer,) = world.service.ingest([ingest_conversion(link=link)]).answers

    # THEN nothing is recorded to queue, and the answer names the cause
    assert MAX_MESSAGE_BYTES < 250 * 80
    assert answer.result.outcome is ConversionOutcome.TRACKER_MISMATCH
    assert answer.result.error_kind == "postback_too_large"
    assert world.log.outbox == []

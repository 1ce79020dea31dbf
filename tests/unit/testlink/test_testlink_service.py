"""The steps of a test-link run, on in-memory ports (contract section 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes import ScriptedHttp
from unit.testlink.testlink_fakes import (
    AFFILIATE_ID,
    NETWORK_HOST,
    NETWORK_LINK,
    START,
    World,
    make_config,
)

from postback_relay.domain.delivery import DeliveryState
from postback_relay.domain.errors import DeliveryTransportError, InfrastructureError, UnsafeUrlError
from postback_relay.domain.events import Event, OfferType
from postback_relay.domain.testrun import DEFAULT_DEADLINE_S, RunVerdict
from postback_relay.services.testlink import (
    DeliveryCheck,
    follow_redirects,
    next_wait_s,
    offer_type_of,
)

TEST_LINK = "https://click.acme.example/c?camp=42"
WAITS = [30, 60, 120]


def follow(script: dict[str, str | int | Exception], start: str = TEST_LINK, max_hops: int = 10) -> tuple:  # type: ignore[type-arg]
    http = ScriptedHttp(script)
    outcome = follow_redirects(start, client=http, network_hosts=[NETWORK_HOST], max_hops=max_hops)
    return outcome, http


# --- following the link -----------------------------------------------------------------------


def test_redirects_are_followed_to_the_network_link_which_is_never_requested() -> None:
    # GIVEN a test link that redirects twice (once relatively) before the network link
    outcome, http = follow(
        {
            TEST_LINK: "https://t.acme.example/r?x=1",
            "https://t.acme.example/r?x=1": "/go?y=2",
            "https://t.acme.example/go?y=2": NETWORK_LINK,
        }
    )
    # THEN the network link is reached, and only the affiliate's hops were requested
    assert outcome.network_link == NETWORK_LINK
    assert outcome.reason is None
    assert http.requested == [TEST_LINK, "https://t.acme.example/r?x=1", "https://t.acme.example/go?y=2"]
    assert [hop.url for hop in outcome.chain][-1] == NETWORK_LINK
    assert outcome.chain[0].status == 302


def test_a_redirect_to_a_private_address_fails_without_calling_it() -> None:
    # GIVEN a test link redirecting to 10.0.0.5
    outcome, http = follow({TEST_LINK: "http://10.0.0.5/admin"})
    # THEN the run fails with the address, which was never requested
    assert outcome.kind == "unsafe_url"
    assert outcome.reason == "the test link redirected to a private address (10.0.0.5)"
    assert http.requested == [TEST_LINK]


def test_a_private_address_in_any_spelling_is_refused() -> None:
    # GIVEN a redirect to the cloud metadata address spelled in decimal
    outcome, _ = follow({TEST_LINK: "http://2852039166/latest/meta-data"})
    # THEN it is named as the link-local address it is
    assert outcome.kind == "unsafe_url"
    assert "169.254.169.254" in (outcome.reason or "")


def test_a_name_resolving_to_a_private_address_is_refused_with_the_clients_reason() -> None:
    # GIVEN a host whose DNS answer the HTTP client refuses
    outcome, _ = follow({TEST_LINK: UnsafeUrlError("click.acme.example resolves to a private address (10.1.2.3)")})
    # THEN the reason carries the client's explanation
    assert outcome.kind == "unsafe_url"
    assert "resolves to a private address (10.1.2.3)" in (outcome.reason or "")
    assert (outcome.reason or "").startswith("the test link points to")


def test_a_redirect_loop_is_detected() -> None:
    # GIVEN A -> B -> A
    b = "https://b.acme.example/"
    outcome, http = follow({TEST_LINK: b, b: TEST_LINK})
    # THEN the loop is named, each URL requested once
    assert outcome.kind == "redirect_loop"
    assert f"{TEST_LINK} -> {b} -> {TEST_LINK}" in (outcome.reason or "")
    assert http.requested == [TEST_LINK, b]


def test_too_many_hops_stop_the_run() -> None:
    # GIVEN an endless chain of distinct redirects
    script: dict[str, str | int | Exception] = {
        f"https://h.acme.example/{n}": f"https://h.acme.example/{n + 1}" for n in range(50)
    }
    outcome, http = follow(script, start="https://h.acme.example/0", max_hops=5)
    # THEN it stops after the hop limit
    assert outcome.kind == "too_many_hops"
    assert len(http.requested) == 5


def test_a_link_that_never_reaches_the_network_fails() -> None:
    # GIVEN a test link answering 200 (a landing page, maybe a JavaScript redirect)
    outcome, _ = follow({TEST_LINK: 200})
    # THEN the reason says where it stopped and that only HTTP redirects count
    assert outcome.kind == "no_network_link"
    assert f"stopped at {TEST_LINK} (HTTP 200)" in (outcome.reason or "")
    assert NETWORK_HOST in (outcome.reason or "")


def test_an_unreachable_hop_fails_with_the_transport_error() -> None:
    # GIVEN a hop that times out
    outcome, _ = follow({TEST_LINK: DeliveryTransportError("timeout", "click.acme.example did not answer in time")})
    # THEN
    assert outcome.kind == "unreachable"
    assert "did not answer in time" in (outcome.reason or "")


def test_follow_link_records_the_chain_on_the_run(world: World) -> None:
    # GIVEN a run
    run_id = world.new_run()
    # WHEN the link is followed
    result = world.service({TEST_LINK: NETWORK_LINK}).follow_link(run_id, AFFILIATE_ID)
    # THEN the step is ok and the run keeps the chain, still running
    assert result.ok and result.network_link == NETWORK_LINK
    run = world.run(run_id)
    assert run.verdict is RunVerdict.RUNNING
    assert run.steps[-1].name == "follow_link" and run.steps[-1].ok
    assert run.steps[-1].details["redirect_chain"][0] == {"url": TEST_LINK, "status": 302, "location": NETWORK_LINK}


def test_follow_link_failure_is_the_verdict(world: World) -> None:
    # GIVEN a run whose test link redirects to a private address
    run_id = world.new_run()
    # WHEN the link is followed
    result = world.service({TEST_LINK: "http://10.0.0.5/"}).follow_link(run_id, AFFILIATE_ID)
    # THEN the run failed at follow_link with the reason
    assert not result.ok
    run = world.run(run_id)
    assert (run.verdict, run.step) == (RunVerdict.FAILED, "follow_link")
    assert run.reason == "the test link redirected to a private address (10.0.0.5)"


def test_an_affiliate_without_test_link_fails_at_once(world: World) -> None:
    # GIVEN an affiliate with no test link
    world.affiliates.items.clear()
    world.affiliates.put(make_config(test_link=None), expected_version=None, updated_by="test")
    run_id = world.new_run()
    # WHEN
    result = world.service().follow_link(run_id, AFFILIATE_ID)
    # THEN
    assert not result.ok
    assert "no test_link" in (world.run(run_id).reason or "")


# --- the tracker ------------------------------------------------------------------------------


def test_offer_type_is_read_from_the_tracker_prefix() -> None:
    pps = "http://www.espace-plus.net/r.php?id_rotation=89&id=66013&e=1&w=0&;tracker=trID_1234567_a-b-c-d_trID"
    assert offer_type_of(pps, AFFILIATE_ID) is OfferType.PPS
    assert offer_type_of(NETWORK_LINK, AFFILIATE_ID) is OfferType.REVSHARE


def test_a_filled_revshare_tracker_passes(world: World) -> None:
    run_id = world.new_run()
    # WHEN the network link's tracker is checked
    result = world.service().check_tracker(run_id, AFFILIATE_ID, NETWORK_LINK)
    # THEN the values are read by the affiliate's structure
    assert result.ok
    assert result.tracker_values == {"affid": "a1", "transid": "T9", "clickid": "c123", "whateverid": "x"}
    assert (result.offer_type, result.offer_id) == (OfferType.REVSHARE, "89")


def test_a_pps_link_reads_the_affiliate_from_the_tracker(world: World) -> None:
    run_id = world.new_run()
    link = "http://www.espace-plus.net/r.php?id_rotation=89&id=66013&e=1&w=0&;tracker=trID_1234567_a1-T9-c1-x_trID"
    result = world.service().check_tracker(run_id, AFFILIATE_ID, link)
    assert result.ok
    assert (result.offer_type, result.offer_id) == (OfferType.PPS, "66013")
    assert result.tracker_values["clickid"] == "c1"


def test_an_unfilled_placeholder_fails_at_the_tracker_step(world: World) -> None:
    run_id = world.new_run()
    link = NETWORK_LINK.replace("c123", "#clickId#")
    # WHEN
    result = world.service().check_tracker(run_id, AFFILIATE_ID, link)
    # THEN the reason names the placeholder
    assert not result.ok
    run = world.run(run_id)
    assert (run.verdict, run.step) == (RunVerdict.FAILED, "check_tracker")
    assert run.reason == "placeholder #clickId# was not filled by your tracker"


def test_another_affiliates_link_fails(world: World) -> None:
    run_id = world.new_run()
    result = world.service().check_tracker(run_id, AFFILIATE_ID, NETWORK_LINK.replace("id=1234567", "id=7654321"))
    assert not result.ok
    assert "affiliate ID 7654321, not 1234567" in (world.run(run_id).reason or "")


def test_a_tracker_with_missing_fields_fails(world: World) -> None:
    run_id = world.new_run()
    result = world.service().check_tracker(run_id, AFFILIATE_ID, NETWORK_LINK.replace("a1-T9-c123-x", "a1-T9"))
    assert not result.ok
    run = world.run(run_id)
    assert run.step == "check_tracker"
    assert "does not match your structure" in (run.reason or "")


# --- firing and checking ----------------------------------------------------------------------

VALUES = {"affid": "a1", "transid": "T9", "clickid": "c123", "whateverid": "x"}


def fire_step(world: World, run_id: str, *, waits: list[int] = WAITS, values: dict[str, str] = VALUES) -> DeliveryCheck:
    return world.service().fire_postbacks(
        run_id,
        AFFILIATE_ID,
        network_link=NETWORK_LINK,
        offer_id="89",
        offer_type=OfferType.REVSHARE,
        tracker_values=values,
        waits=waits,
        deadline_s=DEFAULT_DEADLINE_S,
        started_at=START,
    )


def fire(world: World, run_id: str, *, waits: list[int] = WAITS) -> list[str]:
    check = fire_step(world, run_id, waits=waits)
    assert check.verdict is RunVerdict.RUNNING
    assert check.next_wait_s == waits[0]
    return check.delivery_ids


def test_each_postback_is_fired_once_as_a_test_conversion(world: World) -> None:
    run_id = world.new_run()
    # WHEN the postbacks are fired
    delivery_ids = fire(world, run_id)
    # THEN one message per postback, for its first event, amount 0 EUR, marked as a test
    sent = world.queue.sent
    assert [m.delivery_id for m in sent] == delivery_ids
    assert [m.transaction_id for m in sent] == [f"test-{run_id}-1", f"test-{run_id}-2"]
    assert [m.event for m in sent] == [Event.SALE, Event.REGISTRATION]
    assert sent[0].url == "https://track.acme.example/pb?cid=c123&amount=0"
    assert sent[1].url == "https://track.acme.example/lead?cid=c123&offer=89"
    assert all(m.test_run_id == run_id and m.offer_id == "89" for m in sent)
    assert world.run(run_id).steps[-1].details["postbacks"][0]["url"] == sent[0].url


def test_a_retried_fire_step_addresses_the_same_delivery_items(world: World) -> None:
    # GIVEN a fire step that ran once
    run_id = world.new_run()
    fire(world, run_id)
    first = list(world.queue.sent)
    # WHEN the workflow retries it a minute later
    world.clock.advance(60)
    fire(world, run_id)
    again = world.queue.sent[len(first) :]
    # THEN every message keeps the run's start as its creation time: the same log keys
    assert [m.ref for m in again] == [m.ref for m in first]
    assert {m.created_at for m in first} == {START}
    # AND the step records where each postback is logged
    postbacks = world.run(run_id).steps[-1].details["postbacks"]
    assert [p["created_at"] for p in postbacks] == ["2026-11-25T12:00:00.000Z"] * 2


def test_a_refused_queue_is_an_infrastructure_error_for_the_workflow_to_retry(world: World) -> None:
    run_id = world.new_run()
    world.queue.refuse = lambda message: True
    with pytest.raises(InfrastructureError):
        fire(world, run_id)
    assert world.run(run_id).verdict is RunVerdict.RUNNING


def check(world: World, run_id: str, delivery_ids: list[str], checks: int = 0, summary: str = ""):  # type: ignore[no-untyped-def]
    return world.service().check_delivery(
        run_id,
        affiliate_id=AFFILIATE_ID,
        delivery_ids=delivery_ids,
        checks=checks,
        summary=summary,
        waits=WAITS,
        deadline_s=DEFAULT_DEADLINE_S,
        started_at=START,
    )


def test_delivered_postbacks_pass_the_run(world: World) -> None:
    run_id = world.new_run()
    ids = fire(world, run_id)
    # GIVEN the first delivered, the second still retrying after a 500
    world.deliveries.set(world.queue.sent[0], DeliveryState.DELIVERED, [200])
    world.deliveries.set(world.queue.sent[1], DeliveryState.RETRYING, [500])
    world.clock.advance(30)
    first = check(world, run_id, ids)
    # THEN still running, the next wait the second of the schedule
    assert (first.verdict, first.checks, first.next_wait_s) == (RunVerdict.RUNNING, 1, 60)
    # WHEN the second recovers
    world.deliveries.set(world.queue.sent[1], DeliveryState.DELIVERED, [500, 500, 200])
    world.clock.advance(60)
    second = check(world, run_id, ids, first.checks, first.summary)
    # THEN the run passed
    assert second.verdict is RunVerdict.PASSED
    run = world.run(run_id)
    assert (run.verdict, run.step, run.reason) == (RunVerdict.PASSED, None, None)


def test_a_postback_failed_for_good_fails_the_run(world: World) -> None:
    run_id = world.new_run()
    ids = fire(world, run_id)
    world.deliveries.set(world.queue.sent[0], DeliveryState.FAILED, [404])
    result = check(world, run_id, ids)
    assert result.verdict is RunVerdict.FAILED
    run = world.run(run_id)
    assert run.step == "check_delivery"
    assert (
        "postback 1 (GET https://track.acme.example/pb?cid=c123&amount=0) failed for good: "
        "your server answered 404 on 1 attempt" in (run.reason or "")
    )


def test_an_endpoint_still_failing_at_the_deadline_fails_the_run(world: World) -> None:
    run_id = world.new_run()
    ids = fire(world, run_id)
    world.deliveries.set(world.queue.sent[0], DeliveryState.DELIVERED, [200])
    world.deliveries.set(world.queue.sent[1], DeliveryState.RETRYING, [500] * 6)
    # WHEN the deadline is reached
    world.clock.advance(DEFAULT_DEADLINE_S)
    result = check(world, run_id, ids, checks=9)
    # THEN
    assert result.verdict is RunVerdict.FAILED
    reason = world.run(run_id).reason or ""
    assert reason.startswith("postback 2 (GET https://track.acme.example/lead?cid=c123&offer=89)")
    assert reason.endswith("your server answered 500 on 6 attempts over 35 minutes")


def test_the_deadline_counts_from_the_firing_not_from_following_the_link(world: World) -> None:
    # GIVEN a run whose link took 20 s to follow (unscaled locally) before its postbacks were
    # fired, with a local deadline of 24 s
    run_id = world.new_run()
    world.clock.advance(20)
    fired = world.service().fire_postbacks(
        run_id,
        AFFILIATE_ID,
        network_link=NETWORK_LINK,
        offer_id="89",
        offer_type=OfferType.REVSHARE,
        tracker_values=VALUES,
        waits=[1],
        deadline_s=24,
        started_at=START,
    )
    world.deliveries.set(world.queue.sent[0], DeliveryState.RETRYING, [503, 503])
    world.deliveries.set(world.queue.sent[1], DeliveryState.DELIVERED, [200])

    # WHEN it is checked 10 s after the firing (30 s after the start)
    world.clock.advance(10)
    checked = world.service().check_delivery(
        run_id,
        affiliate_id=AFFILIATE_ID,
        delivery_ids=fired.delivery_ids,
        checks=0,
        summary="",
        waits=[1],
        deadline_s=24,
        started_at=START,
        fired_at=fired.fired_at,
    )

    # THEN the run keeps checking: its third attempt still has 14 s
    assert fired.fired_at == START + timedelta(seconds=20)
    assert (checked.verdict, checked.fired_at) == (RunVerdict.RUNNING, fired.fired_at)


def test_an_unchanged_check_adds_no_step(world: World) -> None:
    run_id = world.new_run()
    ids = fire(world, run_id)
    first = check(world, run_id, ids)
    steps = len(world.run(run_id).steps)
    second = check(world, run_id, ids, first.checks, first.summary)
    assert second.verdict is RunVerdict.RUNNING
    assert len(world.run(run_id).steps) == steps


def test_the_first_verdict_stands(world: World) -> None:
    run_id = world.new_run()
    ids = fire(world, run_id)
    world.deliveries.set(world.queue.sent[0], DeliveryState.FAILED, [404])
    check(world, run_id, ids)
    # WHEN a crash is recorded afterwards
    world.service().record_verdict(run_id, failed_step="check_delivery", error="States.Timeout", cause="")
    # THEN the first verdict's reason is kept
    assert "failed for good" in (world.run(run_id).reason or "")


def test_a_crash_becomes_a_verdict_with_the_step_and_the_error_message(world: World) -> None:
    run_id = world.new_run()
    world.service().record_verdict(
        run_id,
        failed_step="fire_postbacks",
        error="InfrastructureError",
        cause='{"errorMessage": "the postback queue refused 2 of 2", "errorType": "InfrastructureError"}',
    )
    run = world.run(run_id)
    assert (run.verdict, run.step) == (RunVerdict.FAILED, "fire_postbacks")
    assert run.reason == (
        "the fire_postbacks step could not complete (InfrastructureError): the postback queue refused 2 of 2"
    )


@pytest.mark.parametrize(
    ("checks", "remaining", "expected"),
    [(0, 1000, 30), (1, 1000, 60), (2, 1000, 120), (7, 1000, 120), (1, 10.2, 11), (1, 0, 0), (0, -5, 0)],
)
def test_waits_grow_and_never_pass_the_deadline(checks: int, remaining: float, expected: int) -> None:
    assert next_wait_s(WAITS, checks, remaining) == expected


def test_the_fire_step_renders_through_ingests_path_with_payout_zero(world: World) -> None:
    # GIVEN a postback that sends {payout} and {status}
    world.affiliates.put(
        make_config(
            postbacks=[
                {
                    "events": ["sale"],
                    "url": "https://track.acme.example/pb?cid={clickid}&p={payout}&st={status}",
                    "statuses": {"sale": "approved"},
                }
            ]
        ),
        expected_version=1,
        updated_by="ops",
    )
    # WHEN the postbacks are fired, THEN the payout is 0 and the status is the tracker's word
    fire(world, world.new_run())
    assert world.queue.sent[0].url == "https://track.acme.example/pb?cid=c123&p=0&st=approved"


def test_a_postback_ingest_would_refuse_fails_the_fire_step_with_ingests_reason(world: World) -> None:
    # GIVEN a tracker value so long that the rendered URL is longer than any URL ingest calls
    run_id = world.new_run()
    huge = {**VALUES, "clickid": "c" * 3000}
    # WHEN the postbacks are fired
    check = fire_step(world, run_id, values=huge)
    # THEN nothing is queued and the run fails at this step, saying why as ingest would
    assert check.verdict is RunVerdict.FAILED
    assert world.queue.sent == []
    run = world.run(run_id)
    assert run.step == "fire_postbacks"
    assert "Postback 1 renders to a URL that may not be called" in (run.reason or "")
    assert "longer than 2048 characters" in (run.reason or "")


def test_a_reversal_postback_is_fired_with_a_test_original(world: World) -> None:
    # GIVEN a postback that takes only chargebacks and sends the original's ID
    world.affiliates.put(
        make_config(
            postbacks=[
                {
                    "events": ["chargeback"],
                    "url": "https://track.acme.example/pb?cid={clickid}&st={status}&orig={original_transaction_id}",
                }
            ]
        ),
        expected_version=1,
        updated_by="ops",
    )
    # WHEN the postbacks are fired
    run_id = world.new_run()
    check = fire_step(world, run_id)
    # THEN the step completes and the postback names a made-up original of the test's own
    assert check.verdict is not RunVerdict.FAILED, world.run(run_id).reason
    [sent] = world.queue.sent
    assert sent.url == f"https://track.acme.example/pb?cid=c123&st=chargeback&orig=test-{run_id}-1-original"

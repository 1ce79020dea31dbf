"""The portal's service: links used once, sessions of one affiliate, changes as
`self_service` says, nothing of another affiliate's whatever the request names."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes.cli import RUN_ID
from fakes.deliveries import message
from unit.portal.portal_support import NOW, A, B, Portal, build_portal

from postback_relay.domain.changes import ChangeState
from postback_relay.domain.config import SelfService
from postback_relay.domain.delivery import DeliveryState
from postback_relay.domain.errors import NotFoundError, PortalAccessError
from postback_relay.domain.testrun import TestRun
from postback_relay.services.portal import PostbackEdit

URL = "https://track.acme.example/postback?cid={clickid}&ev={event}&sum={amount}"


def edits(url: str = URL, events: tuple[str, ...] = ("sale", "rebill")) -> list[PostbackEdit]:
    """The form as the page sends it: postback 1 edited, postback 2 as stored, the blank new one."""
    return [
        PostbackEdit(0, url, events),
        PostbackEdit(1, "https://track.acme.example/lead?cid={clickid}", ("registration",), "89"),
        PostbackEdit(2, "", ()),
    ]


def test_a_link_opens_without_being_used_and_enters_once(portal: Portal) -> None:
    # GIVEN a fresh link
    link, token = portal.link()
    # WHEN it is opened twice (a mail scanner, then the affiliate) and entered
    portal.service.open_link(token)
    portal.service.open_link(token)
    cookie = portal.service.enter(token, portal.service.csrf(link))
    # THEN the session is the link's affiliate's, and the link cannot be entered or opened again
    assert portal.service.session(cookie).affiliate_id == A
    with pytest.raises(PortalAccessError) as entered:
        portal.service.enter(token, portal.service.csrf(link))
    assert entered.value.problem == "used"
    with pytest.raises(PortalAccessError) as opened:
        portal.service.open_link(token)
    assert opened.value.problem == "used"


def test_an_expired_link_and_a_tampered_one_are_refused(portal: Portal) -> None:
    # GIVEN a link of one hour, and the same link with another affiliate written in
    _, token = portal.link(lifetime=timedelta(hours=1))
    mac = token.split(".")[1]
    _, other = portal.link(B)
    forged = f"{other.split('.')[0]}.{mac}"
    # WHEN two hours pass
    portal.clock.now += 7200
    # THEN the link is expired, the forgery invalid
    with pytest.raises(PortalAccessError) as expired:
        portal.service.open_link(token)
    assert expired.value.problem == "expired"
    with pytest.raises(PortalAccessError) as invalid:
        portal.service.open_link(forged)
    assert invalid.value.problem == "invalid"


def test_revoking_ends_links_and_sessions_and_later_links_work(portal: Portal) -> None:
    # GIVEN a session and an unused link
    session_cookie = portal.service.enter(*_token_and_csrf(portal))
    _, unused = portal.link()
    # WHEN ops revoke the affiliate's access
    portal.store.revoke(A)
    # THEN both are refused as revoked, and a new link enters
    with pytest.raises(PortalAccessError) as session_refused:
        portal.service.session(session_cookie)
    with pytest.raises(PortalAccessError) as link_refused:
        portal.service.open_link(unused)
    assert session_refused.value.problem == link_refused.value.problem == "revoked"
    assert portal.session().affiliate_id == A


def _token_and_csrf(portal: Portal) -> tuple[str, str]:
    link, token = portal.link()
    return token, portal.service.csrf(link)


def test_entering_needs_the_link_pages_csrf_token(portal: Portal) -> None:
    _, token = portal.link()
    with pytest.raises(PortalAccessError):
        portal.service.enter(token, "not-the-token")


def test_a_change_waits_for_approval_by_default_and_the_stored_config_is_unchanged(portal: Portal) -> None:
    # GIVEN affiliate A's session (self_service left out: approve)
    session = portal.session()
    # WHEN it saves a new URL for postback 1
    outcome = portal.service.save_postbacks(session, edits())
    # THEN the change is pending with a readable diff, and the config is as it was
    assert outcome.state == "pending" and outcome.change is not None
    assert "+ postback 1, url: " + URL in outcome.change.diff
    assert portal.affiliates.get(A).config.postbacks[0].url != URL  # type: ignore[union-attr]
    assert portal.service.overview(session).latest_change.state is ChangeState.PENDING  # type: ignore[union-attr]


def test_direct_applies_at_once_and_records_history() -> None:
    portal = build_portal(SelfService.DIRECT)
    outcome = portal.service.save_postbacks(portal.session(), edits())
    assert outcome.state == "applied"
    stored = portal.affiliates.get(A)
    assert stored is not None and stored.config.postbacks[0].url == URL
    (entry,) = portal.store.history(A)
    assert entry.source.value == "portal" and URL in entry.diff


def test_off_is_read_only() -> None:
    portal = build_portal(SelfService.OFF)
    assert portal.service.save_postbacks(portal.session(), edits()).state == "read_only"
    assert portal.store.listed() == []


def test_a_refused_change_names_the_form_fields_in_the_words_of_affiliate_put(portal: Portal) -> None:
    # GIVEN a form whose postback 1 has no event and whose new postback (the form's third) a URL
    # that is not http(s), while its postback 2 is removed
    form = [
        PostbackEdit(0, URL, ()),
        PostbackEdit(1, "https://track.acme.example/lead", ("registration",), remove=True),
        PostbackEdit(2, "ftp://track.acme.example/x", ("sale",)),
    ]
    # WHEN it is saved
    outcome = portal.service.save_postbacks(portal.session(), form)
    # THEN nothing is submitted, and each problem is named as `affiliate put` names it, counted
    # as the form counts its postbacks (the removed one does not shift the third)
    assert outcome.state == "refused"
    assert any(p.startswith("postback 1, events: at least one event is needed") for p in outcome.problems)
    assert any(p.startswith("postback 3, url: ") for p in outcome.problems)
    assert set(outcome.fields) == {"pb-0-events", "pb-2-url"}
    assert portal.store.listed() == []


def test_the_preview_renders_a_sample_conversion_of_each_event_of_each_postback(portal: Portal) -> None:
    lines = portal.service.preview(portal.session(), edits())
    assert [(line.index, line.event, line.url) for line in lines] == [
        (0, "sale", "https://track.acme.example/postback?cid=clickid123&ev=sale&sum=25.00"),
        (0, "rebill", "https://track.acme.example/postback?cid=clickid123&ev=rebill&sum=25.00"),
        (1, "registration", "https://track.acme.example/lead?cid=clickid123"),
    ]


def test_a_session_of_a_sees_only_as_deliveries_and_cannot_replay_bs(portal: Portal) -> None:
    # GIVEN affiliate A's session, and B's failed postback d3
    session = portal.session(A)
    b_failed = portal.deliveries.records["d3"]
    # WHEN A lists its deliveries and asks to replay B's by B's key
    listed = portal.service.deliveries(session, state=None, event=None)
    replayed = portal.service.replay(session, b_failed.ref.sort_key)
    # THEN A sees its own two, newest first, and B's stays failed, unqueued
    assert [r.delivery_id for r in listed] == ["d2", "d1"]
    assert replayed is False and portal.queue.sent == []
    assert portal.deliveries.records["d3"].state.value == "failed"


def test_replay_of_its_own_failed_postback(portal: Portal) -> None:
    session = portal.session(A)
    assert portal.service.replay(session, portal.deliveries.records["d1"].ref.sort_key) is True
    assert [m.delivery_id for m in portal.queue.sent] == ["d1"]
    assert portal.service.replay(session, "garbage#x") is False


def test_deliveries_filter_by_state_and_event(portal: Portal) -> None:
    session = portal.session(A)
    assert [r.delivery_id for r in portal.service.deliveries(session, state="failed", event=None)] == ["d1"]
    assert portal.service.deliveries(session, state=None, event="rebill") == []


def test_a_test_run_is_started_for_the_session_and_another_affiliates_run_is_not_found(portal: Portal) -> None:
    session = portal.session(A)
    assert portal.service.start_test(session) == RUN_ID
    assert portal.launcher.started == [(A, f"affiliate {A} (portal)", [1, 2], 30)]
    portal.runs.create(TestRun(run_id="b-run", affiliate_id=B, started_by="ops", started_at=portal.clock.at()))
    with pytest.raises(NotFoundError):
        portal.service.test_run(session, "b-run")


def test_health_is_the_affiliates_own_row(portal: Portal) -> None:
    health = portal.service.overview(portal.session(A)).health
    assert (health.affiliate_id, health.failed, health.delivered) == (A, 1, 1)


def test_the_home_page_reads_the_delivery_log_once_for_its_list_and_its_health_row(portal: Portal) -> None:
    # GIVEN affiliate A's two postbacks of the last hour, and one of two days ago
    old = message(4, affiliate_id=A, created_at=NOW - timedelta(days=2))
    portal.deliveries.set(old, DeliveryState.FAILED, [500])
    # WHEN A's home page is built
    home = portal.service.overview(portal.session(A))
    # THEN the log was read once, for A alone (on DynamoDB a Query of each of its partitions)
    assert portal.deliveries.listings == [A]
    # AND the list shows the old postback too, while the health row counts the last 24 hours
    assert [r.delivery_id for r in home.deliveries] == ["d2", "d1", "d4"]
    assert (home.health.failed, home.health.delivered) == (1, 1)

"""The portal's HTTP face: pages, the cookie, CSRF, the security headers, and no 5xx for
anything a browser (or anyone) sends."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.portal.portal_support import A, B, Portal

import portal_handler
from postback_ops.local.lambda_router import LocalLambdaContext
from postback_relay.domain.testrun import TestRun

PAGES_WITHOUT_SESSION = ["/portal", "/portal/link", "/portal/home", "/portal/test", "/portal/nowhere"]


def event(
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    form: Any = None,
    cookie: str | None = None,
    https: bool = False,
) -> dict[str, Any]:
    headers = {"host": "portal.example", "x-forwarded-proto": "https" if https else "http"}
    built: dict[str, Any] = {
        "version": "2.0",
        "rawPath": path,
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"},
        "isBase64Encoded": False,
    }
    if query:
        built["queryStringParameters"] = query
    if form is not None:
        built["body"] = form if isinstance(form, str) else urlencode(form, doseq=True)
        headers["content-type"] = "application/x-www-form-urlencoded"
    if cookie:
        built["cookies"] = [f"portal_session={cookie}"]
    return built


def call(portal: Portal, built: dict[str, Any]) -> dict[str, Any]:
    context = LocalLambdaContext("portal")
    answer: dict[str, Any] = portal_handler.lambda_handler(built, context, service=portal.service)  # type: ignore[arg-type]
    return answer


def entered(portal: Portal, affiliate_id: str = A) -> str:
    link, token = portal.link(affiliate_id)
    return portal.service.enter(token, portal.service.csrf(link))


def test_every_page_sends_the_csp_and_security_headers(portal: Portal) -> None:
    cookie = entered(portal)
    answers = [call(portal, event("GET", path)) for path in PAGES_WITHOUT_SESSION]
    answers += [call(portal, event("GET", "/portal/home", cookie=cookie))]
    answers += [call(portal, event("GET", "/portal/link", query={"t": portal.link()[1]}))]
    for answer in answers:
        headers = answer["headers"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "<script>" not in answer["body"]  # no inline script
    assert [a["statusCode"] for a in answers] == [200, 403, 403, 403, 404, 200, 200]


def test_the_link_page_shows_enter_and_entering_sets_a_strict_cookie(portal: Portal) -> None:
    link, token = portal.link()
    page = call(portal, event("GET", "/portal/link", query={"t": token}))
    assert page["statusCode"] == 200 and ">Enter</button>" in page["body"]
    for https in (False, True):
        link, token = portal.link()
        answer = call(
            portal, event("POST", "/portal/enter", form={"t": token, "csrf": portal.service.csrf(link)}, https=https)
        )
        assert answer["statusCode"] == 303 and answer["headers"]["Location"] == "/portal/home"
        (cookie,) = answer["cookies"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/portal" in cookie
        assert ("Secure" in cookie) is https


def test_used_expired_and_revoked_links_each_get_their_page(portal: Portal) -> None:
    link, token = portal.link()
    call(portal, event("POST", "/portal/enter", form={"t": token, "csrf": portal.service.csrf(link)}))
    used = call(portal, event("GET", "/portal/link", query={"t": token}))
    assert used["statusCode"] == 403 and "already been used" in used["body"]
    _, revoked_token = portal.link()
    portal.store.revoke(A)
    revoked = call(portal, event("GET", "/portal/link", query={"t": revoked_token}))
    assert "has been revoked" in revoked["body"]
    _, expiring = portal.link()
    portal.clock.now += 8 * 86400
    expired = call(portal, event("GET", "/portal/link", query={"t": expiring}))
    assert "has expired" in expired["body"] and "Enter" not in expired["body"]


def test_a_state_change_without_the_csrf_token_is_refused_and_changes_nothing(portal: Portal) -> None:
    cookie = entered(portal)
    form = {"count": "1", "pb-0-url": "https://evil.example/x", "pb-0-events": "sale"}
    for path in ("/portal/postbacks", "/portal/test-link", "/portal/tests", "/portal/replay"):
        answer = call(
            portal, event("POST", path, form={**form, "key": "x", "test_link": "https://x.example"}, cookie=cookie)
        )
        assert answer["statusCode"] == 403, path
    assert portal.store.listed() == [] and portal.launcher.started == [] and portal.queue.sent == []


def test_a_session_of_a_gets_nothing_of_b_by_any_parameter(portal: Portal) -> None:
    # GIVEN A's session, B's test run and B's failed postback
    cookie = entered(portal, A)
    portal.runs.create(TestRun(run_id="b-run", affiliate_id=B, started_by="ops", started_at=portal.clock.at()))
    b_key = portal.deliveries.records["d3"].ref.sort_key
    csrf = portal.service.csrf(portal.service.session(cookie))
    # WHEN A asks for B's things by every parameter the portal reads
    answers = [
        call(portal, event("GET", "/portal/home", query={"affiliate_id": B, "affiliate": B, "id": B}, cookie=cookie)),
        call(portal, event("GET", "/portal/test", query={"run": "b-run"}, cookie=cookie)),
        call(
            portal, event("POST", "/portal/replay", form={"csrf": csrf, "key": b_key, "affiliate_id": B}, cookie=cookie)
        ),
    ]
    # THEN nothing of B's shows, and B's postback is not replayed
    for answer in answers:
        assert B not in answer["body"] and "T-3" not in answer["body"]
    assert answers[1]["statusCode"] == 404
    assert portal.queue.sent == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(
        [
            "/portal/enter",
            "/portal/postbacks",
            "/portal/preview",
            "/portal/test-link",
            "/portal/tests",
            "/portal/replay",
            "/portal/leave",
        ]
    ),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "t",
                "csrf",
                "count",
                "key",
                "test_link",
                "pb-0-url",
                "pb-0-events",
                "pb-0-offers",
                "pb-0-remove",
                "pb-1-url",
                "state",
                "event",
            ]
        )
        | st.text(max_size=20),
        st.text(max_size=200) | st.sampled_from(["999", "1", "sale", "https://x.example/{clickid}", "#", "%"]),
        max_size=8,
    ),
    raw=st.text(max_size=300) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    with_csrf=st.booleans(),
)
def test_fuzzed_forms_never_get_a_5xx(
    portal: Portal, path: str, fields: dict[str, str], raw: str, with_csrf: bool
) -> None:
    cookie = entered(portal)
    if with_csrf:
        fields["csrf"] = portal.service.csrf(portal.service.session(cookie))
    for body in (urlencode(fields), raw):
        answer = call(portal, event("POST", path, form=body, cookie=cookie))
        assert answer["statusCode"] < 500, (path, body, answer["body"][:300])


def test_a_run_without_a_verdict_long_past_its_deadline_says_the_test_stopped(portal: Portal) -> None:
    # GIVEN a run of A's that is still `running` (schedule: deadline 30 s), on the test page
    cookie = entered(portal)
    portal.runs.create(TestRun(run_id="a-run", affiliate_id=A, started_by="portal", started_at=portal.clock.at()))
    shown = event("GET", "/portal/test", query={"run": "a-run"}, cookie=cookie)
    before = call(portal, shown)["body"]
    # WHEN its deadline and the 30 minutes after it pass without a verdict (its workflow died)
    portal.clock.now += 30 + 30 * 60 + 1
    after = call(portal, shown)["body"]
    # THEN the page stops saying `running`, says the test stopped, and offers to start it again
    assert "<strong>running</strong>" in before and 'id="running"' in before and "no verdict" not in before
    assert "<strong>no verdict</strong>: the test stopped; start it again or contact us." in after
    assert "<strong>running</strong>" not in after and 'id="running"' not in after
    assert 'action="/portal/tests"' in after


def test_after_sign_out_a_copied_session_cookie_is_refused(portal: Portal) -> None:
    # GIVEN A's session, its cookie copied elsewhere
    cookie = entered(portal)
    copied = event("GET", "/portal/home", cookie=cookie)
    assert call(portal, copied)["statusCode"] == 200
    # WHEN the affiliate signs out
    csrf = portal.service.csrf(portal.service.session(cookie))
    left = call(portal, event("POST", "/portal/leave", form={"csrf": csrf}, cookie=cookie))
    # THEN the browser's cookie is cleared, and the copy is refused on every page, saying so
    assert left["statusCode"] == 200 and any("Max-Age=0" in c for c in left["cookies"])
    for path in ("/portal/home", "/portal/test"):
        refused = call(portal, event("GET", path, query={"run": "x"}, cookie=cookie))
        assert refused["statusCode"] == 403 and "You have signed out" in refused["body"], path
    assert call(portal, event("POST", "/portal/postbacks", form={"csrf": csrf}, cookie=cookie))["statusCode"] == 403
    # AND another session of the same affiliate is not ended by it
    assert call(portal, event("GET", "/portal/home", cookie=entered(portal)))["statusCode"] == 200

"""The affiliate's portal (contract section 7), under `{api}/portal/`, HTTP API payload v2.

A link's page (GET, never uses the link) shows an Enter button; entering (POST) uses the link
once and sets a session cookie for that one affiliate. Every other page reads the session;
every form carries a CSRF token. The plumbing (request, answers, headers, cookie, secret,
pages) is in portal_web; the service is built by postback_relay.wiring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from portal_web import (
    PREFIX,
    Answer,
    FormTooLarge,
    PortalRequest,
    json_answer,
    logger,
    message_page,
    page,
    portal_secret,
    redirect,
    session_cookie,
    static_answer,
)
from postback_relay import wiring
from postback_relay.settings import PortalSettings, settings_from_environ

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from postback_relay.domain.portal import PortalPass
    from postback_relay.services.portal import PortalService, PostbackEdit, SaveOutcome

DELIVERY_STATES = ("pending", "retrying", "delivered", "failed")


def load_settings(environ: Mapping[str, str]) -> PortalSettings:
    return settings_from_environ(PortalSettings, environ, function="portal")


settings = load_settings(os.environ)
clock = time.time


def _portal_service() -> PortalService:
    # Built on the first request, from the environment read again then: the local stack learns
    # its state machine's ARN and its test-link deadline after its functions are imported.
    settings = load_settings(os.environ)
    return wiring.portal_service(
        settings, secret=lambda: portal_secret(settings.portal_secret_name), clock=lambda: clock()
    )


portal_service = wiring.OnFirstUse(_portal_service)


# --- the link and the session --------------------------------------------------------------------


def link_page(request: PortalRequest, service: PortalService) -> Answer:
    token = request.query.get("t", "")
    link = service.open_link(token)
    return page(200, "link.html", token=token, csrf=service.csrf(link), affiliate_id=link.affiliate_id)


def enter(request: PortalRequest, service: PortalService) -> Answer:
    value = service.enter(request.field("t"), request.field("csrf"))
    session = service.session(value)
    cookie = session_cookie(value, max_age_s=session.expires_at - int(clock()), https=request.https)
    return redirect(f"{PREFIX}/home", cookies=[cookie])


def leave(request: PortalRequest, service: PortalService) -> Answer:
    """Sign out: the session ends on the server (a copied cookie is refused too), the cookie is cleared."""
    service.leave(_checked_session(request, service))
    cookie = session_cookie("", max_age_s=0, https=request.https)
    return Answer(200, page(200, "message.html", title="Signed out", message="You have left the portal.").body,
                  cookies=[cookie])  # fmt: skip


def _session(request: PortalRequest, service: PortalService) -> PortalPass:
    from postback_relay.domain.portal import AccessProblem, refused

    cookie = request.cookies.get("portal_session")
    if not cookie:
        raise refused(AccessProblem.INVALID, session=True)
    return service.session(cookie)


class CsrfRefused(Exception):
    """A state change without the session's CSRF token."""


def _checked_session(request: PortalRequest, service: PortalService) -> PortalPass:
    session = _session(request, service)
    if not service.check_csrf(session, request.field("csrf")):
        raise CsrfRefused
    return session


# --- the affiliate's page --------------------------------------------------------------------------


def home(request: PortalRequest, service: PortalService, *, outcome: SaveOutcome | None = None,
         status: int = 200, section: str = "", form: list[PostbackEdit] | None = None,
         test_link: str | None = None) -> Answer:  # fmt: skip
    from postback_relay.domain.presets import PRESETS
    from postback_relay.services.portal import EVENTS, preset_hint, stored_rows

    session = _session(request, service)
    state = request.query.get("state", "")
    event = request.query.get("event", "")
    state = state if state in DELIVERY_STATES else ""
    event = event if event in EVENTS else ""
    overview = service.overview(session, state=state, event=event)
    return page(
        status,
        "home.html",
        overview=overview,
        config=overview.stored.config,
        csrf=service.csrf(session),
        events=EVENTS,
        states=DELIVERY_STATES,
        state=state,
        event=event,
        outcome=outcome,
        section=section,
        rows=form or stored_rows(overview.stored.config),
        stored_count=len(overview.stored.config.postbacks),
        presets=list(PRESETS.values()),
        hints={name: preset_hint(name) for name in ["", *PRESETS]},
        test_link=overview.stored.config.test_link if test_link is None else test_link,
        notice=request.query.get("notice", ""),
    )


def _edits(request: PortalRequest) -> list[PostbackEdit]:
    from postback_relay.services.portal import PostbackEdit

    count = min(_int(request.field("count")), 21)
    return [
        PostbackEdit(
            index=i,
            url=request.field(f"pb-{i}-url"),
            events=tuple(request.fields(f"pb-{i}-events")),
            offers=request.field(f"pb-{i}-offers"),
            remove=bool(request.field(f"pb-{i}-remove")),
            preset=request.optional(f"pb-{i}-preset"),
            click_id=request.optional(f"pb-{i}-click_id"),
            statuses=_statuses(request, i),
        )
        for i in range(count)
    ]


def _statuses(request: PortalRequest, index: int) -> dict[str, str] | None:
    """Postback `index`'s status words as the form sent them (None: the form has none)."""
    from postback_relay.services.portal import EVENTS

    sent = {event: request.optional(f"pb-{index}-status-{event}") for event in EVENTS}
    if all(word is None for word in sent.values()):
        return None
    return {event: word or "" for event, word in sent.items()}


def _int(text: str) -> int:
    return int(text) if text.isdigit() and len(text) < 4 else 0


def save_postbacks(request: PortalRequest, service: PortalService) -> Answer:
    session = _checked_session(request, service)
    edits = _edits(request)
    outcome = service.save_postbacks(session, edits)
    if outcome.state == "refused":
        return home(request, service, outcome=outcome, status=400, section="postbacks", form=edits)
    return redirect(f"{PREFIX}/home?notice={outcome.state}#postbacks")


def save_test_link(request: PortalRequest, service: PortalService) -> Answer:
    session = _checked_session(request, service)
    value = request.field("test_link")
    outcome = service.save_test_link(session, value)
    if outcome.state == "refused":
        return home(request, service, outcome=outcome, status=400, section="test-link", test_link=value)
    return redirect(f"{PREFIX}/home?notice={outcome.state}#test-link")


def preview(request: PortalRequest, service: PortalService) -> Answer:
    session = _checked_session(request, service)
    lines = service.preview(session, _edits(request))
    return json_answer(200, [{"index": p.index, "event": p.event, "url": p.url, "problem": p.problem} for p in lines])


def start_test(request: PortalRequest, service: PortalService) -> Answer:
    session = _checked_session(request, service)
    run_id = service.start_test(session)
    return redirect(f"{PREFIX}/test?run={run_id}")


def test_page(request: PortalRequest, service: PortalService) -> Answer:
    session = _session(request, service)
    run = service.test_run(session, request.query.get("run", ""))
    return page(200, "test.html", run=run, stopped=service.run_stopped(run), csrf=service.csrf(session))


def replay(request: PortalRequest, service: PortalService) -> Answer:
    session = _checked_session(request, service)
    done = service.replay(session, request.field("key"))
    return redirect(f"{PREFIX}/home?notice={'replayed' if done else 'not_replayed'}#deliveries")


def front(request: PortalRequest, service: PortalService) -> Answer:
    if request.cookies.get("portal_session"):
        return redirect(f"{PREFIX}/home")
    return message_page(200, "Affiliate portal", "Open the portal from the link your contact at the network sent you.")


ROUTES: dict[tuple[str, str], Any] = {
    ("GET", PREFIX): front,
    ("GET", f"{PREFIX}/link"): link_page,
    ("POST", f"{PREFIX}/enter"): enter,
    ("POST", f"{PREFIX}/leave"): leave,
    ("GET", f"{PREFIX}/home"): home,
    ("POST", f"{PREFIX}/postbacks"): save_postbacks,
    ("POST", f"{PREFIX}/preview"): preview,
    ("POST", f"{PREFIX}/test-link"): save_test_link,
    ("POST", f"{PREFIX}/tests"): start_test,
    ("GET", f"{PREFIX}/test"): test_page,
    ("POST", f"{PREFIX}/replay"): replay,
}


def answer(request: PortalRequest, service: PortalService) -> Answer:
    """The route's answer, or the page that says why there is none."""
    if request.method == "GET" and request.path.startswith(f"{PREFIX}/static/"):
        found = static_answer(request.path.removeprefix(f"{PREFIX}/static/"))
        return found or message_page(404, "Not found", "There is no such page.")
    route = ROUTES.get((request.method, request.path))
    if route is None:
        return message_page(404, "Not found", "There is no such page.")
    try:
        return route(request, service)  # type: ignore[no-any-return]
    except Exception as exc:
        refusal = refusal_page(exc)
        if refusal is None:
            raise
        return refusal


def refusal_page(exc: Exception) -> Answer | None:
    """The page for an expected failure (None for any other: a fault, a 500 and its traceback)."""
    from postback_relay.domain.errors import DomainError, NotFoundError, PortalAccessError

    if isinstance(exc, PortalAccessError):
        return message_page(403, "No access", exc.message)
    if isinstance(exc, CsrfRefused):
        return message_page(403, "Form refused", "This form has expired. Reload the page and try again.")
    if isinstance(exc, FormTooLarge):
        return message_page(413, "Too large", "The form is too large.")
    if isinstance(exc, NotFoundError):
        return message_page(404, "Not found", exc.message)
    if isinstance(exc, DomainError):
        logger.warning("portal request failed", extra={"kind": exc.kind, "reason": exc.message})
        return message_page(503, "Unavailable", "The portal cannot do this right now. Try again in a minute.")
    return None


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: PortalService | None = None
) -> dict[str, Any]:
    """`service`: the portal service to use instead of the function's own (tests, the bench)."""
    request = PortalRequest(event)
    return answer(request, service or portal_service()).to_payload()

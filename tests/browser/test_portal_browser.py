"""The affiliate's portal in a real browser (Debian's Chromium, headless), on the local stack:
enter by a link, edit a postback with its live preview, save (pending), approved with the
config script, then a conversion fires the new URL; a test run to `passed` with its steps; a
failed postback replayed from the page; expired, revoked and used links each on their page."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from browser.browser_support import Cli, enter, expired_url, onboard, portal_url, rows
from e2e.e2e_support import LocalStackProcess, eventually
from e2e.test_local_stack import revshare_link
from playwright.sync_api import Browser, Page, Response, expect

from postback_ops.local.conversions import post_conversions
from postback_ops.local.receiver import Receiver

pytestmark = pytest.mark.browser
SECRET = "local-dev-secret"


def sale(transaction_id: str, affiliate_id: str) -> dict[str, object]:
    return {
        "transaction_id": transaction_id,
        "event": "sale",
        "offer": {"id": "89", "type": "revshare", "name": "Browser offer"},
        "amount": "25.00",
        "currency": "EUR",
        "link": revshare_link(affiliate_id, f"a1-T9-c{transaction_id}-x"),
        "occurred_at": "2026-11-25T12:00:00Z",
    }


def test_edit_preview_save_pending_approve_then_a_conversion_fires_the_new_url(
    page: Page, postback: Cli, local_stack: LocalStackProcess, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    # GIVEN an affiliate (self_service: approve) and a portal link sent to it
    affiliate = "3000101"
    receiver = onboard(postback, tmp_path, own_receivers, affiliate)
    url = portal_url(postback, affiliate, "--expires", "1h")
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))

    # WHEN the affiliate enters and writes a new URL for postback 1
    enter(page, url)
    first = page.get_by_role("group", name="Postback 1")
    new_url = f"{receiver.url}/new/pb?click={{clickid}}&tx={{transaction_id}}"
    first.get_by_label("Postback URL").fill(new_url)

    # THEN the live preview shows the URL a sample conversion of each of its events would produce
    sample = f"{receiver.url}/new/pb?click=clickid123&tx=sample-0001"
    preview = first.locator("output")
    expect(preview).to_contain_text(f"rebill: {sample}")
    assert preview.text_content() == f"sale: {sample}\nrebill: {sample}"

    # WHEN it saves
    page.get_by_role("button", name="Save").first.click()
    # THEN the change is pending, and nothing changed yet
    expect(page.get_by_text("pending", exact=False).first).to_be_visible()
    (change,) = [c for c in rows(postback, "changes", "list") if c["affiliate_id"] == affiliate]
    assert "+ postback 1, url: " + new_url in change["diff"]

    # WHEN ops approve it with the config script
    approved = postback("changes", "approve", change["change_id"])
    assert approved.exit_code == 0, approved.stderr
    page.reload()
    expect(page.get_by_text("approved", exact=False).first).to_be_visible()

    # THEN a conversion fires the new URL
    answer = post_conversions(local_stack.api_url, sale("BR1", affiliate), SECRET)
    assert answer.status_code == 202, answer.text
    (hit,) = receiver.wait_for(1, path="/new/pb", timeout_s=30)
    assert hit.param("click") == "cBR1" and hit.param("tx") == "BR1"

    # AND the history shows the portal's change; every portal answer had its CSP
    history = rows(postback, "affiliate", "history", affiliate)
    assert history[0]["source"] == "portal" and new_url in history[0]["diff"]
    portal_answers = [r for r in responses if "/portal" in r.url]
    assert portal_answers and all("script-src 'self'" in r.headers["content-security-policy"] for r in portal_answers)
    # AND neither the link nor the session cookie appears in the stack's log
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "portal_session")
    log = "\n".join(local_stack.lines)
    assert url.split("t=", 1)[1] not in log and cookie not in log


def test_pick_a_preset_see_its_preview_save_approve_then_a_conversion_fires_the_presets_url(
    page: Page, postback: Cli, local_stack: LocalStackProcess, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    # GIVEN an affiliate (self_service: approve) whose postback 1 is a URL template, entered by its link
    affiliate = "3000106"
    receiver = onboard(postback, tmp_path, own_receivers, affiliate)
    enter(page, portal_url(postback, affiliate))
    first = page.get_by_role("group", name="Postback 1")

    # WHEN it picks Keitaro, gives Keitaro's endpoint and its click ID field, and adds refund
    first.get_by_label("Tracker preset").select_option(label="Keitaro")
    expect(first.locator(".hint")).to_contain_text("Keitaro: give its endpoint as the Postback URL")
    endpoint = f"{receiver.url}/keitaro/postback"
    first.get_by_label("Postback URL").fill(endpoint)
    first.get_by_label("Click ID field").select_option("clickid")
    first.get_by_role("checkbox", name="refund").check()

    # THEN the live preview shows, per event, the URL Keitaro's preset writes for a sample
    # conversion (a refund reverses the sample sale: Keitaro's `rejected`, by the original's tid)
    query = "subid=clickid123&status={}&payout=7.50&currency=EUR&tid=sample-0001"
    preview = first.locator("output")
    expect(preview).to_contain_text("refund: ")
    assert preview.text_content() == "\n".join(
        f"{event}: {endpoint}?{query.format(word)}"
        for event, word in (("sale", "sale"), ("rebill", "rebill"), ("refund", "rejected"))
    )

    # WHEN it saves
    page.get_by_role("button", name="Save").first.click()
    # THEN the change is pending; ops approve it with the config script
    expect(page.locator("p.notice")).to_contain_text("pending")
    (change,) = [c for c in rows(postback, "changes", "list") if c["affiliate_id"] == affiliate]
    assert "+ postback 1, preset: keitaro" in change["diff"]
    approved = postback("changes", "approve", change["change_id"])
    assert approved.exit_code == 0, approved.stderr
    page.reload()
    expect(first.get_by_label("Tracker preset")).to_have_value("keitaro")

    # AND a conversion fires the preset's URL at the affiliate's server
    assert post_conversions(local_stack.api_url, sale("BR6", affiliate), SECRET).status_code == 202
    (hit,) = receiver.wait_for(1, path="/keitaro/postback", timeout_s=30)
    assert (hit.param("subid"), hit.param("status"), hit.param("tid"), hit.param("currency")) == (
        "cBR6",
        "sale",
        "BR6",
        "EUR",
    )


def test_start_test_shows_each_step_then_passed(
    page: Page, postback: Cli, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    # GIVEN an affiliate whose test link reaches the network's link with its tracker
    affiliate = "3000102"
    onboard(postback, tmp_path, own_receivers, affiliate)
    enter(page, portal_url(postback, affiliate))
    # WHEN it starts the test from the Test link section
    page.get_by_role("button", name="Start test").click()
    # THEN the test page refreshes itself through each step to the verdict `passed`
    expect(page.get_by_role("heading", name="Test link")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("passed", timeout=90_000)
    steps = page.locator("ol.steps > li").all_inner_texts()
    names = [step.split(":", 1)[0] for step in steps]
    assert names[:3] == ["follow_link", "check_tracker", "fire_postbacks"], steps
    assert "check_delivery" in names and all(": ok" in step for step in steps), steps


def test_a_failed_postback_replayed_from_the_page_ends_delivered(
    page: Page, postback: Cli, local_stack: LocalStackProcess, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    # GIVEN a sale whose postback failed for good (the server answered 404), then the server is fixed
    affiliate = "3000103"
    receiver = onboard(postback, tmp_path, own_receivers, affiliate)
    receiver.respond("/pb", [404, 200])
    assert post_conversions(local_stack.api_url, sale("BR3", affiliate), SECRET).status_code == 202
    eventually(
        lambda: rows(postback, "deliveries", "--affiliate", affiliate),
        lambda found: bool(found) and found[0]["state"] == "failed",
    )
    # WHEN the affiliate filters its failed deliveries and presses Replay
    enter(page, portal_url(postback, affiliate))
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("row").filter(has_text="BR3")
    expect(row).to_contain_text("404")
    row.get_by_role("button", name="Replay").click()
    expect(page.locator("p.notice")).to_contain_text("sent again")
    # THEN the postback ends delivered, and the page shows it so
    done = eventually(
        lambda: rows(postback, "deliveries", "--affiliate", affiliate),
        lambda found: bool(found) and found[0]["state"] == "delivered",
    )
    assert done[0]["state"] == "delivered" and len(receiver.hits("/pb")) == 2
    page.goto(re.sub(r"\?.*$", "", page.url) + "?state=delivered")
    expect(page.get_by_role("row").filter(has_text="BR3")).to_contain_text("delivered")


def test_expired_revoked_and_used_links_each_get_their_page(
    page: Page, postback: Cli, local_stack: LocalStackProcess, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    affiliate = "3000104"
    onboard(postback, tmp_path, own_receivers, affiliate)
    # A used link: entered once, then opened again
    used = portal_url(postback, affiliate)
    enter(page, used)
    page.goto(used)
    expect(page.get_by_text("This link has already been used")).to_be_visible()
    expect(page.get_by_role("button", name="Enter")).to_have_count(0)
    # An expired link
    page.goto(expired_url(local_stack, affiliate))
    expect(page.get_by_text("This link has expired")).to_be_visible()
    # A revoked link, and the session of before: both end
    revoked = portal_url(postback, affiliate)
    assert postback("portal", "revoke", affiliate).exit_code == 0
    page.goto(revoked)
    expect(page.get_by_text("This link has been revoked")).to_be_visible()
    page.goto(used.split("/portal/", 1)[0] + "/portal/home")
    expect(page.get_by_text("Your session has been ended")).to_be_visible()
    expect(page.get_by_role("heading", name="Postbacks")).to_have_count(0)


def test_screenshot_of_the_portal(page: Page, postback: Cli, tmp_path: Path, own_receivers: list[Receiver]) -> None:
    """The README's picture: the portal as an affiliate sees it, desktop and phone width."""
    affiliate = "3000105"
    onboard(postback, tmp_path, own_receivers, affiliate)
    enter(page, portal_url(postback, affiliate))
    expect(page.locator("output").first).not_to_be_empty()
    out = Path(__file__).resolve().parents[2] / "build" / "browser"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "portal-home.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    time.sleep(0.2)
    width = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(out / "portal-home-phone.png"), full_page=False)
    # Responsive: at a phone's width nothing but the deliveries table scrolls sideways.
    wider = page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => !e.closest('.table-wrap')"
        " && e.getBoundingClientRect().right > 391).map(e => e.tagName + '.' + e.className + '#' + e.id)"
    )
    assert width <= 390 and not wider, (width, wider)


def test_sign_out_ends_the_session_on_the_server_so_a_copied_cookie_is_refused(
    page: Page, browser: Browser, postback: Cli, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    # GIVEN an affiliate inside the portal, its session cookie copied to another browser
    affiliate = "3000107"
    onboard(postback, tmp_path, own_receivers, affiliate)
    enter(page, portal_url(postback, affiliate))
    home = page.url
    copied = [c for c in page.context.cookies() if c["name"] == "portal_session"]
    assert copied
    # WHEN the affiliate signs out
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have left the portal")).to_be_visible()
    # THEN the copy opens nothing: the page says the session was signed out
    other = browser.new_context()
    try:
        other.add_cookies(copied)  # type: ignore[arg-type]
        stolen = other.new_page()
        stolen.goto(home)
        expect(stolen.get_by_text("You have signed out")).to_be_visible()
        expect(stolen.get_by_role("heading", name="Postbacks")).to_have_count(0)
    finally:
        other.close()

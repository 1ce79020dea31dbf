"""Accessibility: axe-core (vendored, injected by the test, never served by the portal) finds
no serious or critical violation on any portal page, and the Save flow works by keyboard alone."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.browser_support import Cli, enter, expired_url, onboard, portal_url
from e2e.e2e_support import LocalStackProcess
from playwright.sync_api import Browser, BrowserContext, Page, expect

from postback_ops.local.receiver import Receiver

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # axe-core 4.14.1


@pytest.fixture
def axe_context(browser: Browser) -> Iterator[BrowserContext]:
    """A context that lets the test inject axe: the portal's CSP (rightly) refuses any script
    that is not its own."""
    opened = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    opened.set_default_timeout(15_000)
    yield opened
    opened.close()


def serious_violations(page: Page) -> list[dict[str, Any]]:
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256, "tests/browser/vendor/axe.min.js is not axe-core 4.14.1"
    page.add_script_tag(content=source.decode("utf-8"))
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_no_page_has_a_serious_or_critical_violation(
    axe_context: BrowserContext,
    postback: Cli,
    local_stack: LocalStackProcess,
    tmp_path: Path,
    own_receivers: list[Receiver],
) -> None:
    # GIVEN an affiliate with a refused change shown, a preset picked (previewed, then refused),
    # a test run, and each kind of page
    affiliate = "3000201"
    onboard(postback, tmp_path, own_receivers, affiliate)
    page = axe_context.new_page()
    link = portal_url(postback, affiliate)
    page.goto(link)
    found = {"link page": serious_violations(page)}
    page.get_by_role("button", name="Enter").click()
    page.wait_for_url("**/portal/home")
    found["home"] = serious_violations(page)
    page.get_by_role("group", name="Postback 1").get_by_label("Postback URL").fill("ftp://nowhere.example/x")
    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_role("alert")).to_contain_text("postback 1, url")
    found["home with a refused change"] = serious_violations(page)
    home = page.url.split("/portal/", 1)[0] + "/portal/home"
    page.goto(home)
    first = page.get_by_role("group", name="Postback 1")
    first.get_by_label("Tracker preset").select_option(label="Voluum")
    first.get_by_role("checkbox", name="chargeback").check()
    first.get_by_text("Status words (optional)").click()
    expect(first.locator("output")).to_contain_text("the voluum preset cannot take chargeback")
    found["home, a preset picked and its refusal previewed"] = serious_violations(page)
    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_role("alert")).to_contain_text("the voluum preset cannot take chargeback")
    found["home with a refused preset"] = serious_violations(page)
    page.goto(home)
    page.get_by_role("button", name="Start test").click()
    expect(page.get_by_role("heading", name="Test link")).to_be_visible()
    found["test run, running"] = serious_violations(page)
    expect(page.get_by_role("status")).to_contain_text("passed", timeout=90_000)
    found["test run, passed"] = serious_violations(page)
    page.goto(link)
    found["used link"] = serious_violations(page)
    page.goto(expired_url(local_stack, affiliate))
    found["expired link"] = serious_violations(page)
    page.goto(local_stack.api_url + "/portal")
    found["front"] = serious_violations(page)
    # THEN none has a serious or critical violation
    assert {name: v for name, v in found.items() if v} == {}


def test_the_save_flow_works_by_keyboard_alone(
    page: Page, postback: Cli, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    # GIVEN the affiliate's page, entered from its link
    affiliate = "3000202"
    receiver = onboard(postback, tmp_path, own_receivers, affiliate)
    enter(page, portal_url(postback, affiliate))
    url_field = page.get_by_role("group", name="Postback 1").get_by_label("Postback URL")

    # WHEN the affiliate tabs to postback 1's URL, types a new one, tabs to Save and presses Enter
    def focused_is(locator_id: str) -> bool:
        return bool(page.evaluate("(id) => document.activeElement && document.activeElement.id === id", locator_id))

    for _ in range(30):
        page.keyboard.press("Tab")
        if focused_is("pb-0-url"):
            break
    assert focused_is("pb-0-url"), "Tab never reached postback 1's URL field"
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{receiver.url}/keyboard?cid={{clickid}}")
    for _ in range(60):
        page.keyboard.press("Tab")
        name = page.evaluate("document.activeElement && document.activeElement.textContent")
        if page.evaluate("document.activeElement && document.activeElement.tagName") == "BUTTON" and name == "Save":
            break
    page.keyboard.press("Enter")

    # THEN the change is saved, pending, with the typed URL
    expect(page.locator("p.notice")).to_contain_text("pending")
    expect(url_field).to_be_visible()
    (change,) = [c for c in _changes(postback) if c["affiliate_id"] == affiliate]
    assert f"{receiver.url}/keyboard?cid={{clickid}}" in change["diff"]


def _changes(postback: Cli) -> list[dict[str, Any]]:
    result = postback("changes", "list")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = result.json()
    return rows

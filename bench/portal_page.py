"""The portal's warm page time: GET /portal/home of an affiliate with 50 deliveries, through
the real handler, its service on moto (in-process), the Jinja2 page rendered. Medians of
repeated requests after a first (cold) one; the in-memory AWS leaves out DynamoDB's round
trips (about 5 ms each in-region: the page reads the config, the epoch, the latest change, the
deliveries and the circuits, about 6 reads)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

DYNAMODB_READS_PER_PAGE = 6


def measure(*, requests: int = 30) -> dict[str, Any]:
    from moto import mock_aws

    from bench.support import MOTO_STACK_NAME
    from postback_ops.local.resources import REPO_ROOT, create_resources, function_environment

    folder = str(REPO_ROOT / "functions" / "portal")  # as Lambda's /var/task
    if folder not in sys.path:
        sys.path.insert(0, folder)
    with mock_aws():
        os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
        stack = create_resources(stack_name=MOTO_STACK_NAME)
        os.environ.update(function_environment(stack, "PortalFunction"))
        os.environ["ALLOW_LOOPBACK"] = "true"
        os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
        return _measure(stack.refs, requests)


def _measure(refs: dict[str, str], requests: int) -> dict[str, Any]:
    import boto3

    import portal_handler
    import portal_web
    from postback_relay import wiring
    from postback_relay.domain.config import parse_config
    from postback_relay.domain.delivery import Attempt, DeliveryState, PostbackMessage
    from postback_relay.domain.events import Event
    from postback_relay.domain.portal import new_link, sign_pass
    from postback_relay.services.portal import EVENTS
    from postback_relay.settings import PortalSettings

    settings = portal_handler.load_settings(os.environ)
    assert isinstance(settings, PortalSettings)
    dynamodb = boto3.client("dynamodb")
    config = parse_config(
        {
            "affiliate_id": "1234567",
            "name": "Bench",
            "postbacks": [{"events": ["sale"], "url": "https://track.example/pb?cid={clickid}"}],
        }
    )
    wiring.affiliate_store(settings.affiliates_table, dynamodb=dynamodb).put(
        config, expected_version=None, updated_by="bench"
    )
    log = wiring.delivery_search(
        settings.deliveries_table,
        conversions_table=settings.deliveries_table,
        test_runs_table=settings.test_runs_table,
        dynamodb=dynamodb,
    )
    now = datetime.now(UTC)
    for n in range(50):
        message = PostbackMessage(
            delivery_id=f"d{n:03}", affiliate_id="1234567", transaction_id=f"T-{n}", event=Event.SALE,
            offer_id="89", url=f"https://track.example/pb?cid=c{n}", created_at=now - timedelta(minutes=n),
        )  # fmt: skip
        attempt = Attempt(
            attempt=1, at=now, url=message.url, method="GET", status=200, latency_ms=40, outcome="delivered"
        )
        log.record_attempt(message, attempt, DeliveryState.DELIVERED)
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=settings.portal_secret_name)["SecretString"]
    link = new_link("1234567", epoch=0, lifetime=timedelta(hours=1), now=time.time())
    service = wiring.portal_service(settings, secret=lambda: secret.encode(), dynamodb=dynamodb)
    cookie = service.enter(sign_pass(link, secret.encode()), service.csrf(link))
    event = {
        "rawPath": "/portal/home",
        "headers": {},
        "cookies": [f"portal_session={cookie}"],
        "requestContext": {"http": {"method": "GET"}, "stage": "$default"},
    }

    def page() -> float:
        started = time.perf_counter()
        answer = portal_handler.answer(portal_web.PortalRequest(event), service)
        assert answer.status == 200 and "Deliveries" in answer.body
        return (time.perf_counter() - started) * 1000

    session = service.session(cookie)
    overview = service.overview(session)

    def render() -> float:
        started = time.perf_counter()
        portal_web.page(200, "home.html", overview=overview, config=overview.stored.config, csrf="x",
                        events=EVENTS, states=portal_handler.DELIVERY_STATES, state="", event="", outcome=None,
                        section="", form=None, test_link=None, notice="")  # fmt: skip
        return (time.perf_counter() - started) * 1000

    first = page()
    warm = [page() for _ in range(requests)]
    rendered = statistics.median([render() for _ in range(requests)])
    median = statistics.median(warm)
    return {
        "first_page_ms": round(first, 1),
        # The handler, the service and the page, on moto in-process: moto's own dispatch (tens of
        # ms a call on this machine) is most of it; Lambda's DynamoDB reads take ~5 ms each.
        "warm_page_on_moto_ms": round(median, 1),
        "warm_page_render_ms": round(rendered, 1),
        "warm_page_estimate_ms": round(rendered + DYNAMODB_READS_PER_PAGE * 5.0, 1),
        "deliveries_on_page": 50,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))

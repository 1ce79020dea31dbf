"""Security, end to end: signatures (missing, wrong, replayed, expired, malformed), SSRF at
save, at ingest and at send time (a name resolving to a private address, with no connection
made), and no secret, signature or request body in any log line of a full run."""

from __future__ import annotations

import base64
import functools
import io
import ipaddress
import json
import logging
from collections.abc import Iterator

import pytest
from integration.test_ingest_handler import SECRET, LambdaContext, http_event
from reliability.relay_harness import FLAKY, GONE, OK, FaultyAffiliate, Relay, affiliate_config, conversion

import dispatch_handler
import dispatch_sqs
import ingest_handler
import ingest_http
from postback_relay import wiring
from postback_relay.adapters import http_sender
from postback_relay.domain.config import load_config_text
from postback_relay.domain.delivery import DeliveryState, delivery_id_for
from postback_relay.domain.errors import ConfigError
from postback_relay.domain.events import Event
from postback_relay.domain.signing import sign_conversion_request

AFFILIATE = "9000001"


def signed_event(body: str, stamp: int, *, secret: str = SECRET) -> dict[str, object]:
    return http_event(
        body,
        {
            "x-postback-timestamp": str(stamp),
            "x-postback-signature": sign_conversion_request(secret, stamp, body.encode()),
        },
    )


def answer(event: dict[str, object]) -> tuple[int, dict[str, object]]:
    response = ingest_handler.lambda_handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def affiliate(relay: Relay) -> Iterator[FaultyAffiliate]:
    with FaultyAffiliate(OK) as server:
        relay.add_affiliate(affiliate_config(AFFILIATE, server.url))
        yield server


# --- signatures ------------------------------------------------------------------------------


def test_a_request_replayed_within_the_window_is_a_repeat_and_after_it_is_refused(
    relay: Relay, affiliate: FaultyAffiliate
) -> None:
    # GIVEN a signed request taken at time T
    body = json.dumps(conversion("T-1", AFFILIATE, "c1"))
    event = signed_event(body, int(relay.now))
    assert answer(event)[0] == 202

    # WHEN the very same request (signature and timestamp) is replayed 299 s later
    relay.now += 299
    status, document = answer(event)
    # THEN it is a repeat: nothing new is queued
    assert (status, document["repeat"]) == (200, True)

    # WHEN it is replayed once the window is over
    relay.now += 2
    status, document = answer(event)
    # THEN it is refused
    assert (status, document["error"]) == (401, "bad_signature")
    relay.drain()
    assert affiliate.received == {"/pb0?c1": 1}


@pytest.mark.parametrize(
    "headers",
    [
        {"x-postback-timestamp": "{future}"},
        {"x-postback-timestamp": ""},
        {"x-postback-timestamp": "abc"},
        {"x-postback-timestamp": "1.7e9"},
        {"x-postback-timestamp": "-1"},
        {"x-postback-timestamp": "9" * 40},
        {"x-postback-signature": "v1="},
        {"x-postback-signature": "v2={sig}"},
        {"x-postback-signature": "{sig}"},
        {"x-postback-signature": "v1=" + "g" * 64},
        {"x-postback-signature": ",".join(["v1=" + "0" * 64] * 10_000)},
        {"x-postback-signature": "{other_secret_sig}"},
    ],
    ids=[
        "301s-in-the-future",
        "empty-timestamp",
        "word-timestamp",
        "float-timestamp",
        "negative-timestamp",
        "40-digit-timestamp",
        "empty-v1",
        "other-version",
        "no-version",
        "not-hex",
        "10000-candidates",
        "another-secret",
    ],
)
def test_a_bad_signature_or_timestamp_is_a_401_never_a_5xx_and_keeps_nothing(
    relay: Relay, affiliate: FaultyAffiliate, headers: dict[str, str]
) -> None:
    # GIVEN a valid request with one signature header broken
    body = json.dumps(conversion("T-1", AFFILIATE, "c1"))
    stamp = int(relay.now)
    event = signed_event(body, stamp)
    signature = sign_conversion_request(SECRET, stamp, body.encode()).removeprefix("v1=")
    other = sign_conversion_request("another-secret-of-48-characters-xxxxxxxxxxxxxxxx", stamp, body.encode())
    request_headers = event["headers"]
    assert isinstance(request_headers, dict)
    for name, value in headers.items():
        request_headers[name] = value.format(future=stamp + 301, sig=signature, other_secret_sig=other)

    # WHEN it is posted, THEN 401, and nothing recorded
    status, document = answer(event)
    assert (status, document["error"]) == (401, "bad_signature")
    assert relay.conversion_ids() == set()


def test_an_upper_case_hex_signature_is_accepted_as_the_schema_allows(relay: Relay, affiliate: FaultyAffiliate) -> None:
    # GIVEN docs/openapi.yaml's pattern v1=[0-9a-fA-F]{64}: a platform may send upper case
    body = json.dumps(conversion("T-1", AFFILIATE, "c1"))
    stamp = int(relay.now)
    event = signed_event(body, stamp)
    headers = event["headers"]
    assert isinstance(headers, dict)
    headers["x-postback-signature"] = "v1=" + headers["x-postback-signature"].removeprefix("v1=").upper()
    assert answer(event)[0] == 202


# --- SSRF ------------------------------------------------------------------------------------

FORBIDDEN_SPELLINGS = [
    "http://127.0.0.1/pb",
    "http://2130706433/pb",
    "http://0177.0.0.1/pb",
    "http://0x7f.1/pb",
    "http://127.1/pb",
    "http://[::1]/pb",
    "http://[::ffff:127.0.0.1]/pb",
    "http://[::ffff:7f00:1]/pb",
    "http://10.0.0.1/pb",
    "http://0x0a000001/pb",
    "http://172.16.5.4/pb",
    "http://192.168.0.1/pb",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/pb",
    "http://2852039166/pb",
    "http://100.64.0.1/pb",
    "http://[fe80::1]/pb",
    "http://[fc00::1]/pb",
    "http://224.0.0.1/pb",
    "http://0.0.0.0/pb",
    "http://[::]/pb",
    "http://255.255.255.255/pb",
    "http://user:pw@example.com/pb",
    "ftp://example.com/pb",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("url", FORBIDDEN_SPELLINGS)
def test_a_config_naming_an_internal_address_in_any_spelling_is_refused_at_save(url: str) -> None:
    # GIVEN an affiliate file whose postback URL points inside (or is not http)
    text = json.dumps(
        affiliate_config(AFFILIATE, "http://unused.example") | {"postbacks": [{"events": ["sale"], "url": url}]}
    )

    # WHEN it is saved for a deployed stack, THEN it is refused, naming the field
    with pytest.raises(ConfigError) as refused:
        load_config_text(text, allow_loopback=False)
    assert "postbacks.0.url" in [field for field, _ in refused.value.errors]


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["::ffff:127.0.0.1"],
        ["::1"],
        ["93.184.215.14", "192.168.1.10"],
    ],
    ids=["loopback", "private", "metadata", "mapped-loopback", "ipv6-loopback", "one-of-two-private"],
)
def test_a_name_resolving_to_an_internal_address_at_send_time_fails_without_a_connection(
    relay: Relay, monkeypatch: pytest.MonkeyPatch, answers: list[str]
) -> None:
    # GIVEN a deployed-stack dispatcher (loopback forbidden) whose DNS answers the affiliate's
    # public-looking name with an internal address, and a server listening on 127.0.0.1
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[Address]:
        lookups.append(host)
        return [ipaddress.ip_address(a) for a in answers]

    monkeypatch.setattr(http_sender, "resolve_host", resolver)
    # (built after the resolver is replaced, as a cold function would be; the relay fixture
    # forgets this dispatcher afterwards)
    deployed = dispatch_handler.settings.model_copy(update={"allow_loopback": False})
    dispatch_handler.dispatcher.use(wiring.dispatcher(deployed))
    with FaultyAffiliate(OK) as server:
        port = server.url.rsplit(":", 1)[1]
        relay.add_affiliate(affiliate_config(AFFILIATE, f"http://tracker.affiliate.example:{port}"))
        relay.post_until_taken(conversion("T-1", AFFILIATE, "c1"))

        # WHEN the postback is dispatched
        relay.drain()

    # THEN the name was resolved, nothing connected, and the postback failed for good with why
    assert lookups == ["tracker.affiliate.example"]
    assert server.attempts == {}
    record = relay.delivery(delivery_id_for("T-1", Event.SALE, AFFILIATE, 0))
    assert record is not None
    assert record.state is DeliveryState.FAILED
    assert record.attempts[0].error_kind == "unsafe_url"
    (letter,) = relay.dead_letters()
    assert "resolves to a" in letter["MessageAttributes"]["reason"]["StringValue"]


def test_a_stored_config_with_an_internal_url_queues_nothing_and_blocks_no_one(
    relay: Relay, affiliate: FaultyAffiliate, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a config saved under a local stack's rules (loopback allowed), now read by a deployed
    # ingest function (loopback forbidden); and a healthy affiliate with a public endpoint (this
    # test only ingests: nothing is sent to it)
    relay.add_affiliate(affiliate_config("9000009", "http://127.0.0.1:9"))
    relay.add_affiliate(affiliate_config("9000010", "https://postbacks.example.com"))
    deployed = ingest_handler.settings.model_copy(update={"allow_loopback": False})
    monkeypatch.setattr(ingest_handler, "settings", deployed)
    ingest_handler.ingest_service.use(wiring.ingest_service(deployed, clock=lambda: ingest_handler.clock()))

    # WHEN a batch with a conversion for each arrives
    status, document = relay.post(
        {"conversions": [conversion("T-1", "9000009", "c1"), conversion("T-2", "9000010", "c2")]}
    )

    # THEN both are taken: the first with its reason and nothing queued (the documented
    # tracker_mismatch / invalid_config), the second queued
    assert status == 202, document
    first, second = document["results"]
    assert (first["outcome"], first["error_kind"], first["postbacks_queued"]) == (
        "tracker_mismatch",
        "invalid_config",
        0,
    )
    assert (second["outcome"], second["postbacks_queued"]) == ("queued", 1)


# --- logs --------------------------------------------------------------------------------------


def test_no_log_line_of_a_full_run_holds_a_secret_a_signature_or_a_body(
    relay: Relay,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    # GIVEN both functions logging at DEBUG into buffers, and an affiliate that signs its
    # postbacks (Standard Webhooks) and takes them as a POST body
    logs = io.StringIO()
    for function in (ingest_http, dispatch_sqs):  # the modules holding the functions' Loggers
        monkeypatch.setattr(function.logger.registered_handler, "stream", logs)
        request.addfinalizer(functools.partial(function.logger.setLevel, function.logger.log_level))
        function.logger.setLevel(logging.DEBUG)
    # The functions' own loggers at DEBUG (botocore's DEBUG output is not theirs: Lambda's root
    # logger does not run at DEBUG).
    caplog.set_level(logging.DEBUG, logger=ingest_http.logger.name)
    webhook_secret = "whsec_" + base64.b64encode(b"affiliate-webhook-key-0123456789").decode()
    with FaultyAffiliate(OK) as ok, FaultyAffiliate(FLAKY) as flaky, FaultyAffiliate(GONE) as gone:
        for affiliate_id, server in (("9000001", ok), ("9000002", flaky), ("9000003", gone)):
            config = affiliate_config(affiliate_id, server.url)
            config["signing_secret"] = webhook_secret
            config["postbacks"] = [
                {
                    "events": ["sale"],
                    "url": f"{server.url}/pb0?cid={{clickid}}",
                    "method": "POST",
                    "body": "click={clickid}&amount={amount}&secretish=zz-postback-body-zz",
                }
            ]
            relay.add_affiliate(config)

        # WHEN conversions are taken, delivered, retried and failed, and bad requests refused
        documents = [conversion(f"T-{n}", f"900000{n}", f"clk{n}x") for n in (1, 2, 3)]
        bodies = [json.dumps(document) for document in documents]
        for body in bodies:
            assert answer(signed_event(body, int(relay.now)))[0] == 202
        wrong = signed_event(bodies[0], int(relay.now), secret="not-the-secret-but-long-enough")
        assert answer(wrong)[0] == 401
        assert answer(signed_event('{"amount": "x", "link": "trID_leak_trID"}', int(relay.now)))[0] == 400
        relay.drain()
        webhook_signatures = [
            value.split(",", 1)[1] for server in (ok, flaky, gone) for value in server.webhook_signatures
        ]
        assert ok.received and flaky.received and gone.attempts and webhook_signatures

    # THEN the logs tell what happened...
    output = logs.getvalue() + capsys.readouterr().out + caplog.text
    assert "postback delivered" in output and "postback failed" in output and "postback retried" in output
    # ...but carry no secret, no signature, no request body, no postback values
    forbidden = [
        *webhook_signatures,
        SECRET,
        webhook_secret,
        webhook_secret.removeprefix("whsec_"),
        "zz-postback-body-zz",
        "trID_",
        "espace-plus",
        "clk1x",
        "clk2x",
        "clk3x",
        *(sign_conversion_request(SECRET, int(relay.now), body.encode()).removeprefix("v1=") for body in bodies),
        *(
            sign_conversion_request("not-the-secret-but-long-enough", int(relay.now), bodies[0].encode()).removeprefix(
                "v1="
            ),
        ),
    ]
    for secret in forbidden:
        assert secret not in output, f"{secret[:20]}... is in the logs"

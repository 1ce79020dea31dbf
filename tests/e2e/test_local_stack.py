"""The contract's promises, end to end, on the local stack (`make run`).

Everything goes through the outside of the system: signed conversions over HTTP, the
`postback --local` config script, and an affiliate server on 127.0.0.1 that records what it
gets. Each test onboards its own affiliate and uses its own receiver paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e.e2e_support import CliResult, LocalStackProcess, eventually

from postback_ops.local.conversions import post_conversions
from postback_ops.local.receiver import Answer, Receiver
from postback_ops.local.stack import RECEIVER_NETWORK_LINK, receiver_affiliate_config
from postback_relay.domain.delivery import MAX_ATTEMPTS
from postback_relay.domain.events import REVERSALS, Event

pytestmark = pytest.mark.e2e

SECRET = "local-dev-secret"
CONVERSION_EVENTS = [e for e in Event if e not in REVERSALS]  # reversals name an original: their own tests
Cli = Callable[..., CliResult]


def revshare_link(affiliate_id: str, values: str) -> str:
    return (
        "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0"
        f"&id={affiliate_id}&e=1&w=0&tracker=trID_{values}_trID"
    )


def pps_link(affiliate_id: str, values: str) -> str:
    # The guide's stray `&;` before `tracker` is kept: real links look like this.
    return (
        "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&id=66013&e=1&w=0"
        f"&;tracker=trID_{affiliate_id}_{values}_trID"
    )


def conversion(transaction_id: str, event: Event, link: str, *, offer_id: str, offer_type: str) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "event": event.value,
        "offer": {"id": offer_id, "type": offer_type, "name": "E2E offer"},
        "amount": "0" if event is Event.REGISTRATION else "25.00",
        "currency": "EUR",
        "link": link,
        "occurred_at": "2026-11-25T12:00:00Z",
    }


TX = "{transaction_id}"


def onboard(postback: Cli, tmp_path: Path, affiliate_id: str, receiver: Receiver, prefix: str) -> None:
    """Put an affiliate whose sale/rebill and registration/trial postbacks go to the receiver."""
    config = tmp_path / f"{affiliate_id}.yaml"
    config.write_text(
        f"""
affiliate_id: "{affiliate_id}"
name: E2E {affiliate_id}
postbacks:
  - events: [sale, rebill]
    url: "{receiver.url}{prefix}/pb?cid={{clickid}}&amount={{amount}}&ev={{event}}&offer={{offer_id}}&tx={TX}"
  - events: [registration, trial]
    url: "{receiver.url}{prefix}/lead?cid={{clickid}}&ev={{event}}&offer={{offer_id}}&tx={TX}"
test_link: "{receiver.url}{prefix}/click"
""",
        encoding="utf-8",
    )
    result = postback("affiliate", "put", str(config))
    assert result.exit_code == 0, result.stderr + result.stdout


def rows_of(postback: Cli, *args: str) -> list[dict[str, Any]]:
    """The JSON rows a listing command answers (it must succeed)."""
    result = postback(*args)
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = result.json()
    return rows


def deliveries_of(
    postback: Cli, *, transaction: str | None = None, affiliate: str | None = None
) -> list[dict[str, Any]]:
    args = ["--transaction", transaction] if transaction else ["--affiliate", str(affiliate)]
    return rows_of(postback, "deliveries", *args)


def settled(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and all(row["state"] in ("delivered", "failed") for row in rows)


def test_the_stack_publishes_its_outputs_for_the_config_script(local_stack: LocalStackProcess) -> None:
    # GIVEN the running local stack
    # WHEN its published outputs are read
    outputs = local_stack.outputs

    # THEN they name what a deployed stack's outputs name, plus the local delay scale
    for key in ("ApiUrl", "AffiliatesTableName", "DeliveriesTableName", "PostbackQueueUrl", "TestLinkStateMachineArn"):
        assert outputs.get(key), key
    assert outputs["ApiUrl"] == local_stack.api_url
    assert 0 < float(outputs["DelayScale"]) < 1


def test_postback_local_finds_the_stack_make_run_recorded_whatever_its_ports(
    local_stack: LocalStackProcess, postback_script: Cli, state_dir: Path
) -> None:
    # GIVEN the stack on free ports (not 4566), recorded with its token
    record = json.loads((state_dir / "stack.json").read_text(encoding="utf-8"))
    assert record["aws_endpoint"] == local_stack.aws_endpoint
    assert record["token"] == local_stack.outputs["StackToken"]

    # WHEN a developer runs `postback --local` with no endpoint in the environment
    result = postback_script("--local", "--json", "affiliate", "list")

    # THEN it reaches that stack
    assert result.exit_code == 0, result.stderr
    assert isinstance(result.json(), list)


@pytest.mark.parametrize("server", ["api", "receiver"])
def test_postback_local_pointed_at_another_server_says_so_in_one_sentence(
    local_stack: LocalStackProcess, receiver: Receiver, postback_script: Cli, server: str
) -> None:
    # GIVEN POSTBACK_LOCAL_ENDPOINT pointed at the conversion API's port, or at an affiliate receiver
    endpoint = local_stack.api_url if server == "api" else receiver.url

    # WHEN a developer runs `postback --local`
    result = postback_script("--local", "affiliate", "list", extra_env={"POSTBACK_LOCAL_ENDPOINT": endpoint})

    # THEN one sentence says it is not this project's local stack, exit 3, no traceback
    assert result.exit_code == 3, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"The server at {endpoint} is not this project's local stack" in result.stderr
    assert "Traceback" not in result.stderr


def test_signed_conversions_of_both_offer_types_and_every_event_end_as_postbacks(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate onboarded with the config script
    affiliate = "2000001"
    onboard(postback, tmp_path, affiliate, receiver, "/every")

    # WHEN the platform posts every event of a revshare offer one by one and of a PPS offer as a batch
    revshare = [
        conversion(
            f"E2E-RS-{e.value}", e, revshare_link(affiliate, f"a1-T9-rs{i}-x"), offer_id="89", offer_type="revshare"
        )
        for i, e in enumerate(CONVERSION_EVENTS)
    ]
    pps = [
        conversion(f"E2E-PPS-{e.value}", e, pps_link(affiliate, f"a1-T9-pps{i}-x"), offer_id="66013", offer_type="pps")
        for i, e in enumerate(CONVERSION_EVENTS)
    ]
    answers = [post_conversions(local_stack.api_url, c, SECRET) for c in revshare]
    answers.append(post_conversions(local_stack.api_url, {"conversions": pps}, SECRET))

    # THEN each is accepted with one postback queued
    assert [a.status_code for a in answers] == [202] * 5, [a.text for a in answers]
    # AND the affiliate's server gets one postback per conversion, its macros filled from the tracker
    hits = receiver.wait_for(8, prefix="/every/", timeout_s=60)
    got = {(h.path, h.param("tx"), h.param("ev"), h.param("offer"), h.param("cid")) for h in hits}
    expected = {
        (
            "/every/pb" if e in (Event.SALE, Event.REBILL) else "/every/lead",
            f"E2E-{kind}-{e.value}",
            e.value,
            offer,
            f"{cid}{i}",
        )
        for kind, offer, cid in (("RS", "89", "rs"), ("PPS", "66013", "pps"))
        for i, e in enumerate(CONVERSION_EVENTS)
    }
    assert got == expected
    assert {h.param("amount") for h in hits if h.path == "/every/pb"} == {"25.00"}
    # AND the delivery log shows each delivered at the first attempt with the answer's status
    rows = eventually(lambda: deliveries_of(postback, affiliate=affiliate), lambda r: len(r) == 8 and settled(r))
    assert {(r["state"], r["attempts"], r["http_status"]) for r in rows} == {("delivered", 1, 200)}, rows
    assert {r["transaction_id"] for r in rows} == {t for _, t, *_ in expected}


def test_the_api_refuses_bad_requests_and_takes_a_repeat_once(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate and one conversion already taken
    affiliate = "2000002"
    onboard(postback, tmp_path, affiliate, receiver, "/refuse")
    sale = conversion(
        "E2E-REPEAT", Event.SALE, revshare_link(affiliate, "a-b-c1-d"), offer_id="89", offer_type="revshare"
    )
    first = post_conversions(local_stack.api_url, sale, SECRET)
    assert first.status_code == 202, first.text
    receiver.wait_for(1, prefix="/refuse/", timeout_s=60)

    # WHEN the same conversion is posted again, and requests with a wrong secret, a stale
    # timestamp, no signature and an invalid body arrive
    repeat = post_conversions(local_stack.api_url, sale, SECRET)
    wrong_secret = post_conversions(local_stack.api_url, {**sale, "transaction_id": "E2E-X1"}, "wrong")
    stale = post_conversions(
        local_stack.api_url, {**sale, "transaction_id": "E2E-X2"}, SECRET, timestamp=int(time.time()) - 3600
    )
    unsigned = requests.post(
        f"{local_stack.api_url}/conversions",
        data=json.dumps({**sale, "transaction_id": "E2E-X3"}),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    invalid = post_conversions(local_stack.api_url, {**sale, "transaction_id": "E2E-X4", "event": "upsell"}, SECRET)

    # THEN the repeat answers 200 with the first result and fires nothing new
    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["postbacks_queued"] == first.json()["postbacks_queued"]
    # AND the unauthenticated ones get 401, the invalid one 400, none of them a 5xx
    assert [wrong_secret.status_code, stale.status_code, unsigned.status_code] == [401, 401, 401]
    assert invalid.status_code == 400, invalid.text
    # AND nothing of them was recorded or sent
    rows = deliveries_of(postback, affiliate=affiliate)
    assert [r["transaction_id"] for r in rows] == ["E2E-REPEAT"]
    assert len(receiver.hits(prefix="/refuse/")) == 1


def test_an_endpoint_failing_with_500_is_retried_until_delivered(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate whose server answers 500 once, then 200
    affiliate = "2000003"
    onboard(postback, tmp_path, affiliate, receiver, "/flaky")
    receiver.respond("/flaky/pb", [500, 200])

    # WHEN a sale is posted
    sale = conversion(
        "E2E-FLAKY", Event.SALE, revshare_link(affiliate, "a-b-c3-d"), offer_id="89", offer_type="revshare"
    )
    assert post_conversions(local_stack.api_url, sale, SECRET).status_code == 202

    # THEN the postback is tried again after the (scaled) backoff and ends delivered
    hits = receiver.wait_for(2, path="/flaky/pb", timeout_s=60)
    assert [h.status for h in hits] == [500, 200]
    rows = eventually(lambda: deliveries_of(postback, transaction="E2E-FLAKY"), settled)
    assert [(r["state"], r["attempts"], r["http_status"]) for r in rows] == [("delivered", 2, 200)]


def test_a_postback_refused_with_404_fails_at_once_and_a_replay_delivers_it(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate whose server answers 404 (a 4xx other than 408/429 is not retried)
    affiliate = "2000004"
    onboard(postback, tmp_path, affiliate, receiver, "/gone")
    receiver.respond("/gone/pb", [404])
    sale = conversion(
        "E2E-GONE", Event.SALE, revshare_link(affiliate, "a-b-c4-d"), offer_id="89", offer_type="revshare"
    )
    assert post_conversions(local_stack.api_url, sale, SECRET).status_code == 202

    # WHEN the postback has been tried
    rows = eventually(lambda: deliveries_of(postback, transaction="E2E-GONE"), settled)

    # THEN it is failed after one attempt, with the status it got
    assert [(r["state"], r["attempts"], r["http_status"]) for r in rows] == [("failed", 1, 404)]

    # WHEN the affiliate fixed its server and ops replay the conversion's failed postbacks
    receiver.respond("/gone/pb", [200])
    replay = postback("replay", "--transaction", "E2E-GONE")

    # THEN it is sent again and ends delivered
    assert replay.exit_code == 0, replay.stderr
    assert replay.json()["replayed"] == 1
    receiver.wait_for(2, path="/gone/pb", timeout_s=60)
    rows = eventually(
        lambda: deliveries_of(postback, transaction="E2E-GONE"), lambda r: settled(r) and r[0]["state"] == "delivered"
    )
    assert rows[0]["state"] == "delivered"
    assert rows[0]["http_status"] == 200
    assert rows[0]["replays"] == 1


def test_a_test_link_is_followed_to_the_network_and_passes(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate whose test link redirects to a network link carrying its tracker
    affiliate = "2000005"
    onboard(postback, tmp_path, affiliate, receiver, "/tl-ok")
    receiver.respond("/tl-ok/click", [Answer.redirect(revshare_link(affiliate, "a-b-c5-d"))])

    # WHEN ops start a test run and wait for its verdict
    result = postback("test", "start", affiliate, "--wait")

    # THEN the verdict is passed
    assert result.exit_code == 0, result.stderr + result.stdout
    verdict = result.json()
    assert verdict["verdict"] == "passed", verdict
    assert {"run_id", "step", "reason"} <= verdict.keys()
    # AND each postback was fired once to the affiliate with the link's values and a test- transaction
    hits = receiver.hits(prefix="/tl-ok/")
    fired = [h for h in hits if h.path != "/tl-ok/click"]
    assert {h.path for h in fired} == {"/tl-ok/pb", "/tl-ok/lead"}
    assert {h.param("cid") for h in fired} == {"c5"}
    assert all((h.param("tx") or "").startswith("test-") for h in fired)
    # AND the verdict can be read again with `test status`
    status = postback("test", "status", verdict["run_id"])
    assert status.exit_code == 0
    assert status.json()["verdict"] == "passed"


def test_a_test_link_passes_when_the_endpoint_answers_503_twice_then_200(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate whose server answers 503, 503, then 200: on AWS its attempts come at
    # 0, 5 s and about 5 min, all within the test link's 35 minutes
    affiliate = "2000009"
    onboard(postback, tmp_path, affiliate, receiver, "/tl-retry")
    receiver.respond("/tl-retry/click", [Answer.redirect(revshare_link(affiliate, "a-b-c9-d"))])
    receiver.respond("/tl-retry/pb", [503, 503, 200])

    # WHEN ops start a test run and wait for its verdict
    result = postback("test", "start", affiliate, "--wait")

    # THEN it passes locally too, as the delivery log says: the third attempt was delivered
    verdict = result.json()
    assert (result.exit_code, verdict["verdict"]) == (0, "passed"), verdict
    assert [h.status for h in receiver.hits(path="/tl-retry/pb")] == [503, 503, 200]
    rows = deliveries_of(postback, affiliate=affiliate)
    assert {(r["state"], r["attempts"], r["http_status"]) for r in rows} == {
        ("delivered", 3, 200),
        ("delivered", 1, 200),
    }


def test_a_test_link_with_an_unfilled_placeholder_fails_at_the_tracker_check(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate whose tracker fails to fill the click ID (a known integration error)
    affiliate = "2000006"
    onboard(postback, tmp_path, affiliate, receiver, "/tl-bad")
    receiver.respond("/tl-bad/click", [Answer.redirect(revshare_link(affiliate, "a-b-#clickId#-d"))])

    # WHEN ops start a test run and wait for its verdict
    result = postback("test", "start", affiliate, "--wait")

    # THEN it fails, at the tracker check, saying why, and no postback was fired
    assert result.exit_code == 1, result.stderr + result.stdout
    verdict = result.json()
    assert verdict["verdict"] == "failed", verdict
    assert verdict["step"] == "check_tracker", verdict
    assert verdict["reason"]
    assert [h.path for h in receiver.hits(prefix="/tl-bad/")] == ["/tl-bad/click"]


def test_a_config_posting_back_to_a_private_address_is_refused(postback: Cli, tmp_path: Path) -> None:
    # GIVEN a config whose postback URL is on a private network (loopback alone is allowed locally)
    config = tmp_path / "private.yaml"
    config.write_text(
        'affiliate_id: "2000007"\nname: Private\npostbacks:\n  - events: [sale]\n    url: "http://10.0.0.1/pb?c={clickid}"\n',
        encoding="utf-8",
    )

    # WHEN it is put with the config script
    result = postback("affiliate", "put", str(config))

    # THEN it is refused (exit 2, invalid input, as the README promises scripts), naming the
    # field, and nothing is stored (exit 4, not found)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "postback 1, url" in result.stdout + result.stderr
    assert postback("affiliate", "get", "2000007").exit_code == 4


@pytest.mark.slow
def test_a_postback_that_never_succeeds_ends_failed_after_the_whole_scaled_schedule(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate whose server always answers 503
    affiliate = "2000008"
    onboard(postback, tmp_path, affiliate, receiver, "/down")
    receiver.respond("/down/pb", [503])

    # WHEN a sale is posted and its retry schedule (about 27 h, scaled down) runs out
    sale = conversion(
        "E2E-DOWN", Event.SALE, revshare_link(affiliate, "a-b-c8-d"), offer_id="89", offer_type="revshare"
    )
    posted_at = time.time()
    assert post_conversions(local_stack.api_url, sale, SECRET).status_code == 202
    rows = eventually(lambda: deliveries_of(postback, transaction="E2E-DOWN"), settled, timeout_s=180)

    # THEN it ends failed, never silently dropped, with every attempt made and the reason kept
    assert [(r["state"], r["http_status"]) for r in rows] == [("failed", 503)], rows
    hits = receiver.hits(path="/down/pb")
    assert rows[0]["attempts"] == len(hits) == MAX_ATTEMPTS
    assert rows[0]["last_error"]
    # AND the whole schedule ran within a minute, as the README promises
    assert hits[-1].at - posted_at <= 60, [round(h.at - posted_at, 1) for h in hits]


README = Path(__file__).resolve().parents[2] / "README.md"
WALKTHROUGH_MARKER = "<!-- e2e: the block below runs as written"


def readme_walkthrough() -> str:
    """The README's "Try it locally" shell block, as a reader copies it."""
    after = README.read_text(encoding="utf-8").split(WALKTHROUGH_MARKER, 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readmes_local_walkthrough_runs_as_written(
    local_stack: LocalStackProcess, receiver: Receiver, state_dir: Path, tmp_path: Path
) -> None:
    # GIVEN a checkout as `make run` leaves it: the venv, the stack's record, the receiver's
    # affiliate file (the tests' stack runs on free ports and the tests' receiver)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    (tmp_path / ".local-stack").mkdir()
    (tmp_path / ".local-stack" / "receiver-affiliate.yaml").write_text(
        receiver_affiliate_config(receiver.url), encoding="utf-8"
    )
    receiver.respond("/click", [Answer.redirect(RECEIVER_NETWORK_LINK)])
    script = readme_walkthrough().replace("http://127.0.0.1:3000", local_stack.api_url)
    env = {
        key: value for key, value in os.environ.items() if key not in ("AWS_ENDPOINT_URL", "POSTBACK_LOCAL_ENDPOINT")
    }
    env["POSTBACK_LOCAL_STATE_DIR"] = str(state_dir)

    # WHEN a reader runs the block, line by line, stopping at the first failure
    done = subprocess.run(  # noqa: S603 - bash running the README's own lines
        ["/bin/bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # THEN every command works: the affiliate is onboarded, the conversion queued and sent,
    # the preview rendered and the test link passed
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"outcome":"queued"' in done.stdout.replace(" ", ""), done.stdout
    assert "https://" not in done.stderr
    assert "passed" in done.stdout, done.stdout
    # AND with the endpoint broken, the test fails and says why: its check lines (stderr) and
    # its verdict table name what the attempts saw, and so does `deliveries`' reason column
    assert "test failed (exit 1)" in done.stdout, done.stdout
    check_lines = [line for line in done.stderr.splitlines() if line.startswith("check_delivery")]
    assert any("connection refused" in line for line in check_lines), done.stderr
    verdict, listing = done.stdout.rsplit("test failed (exit 1)", 1)
    assert "connection refused" in verdict, verdict
    assert "connection refused" in listing, listing
    assert receiver.wait_for(1, path="/postback", timeout_s=60)[0].param("cid") == "c123"

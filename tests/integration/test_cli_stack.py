"""The config script against moto: every command through typer's CliRunner, the real adapters,
the tables and queue created from template.yaml (the `aws` fixture)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from fakes import ingest_conversion
from typer.testing import CliRunner, Result

from postback_ops.cli import app
from postback_ops.target import Target, pinned
from postback_relay.adapters.dynamodb_affiliates import DynamoAffiliateStore
from postback_relay.adapters.dynamodb_conversions import DynamoConversionLog
from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog
from postback_relay.adapters.dynamodb_endpoints import DynamoEndpointStore
from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
from postback_relay.domain.config import load_config_text
from postback_relay.domain.conversion import ConversionOutcome, ConversionResult
from postback_relay.domain.delivery import Attempt, Circuit, CircuitStatus, DeliveryRef, DeliveryState, PostbackMessage
from postback_relay.domain.events import Event
from postback_relay.domain.testrun import RunVerdict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "affiliates"
MOTO_CALLER = "arn:aws:sts::123456789012:user/moto"
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
ACME = """\
affiliate_id: "1234567"
name: Acme Media
postbacks:
  - events: [sale]
    url: "https://track.acme.example/postback?cid={clickid}&payout={amount}"
test_link: "https://track.acme.example/click"
"""
LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0"
    "&tracker=trID_a1-T9-c123-x_trID"
)

Invoke = Callable[..., Result]


def _state_machine(definition: Mapping[str, Any]) -> str:
    sfn = boto3.client("stepfunctions")
    return sfn.create_state_machine(
        name="postback-relay-test-TestLinkStateMachine",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/test-link",
    )["stateMachineArn"]


@pytest.fixture
def outputs(aws: dict[str, str]) -> dict[str, str]:
    """GIVEN the stack's outputs, with a test-link workflow that ends without recording a verdict."""
    return {
        **aws,
        "TestLinkStateMachineArn": _state_machine({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    }


def _invoker(target: Target) -> Iterator[Invoke]:
    runner = CliRunner()
    with pinned(target):
        yield lambda *args: runner.invoke(app, list(args))


@pytest.fixture
def postback(outputs: dict[str, str]) -> Iterator[Invoke]:
    """The script pointed at a deployed stack, which moto plays."""
    yield from _invoker(Target.from_outputs(outputs, name="relay-prod"))


@pytest.fixture
def postback_local(outputs: dict[str, str]) -> Iterator[Invoke]:
    """The script pointed at the local stack (loopback allowed, delays scaled)."""
    yield from _invoker(Target.from_outputs({**outputs, "DelayScale": "0.001"}, local=True, name="local"))


def write(tmp_path: Path, text: str, name: str = "acme.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def stdout_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# --- affiliates ---------------------------------------------------------------------------


def test_put_get_list_disable_enable(postback: Invoke, tmp_path: Path) -> None:
    # GIVEN a signed affiliate's config
    path = write(tmp_path, ACME + f"signing_secret: {SECRET}\n")
    # WHEN ops put it, get it, disable it, list, then enable it
    created = stdout_json(postback("--json", "affiliate", "put", str(path)))
    got = postback("--json", "affiliate", "get", "1234567")
    disabled = stdout_json(postback("--json", "affiliate", "disable", "1234567"))
    listed = stdout_json(postback("--json", "affiliate", "list"))
    enabled = stdout_json(postback("--json", "affiliate", "enable", "1234567"))
    # THEN each step is stored with a new version, by the caller's ARN, the secret never shown
    assert (created["change"], created["version"]) == ("create", 1)
    assert SECRET not in got.stdout
    stored = stdout_json(got)
    assert stored["config"]["signing_secret"] == "********"
    assert stored["updated_by"] == MOTO_CALLER
    assert (disabled["enabled"], disabled["version"]) == (False, 2)
    assert [(a["affiliate_id"], a["enabled"]) for a in listed] == [("1234567", False)]
    assert (enabled["enabled"], enabled["version"]) == (True, 3)


def test_put_dry_run_then_update(postback: Invoke, tmp_path: Path) -> None:
    # GIVEN a stored affiliate and an edit of it
    assert postback("affiliate", "put", str(write(tmp_path, ACME))).exit_code == 0
    edited = write(tmp_path, ACME.replace("events: [sale]", "events: [sale, rebill]"), "edited.yaml")
    # WHEN ops dry-run the edit, then apply it
    dry = stdout_json(postback("--json", "affiliate", "put", str(edited), "--dry-run"))
    after_dry = stdout_json(postback("--json", "affiliate", "get", "1234567"))
    applied = stdout_json(postback("--json", "affiliate", "put", str(edited)))
    # THEN the dry run shows the added event and changes nothing; the put stores version 2
    assert "+  - rebill\n" in dry["diff"]
    assert after_dry["version"] == 1
    assert (applied["change"], applied["version"]) == ("update", 2)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (("name: Acme Media\n", ""), "name", "required"),
        (("events: [sale]", "events: [sale, upsell]"), "postback 1, event 2", "`upsell` is not one of"),
        (("{amount}", "{commission}"), "postback 1, url", "unknown macro {commission}"),
        (("track.acme.example/postback", "192.168.1.20/postback"), "postback 1, url", "private"),
        (("https://track.acme.example/postback", "http://127.0.0.1:9000/postback"), "postback 1, url", "loopback"),
        (("https://track.acme.example/click", "http://0x7f.1/click"), "test_link", "loopback"),
    ],
)
def test_a_refused_config_names_the_field_and_why(
    postback: Invoke, tmp_path: Path, change: tuple[str, str], field: str, reason: str
) -> None:
    # GIVEN a config with one thing wrong
    path = write(tmp_path, ACME.replace(*change))
    # WHEN ops put it on a deployed stack
    result = postback("affiliate", "put", str(path))
    # THEN it exits 2 naming the field and the reason, and nothing is stored
    assert result.exit_code == 2, result.stdout
    assert field in result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert postback("affiliate", "get", "1234567").exit_code == 4


def test_the_local_stack_accepts_loopback_postbacks_as_local(postback_local: Invoke, tmp_path: Path) -> None:
    # GIVEN a postback to a receiver on this machine
    path = write(tmp_path, ACME.replace("https://track.acme.example/postback", "http://127.0.0.1:9000/postback"))
    # WHEN a developer puts it on the local stack
    created = stdout_json(postback_local("--json", "affiliate", "put", str(path)))
    stored = stdout_json(postback_local("--json", "affiliate", "get", "1234567"))
    # THEN it is stored, updated by "local"
    assert created["version"] == 1
    assert stored["updated_by"] == "local"


def test_an_exported_file_is_refused_after_someone_elses_change(postback: Invoke, tmp_path: Path) -> None:
    # GIVEN an export, then a change by someone else
    assert postback("affiliate", "put", str(write(tmp_path, ACME))).exit_code == 0
    assert postback("export", str(tmp_path / "out")).exit_code == 0
    theirs = write(tmp_path, ACME.replace("Acme Media", "Acme (theirs)"), "theirs.yaml")
    assert postback("affiliate", "put", str(theirs)).exit_code == 0
    mine = tmp_path / "out" / "1234567.yaml"
    mine.write_text(mine.read_text().replace("Acme Media", "Acme (mine)"))
    # WHEN ops put their edit of the stale export
    result = postback("affiliate", "put", str(mine))
    # THEN it is refused with exit 5 and the other change stays
    assert result.exit_code == 5
    assert "someone changed it since" in result.stderr
    assert stdout_json(postback("--json", "affiliate", "get", "1234567"))["config"]["name"] == "Acme (theirs)"


def test_a_create_racing_another_create_is_a_conflict(
    postback: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN someone else creates the same affiliate between this put's read and its write
    from postback_relay.adapters import dynamodb_affiliates

    real_get = dynamodb_affiliates.DynamoAffiliateStore.get

    def get_then_race(store: dynamodb_affiliates.DynamoAffiliateStore, affiliate_id: str) -> Any:
        seen = real_get(store, affiliate_id)
        monkeypatch.setattr(dynamodb_affiliates.DynamoAffiliateStore, "get", real_get)
        from postback_relay.domain.config import load_config_text

        store.put(load_config_text(ACME.replace("Acme Media", "Racer")), expected_version=None, updated_by="racer")
        return seen

    monkeypatch.setattr(dynamodb_affiliates.DynamoAffiliateStore, "get", get_then_race)
    # WHEN ops put their config
    result = postback("affiliate", "put", str(write(tmp_path, ACME)))
    # THEN the conditional write refuses it: exit 5, the racer's config stays
    assert result.exit_code == 5
    assert "already exists" in result.stderr
    assert stdout_json(postback("--json", "affiliate", "get", "1234567"))["config"]["name"] == "Racer"


def test_unknown_affiliates_exit_4(postback: Invoke) -> None:
    for args in (
        ["affiliate", "get", "404"],
        ["affiliate", "disable", "404"],
        ["affiliate", "enable", "404"],
        ["preview", "404", "--event", "sale", "--link", LINK],
        ["test", "start", "404"],
    ):
        result = postback(*args)
        assert result.exit_code == 4, args
        assert "No affiliate 404 is onboarded." in result.stderr


def test_export_then_put_changes_nothing(postback: Invoke, tmp_path: Path) -> None:
    # GIVEN every example stored, one disabled, and one signed affiliate
    for example in sorted(EXAMPLES.glob("*.yaml")):
        assert postback("affiliate", "put", str(example)).exit_code == 0, example
    signed = ACME.replace("1234567", "99") + f"signing_secret: {SECRET}\n"
    assert postback("affiliate", "put", str(write(tmp_path, signed))).exit_code == 0
    assert postback("affiliate", "disable", "2468135").exit_code == 0
    before = stdout_json(postback("--json", "affiliate", "list"))
    # WHEN ops export everything and put every file back
    exported = stdout_json(postback("--json", "export", str(tmp_path / "export")))
    puts = [stdout_json(postback("--json", "affiliate", "put", item["path"])) for item in exported]
    # THEN no put changes anything: same configs, same versions, same authors
    assert len(exported) == len(before) == 5
    assert [p["change"] for p in puts] == ["none"] * 5
    assert stdout_json(postback("--json", "affiliate", "list")) == before
    assert SECRET in Path(next(i["path"] for i in exported if i["affiliate_id"] == "99")).read_text()


# --- preview ------------------------------------------------------------------------------


def test_preview_renders_and_sends_nothing(postback: Invoke, outputs: dict[str, str]) -> None:
    # GIVEN the revshare example
    assert postback("affiliate", "put", str(EXAMPLES / "revshare-default.yaml")).exit_code == 0
    # WHEN ops preview a rebill
    data = stdout_json(
        postback("--json", "preview", "1234567", "--event", "rebill", "--link", LINK, "--amount", "9.90")
    )
    # THEN the URL is rendered, and the queue stays empty
    assert [p["url"] for p in data["postbacks"]] == [
        "https://track.acme.example/postback?cid=c123&payout=9.90&cur=EUR&ev=rebill&offer=89"
    ]
    queued = boto3.client("sqs").get_queue_attributes(
        QueueUrl=outputs["PostbackQueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert queued["Attributes"]["ApproximateNumberOfMessages"] == "0"


# --- deliveries and replay ----------------------------------------------------------------


def _log_delivery(
    log: DynamoDeliveryLog,
    conversions: DynamoConversionLog,
    n: int,
    state: DeliveryState,
    status: int,
    affiliate_id: str,
) -> None:
    at = datetime(2026, 11, 25, 12, n, tzinfo=UTC)
    # The conversion record names its postbacks: that is how a transaction's are found.
    conversion = ingest_conversion(transaction_id=f"T-{n}")
    message = PostbackMessage(
        delivery_id=f"d{n}",
        affiliate_id=affiliate_id,
        transaction_id=f"T-{n}",
        event=Event.SALE,
        offer_id="89",
        url=f"https://track.acme.example/postback?cid=c{n}",
        created_at=at,
    )
    result = ConversionResult(
        transaction_id=conversion.transaction_id,
        event=conversion.event,
        affiliate_id=affiliate_id,
        outcome=ConversionOutcome.QUEUED,
        postbacks_queued=1,
        delivery_ids=(f"d{n}",),
    )
    conversions.record(conversion, result, [message], received_at=at)
    attempt = Attempt(attempt=1, at=at, url=message.url, method=message.method, status=status, latency_ms=80 + n)
    log.record_attempt(message, attempt, state, reason=None if state is DeliveryState.DELIVERED else f"HTTP {status}")


@pytest.fixture
def delivery_log(outputs: dict[str, str]) -> DynamoDeliveryLog:
    """GIVEN three postbacks of affiliate 1234567 (one failed) and one failed of another."""
    client = boto3.client("dynamodb")
    log = DynamoDeliveryLog(outputs["DeliveriesTableName"], client=client)
    conversions = DynamoConversionLog(outputs["ConversionsTableName"], client=client)
    _log_delivery(log, conversions, 1, DeliveryState.DELIVERED, 200, "1234567")
    _log_delivery(log, conversions, 2, DeliveryState.FAILED, 404, "1234567")
    _log_delivery(log, conversions, 3, DeliveryState.RETRYING, 503, "1234567")
    _log_delivery(log, conversions, 4, DeliveryState.FAILED, 410, "7654321")
    # Both affiliates are onboarded: listing an unknown one's postbacks exits 4.
    affiliates = DynamoAffiliateStore(outputs["AffiliatesTableName"], client=client)
    for affiliate_id in ("1234567", "7654321"):
        config = load_config_text(ACME.replace("1234567", affiliate_id))
        affiliates.put(config, expected_version=None, updated_by="test")
    return log


@pytest.mark.usefixtures("delivery_log")
def test_deliveries_newest_first(postback: Invoke) -> None:
    rows = stdout_json(postback("--json", "deliveries", "--affiliate", "1234567"))
    assert [(r["delivery_id"], r["state"], r["attempts"], r["http_status"]) for r in rows] == [
        ("d3", "retrying", 1, 503),
        ("d2", "failed", 1, 404),
        ("d1", "delivered", 1, 200),
    ]
    assert rows[0]["url"] == "https://track.acme.example/postback?cid=c3"
    by_transaction = stdout_json(postback("--json", "deliveries", "--transaction", "T-4"))
    assert [r["delivery_id"] for r in by_transaction] == ["d4"]
    failed = stdout_json(postback("--json", "deliveries", "--state", "failed", "--limit", "1"))
    assert [r["delivery_id"] for r in failed] == ["d4"]


def test_replay_queues_failed_postbacks_again(
    postback: Invoke, delivery_log: DynamoDeliveryLog, outputs: dict[str, str]
) -> None:
    # WHEN ops replay affiliate 1234567's failed postbacks
    data = stdout_json(postback("--json", "replay", "--affiliate", "1234567"))
    # THEN its one failed postback is on the queue again and pending; the other affiliate's is not
    assert data == {"replayed": 1, "delivery_ids": ["d2"]}
    received = boto3.client("sqs").receive_message(QueueUrl=outputs["PostbackQueueUrl"], MaxNumberOfMessages=10)
    assert [json.loads(m["Body"])["delivery_id"] for m in received.get("Messages", [])] == ["d2"]
    record = delivery_log.get(DeliveryRef("1234567", datetime(2026, 11, 25, 12, 2, tzinfo=UTC), "d2"))
    assert record is not None
    assert record.state is DeliveryState.PENDING
    other = delivery_log.get(DeliveryRef("7654321", datetime(2026, 11, 25, 12, 4, tzinfo=UTC), "d4"))
    assert other is not None
    assert other.state is DeliveryState.FAILED


def test_endpoints_lists_circuits(postback: Invoke, outputs: dict[str, str]) -> None:
    # GIVEN one endpoint whose circuit is open
    store = DynamoEndpointStore(outputs["EndpointsTableName"], client=boto3.client("dynamodb"))
    store.save(Circuit("https://dead.example:443", CircuitStatus.OPEN, failures=5, opened_until=4102444800.0))
    # WHEN ops list the endpoints
    rows = stdout_json(postback("--json", "endpoints"))
    # THEN it shows open, with its failures and until when
    assert [(r["endpoint"], r["state"], r["failures"], r["opened_until"]) for r in rows] == [
        ("https://dead.example:443", "open", 5, "2100-01-01T00:00:00+00:00")
    ]


# --- test runs ----------------------------------------------------------------------------


def test_start_then_status_follows_the_recorded_verdict(postback: Invoke, outputs: dict[str, str]) -> None:
    # GIVEN an affiliate with a test link
    assert postback("affiliate", "put", str(EXAMPLES / "revshare-default.yaml")).exit_code == 0
    # WHEN ops start a run and ask for its status, and the workflow later records `passed`
    started = stdout_json(postback("--json", "test", "start", "1234567"))
    running = stdout_json(postback("--json", "test", "status", started["run_id"]))
    runs = DynamoTestRunStore(outputs["TestRunsTableName"], client=boto3.client("dynamodb"))
    runs.finish(started["run_id"], RunVerdict.PASSED, step=None, reason=None, at=datetime.now(UTC))
    passed = postback("--json", "test", "status", started["run_id"])
    # THEN status reads running, then passed (exit 0); the run was started by the caller
    assert running["verdict"] == "running"
    assert running["started_by"] == MOTO_CALLER
    assert stdout_json(passed)["verdict"] == "passed"
    assert postback("test", "status", "20990101T000000-00000000").exit_code == 4


def test_wait_reports_a_workflow_that_ended_without_verdict_as_failed(aws: dict[str, str], tmp_path: Path) -> None:
    # GIVEN a local stack whose test-link workflow fails outright
    arn = _state_machine({"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Boom", "Cause": "x"}}})
    target = Target.from_outputs({**aws, "TestLinkStateMachineArn": arn, "DelayScale": "0.001"}, local=True)
    runner = CliRunner()
    with pinned(target):
        path = write(tmp_path, ACME.replace("https://track.acme.example/click", "http://127.0.0.1:9/click"))
        assert runner.invoke(app, ["affiliate", "put", str(path)]).exit_code == 0
        # WHEN ops start a test and wait for its verdict
        result = runner.invoke(app, ["--json", "test", "start", "1234567", "--wait", "--poll-interval", "0.05"])
    # THEN the verdict is failed at the workflow step, and the exit code is 1
    assert result.exit_code == 1, result.stderr
    verdict = json.loads(result.stdout)
    assert (verdict["verdict"], verdict["step"]) == ("failed", "workflow")
    assert "ended failed" in verdict["reason"]

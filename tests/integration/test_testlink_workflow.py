"""The test-link workflow end to end on moto: the real definition run by moto's Step Functions
executor, its Lambda tasks routed to the in-process handler, the affiliate's servers real HTTP
servers on 127.0.0.1, and postbacks delivered from the moto queue (contract section 5)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

import dispatch_handler
import testlink_handler
from postback_ops.local.lambda_router import LocalLambdaContext, route_lambda_tasks
from postback_ops.local.poller import to_lambda_record
from postback_ops.local.statemachine import TEST_LINK_FUNCTION_NAME, create_test_link_state_machine
from postback_relay import wiring
from postback_relay.adapters.dynamodb_affiliates import DynamoAffiliateStore
from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
from postback_relay.adapters.sfn_runner import SfnTestWorkflow
from postback_relay.domain.config import parse_config
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.testrun import RunVerdict, TestRun
from postback_relay.services.testlink import FollowResult, TestLinkService
from postback_relay.services.testlink.tracker import TestRunTracker

pytestmark = pytest.mark.slow

AFFILIATE_ID = "1234567"
NETWORK_LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0"
    "&tracker=trID_a1-T9-c123-x_trID"
)
RUN_TIMEOUT_S = 60.0  # a loose bound: a run here takes a few seconds

Route = Callable[[], tuple[int, dict[str, str]]]


# --- the affiliate's servers ------------------------------------------------------------------


@dataclass
class AffiliateServer:
    """The affiliate's click tracker and postback receiver, on one loopback port."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    base: str = ""

    def redirect(self, path: str, location: str) -> None:
        self.routes[path] = lambda: (302, {"Location": location})

    def answer(self, path: str, *statuses: int) -> None:
        """Answer these statuses in turn, the last one for ever after."""
        remaining = list(statuses)

        def route() -> tuple[int, dict[str, str]]:
            return (remaining.pop(0) if len(remaining) > 1 else remaining[0]), {}

        self.routes[path] = route

    def paths(self) -> list[str]:
        return [r.split("?", 1)[0] for r in self.requests]


@pytest.fixture
def affiliate_server() -> Iterator[AffiliateServer]:
    server_state = AffiliateServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_state.requests.append(self.path)
            route = server_state.routes.get(self.path.split("?", 1)[0])
            status, headers = route() if route else (404, {})
            body = b"ok" if status < 300 else b"no"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server_state
    server.shutdown()
    server.server_close()


# --- the dispatcher ----------------------------------------------------------------------------


class DispatchDriver:
    """Plays Lambda's SQS event source for the real dispatch function: receives from the moto
    queue, calls the handler with the batch, deletes what it did not report as a batch item
    failure (those it has already made visible again at their next attempt)."""

    def __init__(self, queue_url: str) -> None:
        self._sqs = boto3.client("sqs")
        self._queue_url = queue_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[BaseException] = []

    def __enter__(self) -> DispatchDriver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self.errors, self.errors

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except BaseException as exc:  # reported by __exit__, in the test's thread
                self.errors.append(exc)
                return
            self._stop.wait(0.05)

    def _poll(self) -> None:
        answer = self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
        )
        messages = answer.get("Messages", [])
        if not messages:
            return
        queue_arn = "arn:aws:sqs:eu-west-1:123456789012:postback-queue"
        event = {"Records": [to_lambda_record(m, queue_arn=queue_arn, region="eu-west-1") for m in messages]}
        response = dispatch_handler.lambda_handler(event, LocalLambdaContext("DispatchFunction"))
        failures = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] not in failures:
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=m["ReceiptHandle"])


# --- the workflow -------------------------------------------------------------------------------


@dataclass
class Workflow:
    outputs: dict[str, str]
    starter: TestRunTracker
    server: AffiliateServer

    def put_affiliate(self, *, postbacks: list[str] | None = None, test_link: str | None = None) -> None:
        urls = postbacks or [f"{self.server.base}/pb?cid={{clickid}}&amount={{amount}}&tx={{transaction_id}}"]
        config = parse_config(
            {
                "affiliate_id": AFFILIATE_ID,
                "name": "Acme Media",
                "postbacks": [{"events": ["sale"], "url": url} for url in urls],
                "test_link": test_link or f"{self.server.base}/click",
            },
            allow_loopback=True,
        )
        DynamoAffiliateStore(
            self.outputs["AffiliatesTableName"], client=boto3.client("dynamodb"), allow_loopback=True
        ).put(config, expected_version=None, updated_by="test")

    def run(self, *, waits: list[int] | None = None, deadline_s: int = 20) -> TestRun:
        """Start a run and wait for the execution to end; returns the run's record."""
        run_id = self.starter.start(AFFILIATE_ID, "ops@test", waits or [1], deadline_s)
        sfn = boto3.client("stepfunctions")
        arn = f"{self.outputs['TestLinkStateMachineArn'].replace(':stateMachine:', ':execution:')}:{run_id}"
        give_up = time.monotonic() + RUN_TIMEOUT_S
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            assert time.monotonic() < give_up, "the test-link execution did not end"
            time.sleep(0.1)  # polling moto's execution: it signals its end no other way
        return self.starter.status(run_id)

    def queued(self) -> int:
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.outputs["PostbackQueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


@pytest.fixture
def workflow(
    aws: dict[str, str], affiliate_server: AffiliateServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workflow]:
    """GIVEN the test-link state machine on moto, its tasks run by the in-process handler."""
    # Clients of an earlier moto session must not be reused; every retry delay runs scaled
    # down (to the 1 s floor), as on the local stack.
    wiring.reset()
    dispatch_handler.dispatcher.use(
        wiring.dispatcher(dispatch_handler.settings.model_copy(update={"delay_scale": 0.001}))
    )
    sfn = boto3.client("stepfunctions")
    arn = create_test_link_state_machine(sfn)
    outputs = {**aws, "TestLinkStateMachineArn": arn}
    runs = DynamoTestRunStore(outputs["TestRunsTableName"], client=boto3.client("dynamodb"))
    with route_lambda_tasks({TEST_LINK_FUNCTION_NAME: testlink_handler.lambda_handler}):
        yield Workflow(outputs, TestRunTracker(SfnTestWorkflow(arn, client=sfn), runs), affiliate_server)
    wiring.reset()


def dispatcher(workflow: Workflow) -> DispatchDriver:
    return DispatchDriver(workflow.outputs["PostbackQueueUrl"])


def step_names(run: TestRun) -> list[str]:
    return [step.name for step in run.steps]


def test_a_working_integration_passes(workflow: Workflow) -> None:
    # GIVEN a test link redirecting (twice) to the network link, and a working postback receiver
    workflow.server.redirect("/click", f"{workflow.server.base}/hop")
    workflow.server.redirect("/hop", NETWORK_LINK)
    workflow.server.answer("/pb", 200)
    workflow.put_affiliate()
    # WHEN a run is started
    with dispatcher(workflow):
        run = workflow.run()
    # THEN it passed, the network link was never requested, the postback carried the tracker values
    assert (run.verdict, run.step, run.reason) == (RunVerdict.PASSED, None, None)
    assert step_names(run)[:3] == ["follow_link", "check_tracker", "fire_postbacks"]
    assert run.steps[0].details["network_link"] == NETWORK_LINK
    assert run.steps[1].details["tracker_values"]["clickid"] == "c123"
    pb = [r for r in workflow.server.requests if r.startswith("/pb")]
    assert pb == [f"/pb?cid=c123&amount=0&tx=test-{run.run_id}-1"]
    assert workflow.server.paths() == ["/click", "/hop", "/pb"]


def test_unfilled_placeholders_fail_at_the_tracker_and_fire_nothing(workflow: Workflow) -> None:
    # GIVEN a tracker that leaves #clickId# in the link
    workflow.server.redirect("/click", NETWORK_LINK.replace("c123", "#clickId#"))
    workflow.put_affiliate()
    # WHEN
    run = workflow.run()
    # THEN
    assert (run.verdict, run.step) == (RunVerdict.FAILED, "check_tracker")
    assert run.reason == "placeholder #clickId# was not filled by your tracker"
    assert "fire_postbacks" not in step_names(run)
    assert workflow.queued() == 0


def test_an_endpoint_failing_twice_then_recovering_passes_on_a_later_check(workflow: Workflow) -> None:
    # GIVEN a receiver answering 500, 500, then 200 (the dispatcher retries a second apart)
    workflow.server.redirect("/click", NETWORK_LINK)
    workflow.server.answer("/pb", 500, 500, 200)
    workflow.put_affiliate()
    # WHEN
    with dispatcher(workflow):
        run = workflow.run(waits=[1])
    # THEN the run passed after a check that saw the postback still retrying
    assert run.verdict is RunVerdict.PASSED, run.reason
    checks = [step.details["deliveries"][0] for step in run.steps if step.name == "check_delivery"]
    assert checks[0]["state"] in {"pending", "retrying"}
    assert checks[-1]["state"] == "delivered"
    assert checks[-1]["attempts"] == 3
    assert [p for p in workflow.server.paths() if p == "/pb"] == ["/pb"] * 3


def test_a_dead_endpoint_fails_at_the_deadline(workflow: Workflow) -> None:
    # GIVEN a receiver that always answers 500
    workflow.server.redirect("/click", NETWORK_LINK)
    workflow.server.answer("/pb", 500)
    workflow.put_affiliate()
    # WHEN the run's deadline is 3 seconds
    with dispatcher(workflow):
        run = workflow.run(waits=[1], deadline_s=3)
    # THEN it failed at the delivery check, saying what the server answered
    assert (run.verdict, run.step) == (RunVerdict.FAILED, "check_delivery")
    assert run.reason is not None
    assert "was not delivered: your server answered 500 on" in run.reason
    assert run.reason.endswith("attempts over 3 seconds")


@pytest.mark.parametrize(
    ("routes", "reason"),
    [
        ({"/click": "http://10.0.0.5/x"}, "the test link redirected to a private address (10.0.0.5)"),
        ({"/click": "/b", "/b": "/click"}, "redirects in a loop"),
        ({"/click": "/landing"}, "without redirecting to a network link on www.espace-plus.net"),
    ],
    ids=["private-address", "redirect-loop", "never-reaches-the-network"],
)
def test_a_broken_test_link_fails_at_follow_link_with_its_reason(
    workflow: Workflow, routes: dict[str, str], reason: str
) -> None:
    # GIVEN a test link with redirects that go wrong
    for path, location in routes.items():
        target = location if location.startswith("http") else f"{workflow.server.base}{location}"
        workflow.server.redirect(path, target)
    workflow.server.answer("/landing", 200)
    workflow.put_affiliate()
    # WHEN
    run = workflow.run()
    # THEN the run failed at the first step with its own reason, and nothing was fired
    assert (run.verdict, run.step) == (RunVerdict.FAILED, "follow_link")
    assert reason in (run.reason or "")
    assert step_names(run) == ["follow_link"]
    assert workflow.queued() == 0


def test_an_error_in_a_step_becomes_a_verdict(workflow: Workflow, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a step that crashes with an error no Retry covers
    workflow.put_affiliate()

    def crash(self: TestLinkService, run_id: str, affiliate_id: str) -> FollowResult:
        raise RuntimeError("the step crashed")

    monkeypatch.setattr(TestLinkService, "follow_link", crash)
    # WHEN
    run = workflow.run()
    # THEN the Catch recorded the verdict with the step and the error
    assert (run.verdict, run.step) == (RunVerdict.FAILED, "follow_link")
    assert run.reason == "the follow_link step could not complete (RuntimeError): the step crashed"
    assert step_names(run) == ["record_verdict"]
    json.dumps(run.to_json())  # the CLI prints it as JSON


def test_a_transient_error_is_retried(workflow: Workflow, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a first follow_link that meets an infrastructure error, and a working integration
    workflow.server.redirect("/click", NETWORK_LINK)
    workflow.server.answer("/pb", 200)
    workflow.put_affiliate()
    original = TestLinkService.follow_link
    calls: list[str] = []

    def flaky(self: TestLinkService, run_id: str, affiliate_id: str) -> FollowResult:
        calls.append(run_id)
        if len(calls) == 1:
            raise InfrastructureError("DynamoDB is throttling")
        return original(self, run_id, affiliate_id)

    monkeypatch.setattr(TestLinkService, "follow_link", flaky)
    # WHEN
    with dispatcher(workflow):
        run = workflow.run()
    # THEN the workflow retried the step and the run passed
    assert run.verdict is RunVerdict.PASSED, run.reason
    assert len(calls) == 2

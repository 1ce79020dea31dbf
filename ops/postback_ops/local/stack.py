"""The whole relay on this machine: moto for AWS, the real handlers in-process.

`LocalRelay(settings).start()` (or `with LocalRelay(settings) as relay:`) starts, in order:
a moto server (DynamoDB, SQS, Secrets Manager, SSM, Step Functions), the template's tables,
queues and secret, the handlers with the environment the template gives them, the test-link
state machine, the HTTP API, the outbox's stream poller (the conversions table's stream ->
the outbox function), the dispatcher's SQS poller and an affiliate receiver on loopback.
`stop()` takes it all down again and gives the process its environment back.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from postback_ops.local import lambda_router, resources, statemachine
from postback_ops.local.alarms import AlarmLog
from postback_ops.local.apigw import HttpRequest, HttpResponse, LocalHttpApi, Route, api_routes
from postback_ops.local.dynamo_locks import TableLockedDynamoDB
from postback_ops.local.moto_patches import patch_moto
from postback_ops.local.poller import BatchOutcome, SqsPoller, mapping_for
from postback_ops.local.receiver import Answer, Hit, Receiver, describe
from postback_ops.local.runtime import LocalFunction, function_specs, json_logs_wanted, load_functions
from postback_ops.local.stream import StreamBatchOutcome, StreamPoller, stream_mappings_for
from postback_ops.local.timing import LocalFloors, local_testlink_deadline_s, retry_schedule_s
from postback_ops.target import local_stack_file, local_state_dir
from postback_ops.template import (
    REPO_ROOT,
    TEMPLATE_PATH,
    load_template,
    parameter_defaults,
    parse_parameter_overrides,
    with_parameters,
)
from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
from postback_relay.domain import messages
from postback_relay.domain.delivery import MAX_ATTEMPTS, PostbackMessage

OUTPUTS_PARAMETER = "/postback-relay/local/outputs"
DEFAULT_SECRET = "local-dev-secret"  # noqa: S105 - the local stack's documented default (contract 6)
STACK_NAME = "postback-relay-local"
HOST = "127.0.0.1"
# Files the local stack writes for its user (gitignored): the stack record `postback --local`
# reads (stack.json) and the receiver's affiliate config. POSTBACK_LOCAL_STATE_DIR moves them.
STATE_DIR = REPO_ROOT / ".local-stack"
RECEIVER_AFFILIATE_ID = "1234567"
# Where the receiver's test link redirects: a network link carrying the receiver affiliate's
# tracker, so that `postback --local test start 1234567` passes out of the box.
RECEIVER_NETWORK_LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0"
    f"&id={RECEIVER_AFFILIATE_ID}&e=1&w=0&tracker=trID_demo-T0-c424242-x_trID"
)

Log = Callable[[str], None]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


class PortBusy(OSError):
    """A port of the local stack is taken; the message names it and the knob that moves it."""


@contextmanager
def _binding(port: int, knob: str) -> Iterator[None]:
    try:
        yield
    except (OSError, SystemExit) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.EADDRINUSE, errno.EACCES, None):
            raise
        raise PortBusy(
            f"port {port} is already in use (another `make run`?): stop what holds it, "
            f"or set {knob} to another port (0 takes any free one)"
        ) from exc


class MotoServer(ThreadedMotoServer):
    """moto's ThreadedMotoServer, binding its port before `start()` returns.

    The original binds in its thread: a port already taken leaves `start()` waiting forever.
    Here the bind error reaches the caller, who can say which port is taken.
    """

    def start(self) -> None:
        app = TableLockedDynamoDB(
            DomainDispatcherApplication(create_backend_app),
            serial=os.environ.get("POSTBACK_LOCAL_DYNAMODB", "serial") != "tables",
        )
        try:
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        except SystemExit as exc:  # werkzeug exits the process when the port is taken
            raise OSError(f"port {self._port} is already in use") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()


@dataclass(frozen=True)
class LocalSettings:
    """How the local stack runs. Ports of 0 take any free port (the tests do)."""

    api_port: int = 3000
    aws_port: int = 4566
    receiver_port: int | None = 3001  # None: no receiver
    signing_secret: str = DEFAULT_SECRET
    # 0.00025 turns the ~27 h retry schedule into under a minute, the local floors included
    # (contract section 6; `timing.retry_schedule_s` gives the bound, the banner prints it).
    delay_scale: float = 0.00025
    dispatch_concurrency: int = 2
    log_level: str = "WARNING"  # the handlers' Powertools logs; the stack's own lines always show
    template_path: Path = TEMPLATE_PATH
    # Where to write an affiliate config for the receiver (None: nowhere; the demo writes its own).
    receiver_affiliate_path: Path | None = STATE_DIR / "receiver-affiliate.yaml"
    # Where to record the running stack for `postback --local` (None: nowhere).
    stack_file: Path | None = None
    # Template parameters other than their defaults (batching windows, batch sizes), as
    # `sam deploy --parameter-overrides` takes them: POSTBACK_LOCAL_PARAMETER_OVERRIDES.
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> LocalSettings:
        receiver = os.environ.get("POSTBACK_LOCAL_RECEIVER_PORT", "3001")
        return cls(
            api_port=_env_int("POSTBACK_LOCAL_API_PORT", 3000),
            aws_port=_env_int("POSTBACK_LOCAL_AWS_PORT", 4566),
            receiver_port=None if receiver.lower() in ("", "off", "none") else int(receiver),
            signing_secret=os.environ.get("POSTBACK_SIGNING_SECRET") or DEFAULT_SECRET,
            delay_scale=float(os.environ.get("POSTBACK_LOCAL_DELAY_SCALE") or cls.delay_scale),
            dispatch_concurrency=_env_int("POSTBACK_LOCAL_DISPATCH_CONCURRENCY", 2),
            log_level=os.environ.get("POSTBACK_LOCAL_LOG_LEVEL")
            or ("INFO" if json_logs_wanted(os.environ) else "WARNING"),
            receiver_affiliate_path=local_state_dir() / "receiver-affiliate.yaml",
            stack_file=local_stack_file(),
            parameter_overrides=parse_parameter_overrides(os.environ.get("POSTBACK_LOCAL_PARAMETER_OVERRIDES", "")),
        )


@dataclass
class LocalRelay:
    """The running local stack. Read `outputs`, `api_url`, `aws_endpoint`, `receiver` once started.

    One per process: the handler modules read their settings and build their clients once,
    as on a cold start, so a second stack in the same process would find them bound to the
    first. Tests run it as a subprocess (`python -m postback_ops.local`).
    """

    settings: LocalSettings = field(default_factory=LocalSettings)
    log: Log = print
    outputs: dict[str, str] = field(default_factory=dict)
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    receiver: Receiver | None = None
    receiver_affiliate_file: Path | None = None
    floors: LocalFloors | None = None
    aws_endpoint: str = ""
    api_url: str = ""
    _moto: MotoServer | None = None
    _api: LocalHttpApi | None = None
    _pollers: list[SqsPoller] = field(default_factory=list)
    _alarms: AlarmLog | None = None
    _stream_pollers: list[StreamPoller] = field(default_factory=list)
    _saved_env: dict[str, str] | None = None
    _session: boto3.Session | None = None
    _deliveries_table: str = ""
    _log_lock: threading.Lock = field(default_factory=threading.Lock)
    _routed: list[str] = field(default_factory=list)
    _recorded: Path | None = None
    # Told apart from any other local stack (or another program on its port) by this token.
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalRelay:
        self._saved_env = dict(os.environ)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        s = self.settings
        session = self._start_moto()
        template = with_parameters(load_template(s.template_path), s.parameter_overrides)
        stack = resources.create_resources(
            session, stack_name=STACK_NAME, signing_secret=s.signing_secret, template=template
        )
        specs = function_specs(template, stack)
        self.functions = load_functions(
            specs, overrides=self._handler_overrides(), region=resources.LOCAL_REGION, account=resources.LOCAL_ACCOUNT
        )
        self.outputs = dict(stack.outputs)
        self._deliveries_table = self.outputs.get("DeliveriesTableName", "")
        state_machine_arn = self._create_state_machine(template, stack)
        if state_machine_arn:
            self.outputs["TestLinkStateMachineArn"] = state_machine_arn
            # The portal starts test runs: its service, built on its first request, reads this
            # (the template's !Ref is known only once the state machine exists).
            os.environ["TEST_LINK_STATE_MACHINE_ARN"] = state_machine_arn
        if s.receiver_port is not None:
            self._start_receiver(s.receiver_port)
        self._start_api(template)
        self._start_event_sources(session, template, stack)
        if self.floors is not None:
            # The test link's deadline and the retry schedule's length as this stack runs them.
            self.outputs["TestLinkDeadlineSeconds"] = str(
                local_testlink_deadline_s(scale=s.delay_scale, floors=self.floors)
            )
            # The portal starts test runs too: its service, built on its first request, reads this.
            os.environ["TEST_DEADLINE_S"] = self.outputs["TestLinkDeadlineSeconds"]
            self.outputs["RetryScheduleSeconds"] = str(
                math.ceil(retry_schedule_s(scale=s.delay_scale, floors=self.floors))
            )
        # Last: the published outputs tell the config script the stack is up; the token in them
        # and in the stack record tells it that what answers is this very stack.
        self.outputs["StackToken"] = self.token
        session.client("ssm").put_parameter(
            Name=OUTPUTS_PARAMETER, Value=json.dumps(self.outputs), Type="String", Overwrite=True
        )
        if s.stack_file is not None:
            self._record(s.stack_file)

    def _start_moto(self) -> boto3.Session:
        """moto's server on its port, and this process's AWS clients pointed at it."""
        # moto's server logs every AWS call on stderr; the stack logs what matters, one line each.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # Its pollers delete while the dispatcher queues waiting postbacks' delayed copies.
        patch_moto()
        moto = MotoServer(ip_address=HOST, port=self.settings.aws_port, verbose=False)
        with _binding(self.settings.aws_port, "POSTBACK_LOCAL_AWS_PORT"):
            moto.start()
        self._moto = moto
        host, port = moto.get_host_and_port()
        self.aws_endpoint = f"http://{host}:{port}"
        self._point_aws_at_moto()
        self._session = boto3.Session(region_name=resources.LOCAL_REGION)
        return self._session

    def _start_receiver(self, receiver_port: int) -> None:
        """The affiliate receiver: a network's click redirect and the postbacks' destination."""
        with _binding(receiver_port, "POSTBACK_LOCAL_RECEIVER_PORT"):
            self.receiver = Receiver(host=HOST, port=receiver_port, on_hit=self._log_hit).start()
        self.receiver.respond("/click", [Answer.redirect(RECEIVER_NETWORK_LINK)])
        if self.settings.receiver_affiliate_path is not None:
            self.receiver_affiliate_file = write_receiver_affiliate(
                self.receiver.url, self.settings.receiver_affiliate_path
            )

    def _start_api(self, template: Mapping[str, Any]) -> None:
        s = self.settings
        with _binding(s.api_port, "POSTBACK_LOCAL_API_PORT"):
            self._api = LocalHttpApi(
                api_routes(template, self.functions),
                host=HOST,
                port=s.api_port,
                on_request=self._log_request,
                on_error=self._log_function_error,
            )
        self.api_url = self._api.url
        self.outputs["ApiUrl"] = self.api_url
        self.outputs["DelayScale"] = str(s.delay_scale)
        self._api.start()

    def _start_event_sources(
        self, session: boto3.Session, template: Mapping[str, Any], stack: resources.LocalStack
    ) -> None:
        """The alarm log, and the pollers Lambda's event sources would be (streams and queues)."""
        sqs = session.client("sqs")
        alarm_topic = stack.refs.get("AlarmTopic")
        if alarm_topic:
            self._alarms = AlarmLog(
                session.client("sns"), sqs, alarm_topic, queue_name=f"{STACK_NAME}-alarm-log", say=self._say
            ).start()
        streams = session.client("dynamodbstreams")
        for function in self.functions.values():
            for stream_mapping in stream_mappings_for(
                function,
                resolve=lambda value: stack.resolve(value, parameter_defaults(template)),
                queue_url_for_arn=_queue_urls(stack),
            ):
                stream_poller = StreamPoller(
                    streams,
                    stream_mapping,
                    function.invoke,
                    region=resources.LOCAL_REGION,
                    sqs=sqs,
                    on_batch=self._log_stream_batch,
                )
                stream_poller.start()
                self._stream_pollers.append(stream_poller)
            for mapping in mapping_for(
                function,
                resolve=lambda value: stack.resolve(value, parameter_defaults(template)),
                queue_url_for_arn=_queue_urls(stack),
                concurrency=self.settings.dispatch_concurrency,
            ):
                poller = SqsPoller(
                    sqs, mapping, function.invoke, region=resources.LOCAL_REGION, on_batch=self._log_batch
                )
                poller.start()
                self._pollers.append(poller)
                if mapping.queue_url == self.outputs.get("PostbackQueueUrl"):
                    self.floors = _dispatch_floors(function, poller)

    def _record(self, path: Path) -> None:
        record = {
            "token": self.token,
            "aws_endpoint": self.aws_endpoint,
            "api_url": self.api_url,
            "receiver_url": self.receiver.url if self.receiver else None,
            "pid": os.getpid(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)
        self._recorded = path

    def _forget_record(self) -> None:
        """Remove the stack record, unless another stack has written its own since."""
        path, self._recorded = self._recorded, None
        if path is None:
            return
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("token") == self.token:
                path.unlink()
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        self._forget_record()
        if self._api:
            self._api.stop()
            self._api = None
        for stream_poller in self._stream_pollers:
            stream_poller.stop()
        self._stream_pollers.clear()
        for poller in self._pollers:
            poller.stop()
        self._pollers.clear()
        if self._alarms:
            self._alarms.stop()
            self._alarms = None
        if self.receiver:
            self.receiver.stop()
            self.receiver = None
        if self._routed:
            lambda_router.uninstall_routes(dict.fromkeys(self._routed))
            self._routed.clear()
        if self._moto:
            self._moto.stop()
            self._moto = None
        if self._saved_env is not None:
            os.environ.clear()
            os.environ.update(self._saved_env)
            self._saved_env = None

    def __enter__(self) -> LocalRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- wiring -------------------------------------------------------------------------------

    def _point_aws_at_moto(self) -> None:
        """Every boto3 client of this process, the handlers' included, reaches moto."""
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.aws_endpoint,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": resources.LOCAL_REGION,
                "AWS_REGION": resources.LOCAL_REGION,
            }
        )

    def _handler_overrides(self) -> dict[str, str]:
        """What the local runtime changes in the template's environment, and why."""
        return {
            "ALLOW_LOOPBACK": "true",  # postbacks may go to a receiver on this machine (contract 3)
            "DELAY_SCALE": str(self.settings.delay_scale),  # retries and test waits end within a minute
            "POWERTOOLS_LOG_LEVEL": self.settings.log_level,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines would drown the stack's own log
            "POWERTOOLS_DEV": "false",
        }

    def _create_state_machine(self, template: Mapping[str, Any], stack: resources.LocalStack) -> str | None:
        """The test-link state machine, its Lambda tasks routed to the in-process handler."""
        testlink = self.functions.get("TestLinkFunction")
        if testlink is None or self._session is None:
            return None
        lambda_router.route(testlink.arn, self._logged_test_step(testlink.invoke))
        self._routed.append(testlink.arn)
        return statemachine.create_state_machine(
            self._session, template=template, stack=stack, function_arns={"TestLinkFunction": testlink.arn}
        )

    # --- one line per thing that happened -----------------------------------------------------

    def _say(self, line: str) -> None:
        with self._log_lock:
            self.log(line)

    def _logged_test_step(self, invoke: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The test-link function, each step followed by one line of what it saw (the run's
        newest step, as `postback test start --wait` prints it)."""

        def invoke_and_say(event: Any) -> Any:
            answer = invoke(event)
            run_id = event.get("run_id") if isinstance(event, Mapping) else None
            if run_id:
                self._log_test_step(str(run_id))
            return answer

        return invoke_and_say

    def _log_test_step(self, run_id: str) -> None:
        from postback_ops.cli_testruns import step_line  # the CLI's words for a step

        table = self.outputs.get("TestRunsTableName")
        if not (table and self._session):
            return
        try:
            run = DynamoTestRunStore(table, client=self._session.client("dynamodb")).get(run_id)
        except Exception:  # noqa: BLE001 - a log line must never break the workflow
            return
        if run is None or not run.steps:
            return
        step = run.steps[-1].model_dump(mode="json")
        verdict = f" -> {run.verdict.value}: {run.reason}" if run.verdict.value == "failed" and run.reason else ""
        self._say(f"test      {run_id} {step_line(step)}{verdict}")

    def _log_function_error(self, trace: str) -> None:
        """A function's crash: its last line (the exception) for people; the whole traceback
        with POSTBACK_LOCAL_LOG=json."""
        if json_logs_wanted(os.environ):
            self._say(f"function error:\n{trace}")
            return
        last = trace.strip().splitlines()[-1] if trace.strip() else "unknown error"
        self._say(f"function error: {last[:200]} (POSTBACK_LOCAL_LOG=json shows the traceback)")

    def _log_hit(self, hit: Hit) -> None:
        self._say(describe(hit))

    def _log_request(self, request: HttpRequest, route: Route | None, response: HttpResponse, elapsed_s: float) -> None:
        ms = int(elapsed_s * 1000)
        path = urlsplit(request.target).path
        if path == "/portal" or path.startswith("/portal/"):
            # The path alone: a portal query carries a link, and its pages are no refusal to show.
            self._say(f"portal    {request.method} {path} -> {response.status} ({ms} ms)")
            return
        results = _conversion_results(response.body) if route and response.status < 300 else []
        if not results:
            detail = refusal_line(response.body)
            self._say(f"api       {request.method} {request.target} -> {response.status} ({ms} ms) {detail}")
            return
        for result in results:
            queued = result.get("postbacks_queued", 0)
            reason = f": {str(result['reason']).rstrip('.')}" if result.get("reason") else ""
            if result.get("repeat"):
                reason += " (a repeat: the first time's answer; nothing new is queued)"
            self._say(
                f"conversion {result.get('transaction_id')} {result.get('event')}"
                f" affiliate={result.get('affiliate_id')}"
                f" -> {response.status} {result.get('outcome')}, {queued} postback(s) queued{reason} ({ms} ms)"
            )

    def _log_stream_batch(self, outcome: StreamBatchOutcome) -> None:
        if outcome.error:
            self._say(f"outbox    batch of {len(outcome.records)} to retry: {outcome.error.strip()}")
        elif outcome.failed:
            self._say(f"outbox    {len(outcome.failed)} of {len(outcome.records)} conversion(s) to retry")
        for failure in outcome.discarded:
            info = failure["DDBStreamBatchInfo"]
            self._say(
                f"outbox    gave up on {info['batchSize']} conversion(s) ({failure['requestContext']['condition']}):"
                " on the OutboxFailureQueue, see `postback outbox recover`"
            )

    def _log_batch(self, outcome: BatchOutcome) -> None:
        if outcome.error:
            self._say(f"dispatch  batch of {len(outcome.records)} left on the queue: {outcome.error.strip()}")
        for record in outcome.records:
            try:
                message = json.loads(record["body"])
            except (ValueError, TypeError):
                self._say(f"postback  message {record['messageId']}: not JSON")
                continue
            state, status, reason = self._delivery_state(record["body"])
            again = " (back on the queue)" if record["messageId"] in outcome.failed_ids else ""
            self._say(
                f"postback  {message.get('transaction_id')} {message.get('event')}"
                f" affiliate={message.get('affiliate_id')}"
                f" {message.get('method', 'GET')} {message.get('url')} -> {state}"
                f"{f' (HTTP {status})' if status and not reason else ''}{f': {reason}' if reason else ''}{again}"
            )

    def _delivery_state(self, body: str) -> tuple[str, Any, str | None]:
        """The delivery's state after the attempt, read from the delivery log for the log line,
        with what the attempt saw when it was not delivered (`attempt 3 of 8: connection refused`)."""
        if not (self._session and self._deliveries_table):
            return "?", None, None
        try:
            ref = PostbackMessage.model_validate_json(body).ref
            item = (
                self._session.resource("dynamodb")
                .Table(self._deliveries_table)
                .get_item(Key={"affiliate_id": ref.affiliate_id, "delivery_key": ref.sort_key}, ConsistentRead=True)
                .get("Item")
            )
        except Exception:  # noqa: BLE001 - a log line must never break the poller
            return "?", None, None
        if not item:
            return "not logged", None, None
        return str(item.get("state", "?")), *_attempt_words(item)


def receiver_affiliate_config(receiver_url: str, *, affiliate_id: str = RECEIVER_AFFILIATE_ID) -> str:
    """An affiliate config (YAML) whose postbacks go to the receiver: every event, one URL each."""
    return f"""# Written by the local stack: an affiliate whose postbacks go to the receiver on loopback.
# Onboard it with: postback --local affiliate put <this file>
affiliate_id: "{affiliate_id}"
name: Local Receiver
postbacks:
  - events: [sale, rebill]
    url: "{receiver_url}/postback?cid={{clickid}}&payout={{amount}}&cur={{currency}}&ev={{event}}&offer={{offer_id}}"
  - events: [registration, trial]
    url: "{receiver_url}/lead?cid={{clickid}}&ev={{event}}&offer={{offer_id}}"
  - events: [chargeback, refund]
    url: "{receiver_url}/reversal?cid={{clickid}}&ev={{event}}&orig={{original_transaction_id}}&offer={{offer_id}}"
test_link: "{receiver_url}/click?to=network"
"""


def write_receiver_affiliate(receiver_url: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(receiver_affiliate_config(receiver_url), encoding="utf-8")
    return path


def refusal_line(body: bytes, *, limit: int = 300) -> str:
    """An API answer the stack's log shows as one line a person reads: the message and each
    field's reason, not the JSON document."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("message"), str):
        text = body.decode(errors="replace")
    else:
        text = str(answer["message"]).rstrip(".")
        errors = answer.get("errors")
        if isinstance(errors, list) and errors:
            fields = [
                f"{e.get('field')}: {str(e.get('message') or e.get('reason') or '').rstrip('.')}"
                for e in errors
                if isinstance(e, dict)
            ]
            text += " (" + "; ".join(fields) + ")"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _conversion_results(body: bytes) -> list[dict[str, Any]]:
    try:
        answer = json.loads(body)
    except ValueError:
        return []
    if isinstance(answer, dict) and isinstance(answer.get("results"), list):
        return [r for r in answer["results"] if isinstance(r, dict)]
    if isinstance(answer, dict) and "outcome" in answer:
        return [answer]
    return []


def _dispatch_floors(function: LocalFunction, poller: SqsPoller) -> LocalFloors:
    """What the local stack adds to every attempt of a postback, from the poller that feeds the
    dispatcher and the timeouts the template gives the dispatcher."""
    environment = function.spec.environment
    attempt_s = float(environment.get("CONNECT_TIMEOUT_S", 0)) + float(environment.get("READ_TIMEOUT_S", 0))
    return LocalFloors(pickup_s=poller.pickup_s, attempt_s=attempt_s or float(function.spec.timeout_s))


def _queue_urls(stack: resources.LocalStack) -> Callable[[str], str]:
    by_arn = {arn: stack.refs[logical_id] for (logical_id, attribute), arn in stack.attrs.items() if attribute == "Arn"}

    def url_for(arn: str) -> str:
        return by_arn[arn]

    return url_for


@contextmanager
def running(settings: LocalSettings | None = None, *, log: Log = print) -> Iterator[LocalRelay]:
    """The local stack for the duration of a `with` block."""
    relay = LocalRelay(settings or LocalSettings(), log=log)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


def _attempt_words(item: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The last HTTP status of a delivery log item, and, unless it was delivered, what its last
    attempt saw in words."""
    status = item.get("http_status")
    attempts = item.get("attempts")
    last = attempts[-1] if isinstance(attempts, list) and attempts and isinstance(attempts[-1], Mapping) else None
    if status is None and last is not None:
        status = last.get("status")
    if item.get("state") == "delivered" or last is None:
        return status, None
    seen = messages.attempt_seen(
        len(attempts) if isinstance(attempts, list) else 1,
        MAX_ATTEMPTS,
        status=int(status) if status is not None else None,
        error_kind=last.get("error_kind"),
        detail=item.get("last_error"),
    )
    return status, seen


def portal_link(relay: LocalRelay, affiliate_id: str = RECEIVER_AFFILIATE_ID, *, lifetime_s: int = 7 * 86400) -> str:
    """A link to the affiliate's portal on this stack, as `postback --local portal link` makes it."""
    from datetime import timedelta

    from postback_relay.domain.portal import link_url, new_link, sign_pass

    session = relay._session
    arn = relay.outputs.get("PortalSecretArn")
    if session is None or not arn:
        return ""
    secret = session.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    epoch = 0  # a new stack: nothing revoked yet
    link = new_link(affiliate_id, epoch=epoch, lifetime=timedelta(seconds=lifetime_s), now=time.time())
    return link_url(relay.api_url, sign_pass(link, secret.encode()))

"""The relay wired end to end in-process, with faults to inject at every seam.

- `AwsFaults`: botocore-level faults (throttling, 5xx, per-entry SQS refusals), injected with a
  `before-send` hook on every client the handlers build, so botocore's own retry sees them
  exactly as it would see DynamoDB's or SQS's answers.
- `FaultyAffiliate`: a real HTTP server on 127.0.0.1 that plays one misbehaving affiliate
  endpoint (500s, 429 + Retry-After, a late answer, a reset connection, a slow body, a
  redirect...) and counts every postback it received per delivery key.
- `Relay`: posts signed conversions to the ingest handler (retrying 503s as the platform
  does), plays Lambda's DynamoDB Streams event source mapping for the outbox handler
  (`postback_ops.local.stream.StreamPoller`, as the template configures it) and its SQS one
  for the dispatch handler (`postback_ops.local.poller.SqsPoller`: receive up to 10, invoke,
  delete the successes). The event source mappings are Lambda's, not the relay's: their own
  clients carry no injected faults.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from integration.test_dispatch_handler import FakeLambdaContext
from integration.test_ingest_handler import EVENT_TIME, SECRET, LambdaContext, check_documented, http_event
from outbox_support import OutboxContext, template_stream_mapping

import dispatch_handler
import ingest_handler
import outbox_handler
from postback_ops.local.poller import BatchOutcome, EventSourceMapping, SqsPoller
from postback_ops.local.stream import StreamBatchOutcome, StreamMapping, StreamPoller
from postback_ops.outbox_recovery import OutboxRecovery, ParkedRecord, ParkedRecovery, RecoveredBatch
from postback_relay.adapters.dynamodb_affiliates import DynamoAffiliateStore
from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog, record_of, ref_of
from postback_relay.adapters.sqs_queue import SqsPostbackQueue
from postback_relay.domain.config import parse_config
from postback_relay.domain.delivery import DeliveryState
from postback_relay.domain.records import DeliveryRecord
from postback_relay.domain.signing import sign_conversion_request

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import QueueAttributeNameType

LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id={affiliate_id}&e=1&w=0"
    "&tracker=trID_a1-T9-{clickid}-x_trID"
)


# --- AWS faults -------------------------------------------------------------------------------


class _Raw:
    """The raw body botocore reads from an HTTP response."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


def aws_error(status: int, code: str, message: str = "injected fault") -> AWSResponse:
    """An AWS JSON-protocol error answer (DynamoDB and SQS both speak it)."""
    body = json.dumps({"__type": f"com.amazonaws#{code}", "message": message}).encode()
    headers = {
        "x-amzn-requestid": "injected",
        "content-type": "application/x-amz-json-1.0",
        "x-amzn-query-error": f"{code};Receiver",  # SQS's code for query-compatible clients
    }
    return AWSResponse(UNREACHABLE_URL, status, HTTPHeaders.from_dict(headers), _Raw(body))


MAX_ATTEMPTS = 3  # botocore's attempts per call in this suite (AWS_MAX_ATTEMPTS, conftest)
# The dispatcher's timeouts in this suite (conftest gives them to the relay; the affiliate
# servers judge by the read timeout whether the relay could have heard an answer).
CONNECT_TIMEOUT_S = 0.5
READ_TIMEOUT_S = 0.3
UNREACHABLE_URL = "https://injected.invalid/"
THROTTLED = ("ProvisionedThroughputExceededException", 400)
SQS_UNAVAILABLE = ("ServiceUnavailable", 503)
SERVICE_UNAVAILABLE = (503, "ServiceUnavailable")  # aws_error's arguments


@dataclass
class AwsFaultRule:
    """Fail calls of one operation. `decide(body)` runs once per logical call (retries of a
    call carry the same body): None lets it through, else how many attempts in a row fail."""

    service: str
    operation: str
    error: tuple[str, int]
    decide: Callable[[bytes], int | None]


@dataclass(frozen=True)
class InjectedFault:
    """One call a fault rule failed: `failures` attempts in a row, from `at` (monotonic)."""

    at: float
    operation: str
    body: bytes
    failures: int

    @property
    def past_retries(self) -> bool:
        """botocore gave up: the call failed for the caller (a write lost, a read not made)."""
        return self.failures >= MAX_ATTEMPTS


@dataclass
class AwsFaults:
    """Botocore faults on every client built while installed (see `install`)."""

    rules: list[AwsFaultRule] = field(default_factory=list)
    # Operations down for now ("sqs:SendMessageBatch"): every attempt fails while listed.
    down: set[str] = field(default_factory=set)
    # SendMessageBatch entries to refuse: decide(entry) -> refuse?
    refuse_sqs_entry: Callable[[Mapping[str, Any]], bool] | None = None
    calls: Counter[str] = field(default_factory=Counter)  # every attempt, by operation
    injected: Counter[str] = field(default_factory=Counter)  # failed attempts by operation
    calls_failed: Counter[str] = field(default_factory=Counter)  # logical calls hit, by operation
    entries_refused: int = 0
    visibility_changes: list[int] = field(default_factory=list)  # ChangeMessageVisibility seconds
    message_delays: list[int] = field(default_factory=list)  # SendMessage DelaySeconds (a wait's copy)
    exhausted: list[tuple[str, bytes]] = field(default_factory=list)  # calls failed past botocore's retries
    # Every call a rule failed, in order, with when (monotonic): the harness's own record of
    # what it did, which a test may use to excuse what the relay did after it.
    injected_faults: list[InjectedFault] = field(default_factory=list)
    _pending: dict[str, int] = field(default_factory=dict)
    _refused_ids: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        client.meta.events.register_first("before-send", self._before_send)
        client.meta.events.register_first("after-call.sqs.SendMessageBatch", self._after_send_batch)

    def _before_send(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        # botocore calls every before-send handler, moto's too, and uses the first answer: a
        # failed attempt must not reach moto, so its URL is moved out of moto's reach for that
        # attempt (botocore retries with the same request object: restore it first).
        original_url = getattr(request, "_original_url", None)
        if original_url is not None:
            request.url = original_url
        raw_target = request.headers.get("X-Amz-Target") or ""
        target = raw_target.decode() if isinstance(raw_target, bytes) else str(raw_target)
        operation = target.rsplit(".", 1)[-1]
        service = "sqs" if target.startswith("AmazonSQS") else "dynamodb" if target.startswith("DynamoDB") else ""
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        with self._lock:
            self.calls[operation] += 1
        if service == "sqs" and operation == "ChangeMessageVisibility":
            with self._lock:
                self.visibility_changes.append(int(json.loads(body)["VisibilityTimeout"]))
        if service == "sqs" and operation == "SendMessage" and b"DelaySeconds" in body:
            with self._lock:
                self.message_delays.append(int(json.loads(body)["DelaySeconds"]))
        if f"{service}:{operation}" in self.down:
            with self._lock:
                self.injected[operation] += 1
            request._original_url = request.url  # type: ignore[attr-defined]
            request.url = UNREACHABLE_URL
            return aws_error(*SERVICE_UNAVAILABLE)
        for rule in self.rules:
            if (rule.service, rule.operation) != (service, operation):
                continue
            key = f"{operation}:{hashlib.sha256(body).hexdigest()}"
            with self._lock:
                if key not in self._pending:
                    failures = rule.decide(body)
                    self._pending[key] = failures or 0
                    if failures:
                        self.calls_failed[operation] += 1
                    if failures and failures >= MAX_ATTEMPTS:
                        self.exhausted.append((operation, body))
                    if failures:
                        self.injected_faults.append(InjectedFault(time.monotonic(), operation, body, failures))
                left = self._pending[key]
                if left <= 0:
                    break
                self._pending[key] = left - 1
                self.injected[operation] += 1
            code, status = rule.error
            request._original_url = request.url  # type: ignore[attr-defined]
            request.url = UNREACHABLE_URL
            return aws_error(status, code)
        if service == "sqs" and operation == "SendMessageBatch" and self.refuse_sqs_entry is not None:
            return self._drop_refused_entries(request, body)
        return None

    def _drop_refused_entries(self, request: AWSPreparedRequest, body: bytes) -> AWSResponse | None:
        """SQS refusing some entries of a batch: moto gets the others, the answer lists the
        refused ones as Failed (added after the call)."""
        document = json.loads(body)
        assert self.refuse_sqs_entry is not None
        refused = [entry for entry in document["Entries"] if self.refuse_sqs_entry(entry)]
        if not refused:
            return None
        kept = [entry for entry in document["Entries"] if entry not in refused]
        with self._lock:
            self.entries_refused += len(refused)
        failed = [
            {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for entry in refused
        ]
        if not kept:  # every entry refused: SQS answers without calling anything
            request._original_url = request.url  # type: ignore[attr-defined]
            request.url = UNREACHABLE_URL
            answer = json.dumps({"Successful": [], "Failed": failed}).encode()
            return AWSResponse(
                UNREACHABLE_URL, 200, HTTPHeaders.from_dict({"x-amzn-requestid": "injected"}), _Raw(answer)
            )
        document["Entries"] = kept
        request.body = json.dumps(document).encode()
        request.headers["Content-Length"] = str(len(request.body))
        with self._lock:
            self._refused_ids[threading.get_ident()] = failed
        return None

    def _after_send_batch(self, parsed: dict[str, Any], **kwargs: Any) -> None:
        with self._lock:
            refused = self._refused_ids.pop(threading.get_ident(), [])
        if refused:
            parsed.setdefault("Failed", []).extend(refused)


def patch_boto3_clients(faults: AwsFaults, monkeypatch: Any) -> None:
    """Every boto3 client built from now on (the handlers build theirs lazily) carries the faults."""
    real_client = boto3.client

    def client(*args: Any, **kwargs: Any) -> Any:
        built = real_client(*args, **kwargs)
        faults.attach(built)
        return built

    monkeypatch.setattr(boto3, "client", client)


def sometimes(odds: Mapping[int, float], *, seed: int) -> Callable[[bytes], int | None]:
    """Fail a call `failures` attempts in a row with probability odds[failures] (seeded, so a
    run repeats): {1: 0.1, 3: 0.01} throttles 10% of calls once (botocore's retry absorbs it)
    and 1% past botocore's retries."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def decide(body: bytes) -> int | None:
        with lock:
            draw = rng.random()
        for failures, chance in odds.items():
            if draw < chance:
                return failures
            draw -= chance
        return None

    return decide


# --- affiliate endpoints that misbehave --------------------------------------------------


@dataclass(frozen=True)
class Misbehaviour:
    """How an endpoint answers the n-th request (1-based) for one delivery key."""

    name: str
    answer: Callable[[int], str]  # -> one of the actions below
    fails_for_good: bool = False


# Actions: "ok", "500", "503", "404", "429", "late-ok" (answers 200 after the client's read
# timeout: the affiliate took the postback, the relay never heard), "reset" (the connection
# is reset before any answer), "slow-ok" (200 with a body that trickles in), "slowloris" (200
# with a long body that trickles in, each byte within the read timeout), "redirect".
OK = Misbehaviour("ok", lambda n: "ok")
FLAKY = Misbehaviour("500-then-ok", lambda n: "500" if n <= 2 else "ok")
THROTTLING = Misbehaviour("429-retry-after", lambda n: "429" if n == 1 else "ok")
TIMING_OUT = Misbehaviour("timeout-then-ok", lambda n: "late-ok" if n == 1 else "ok")
RESETTING = Misbehaviour("reset-then-ok", lambda n: "reset" if n == 1 else "ok")
SLOW_BODY = Misbehaviour("slow-body", lambda n: "slow-ok")
REDIRECTING = Misbehaviour("redirect", lambda n: "redirect", fails_for_good=True)
GONE = Misbehaviour("404", lambda n: "404", fails_for_good=True)
DOWN = Misbehaviour("always-503", lambda n: "503", fails_for_good=True)
SLOWLORIS = Misbehaviour("slowloris", lambda n: "slowloris")


class Connects:
    """When each connection to 127.0.0.1 was opened, by its local port: the socket layer's
    record (`socket.socket.connect`, below the relay's code), so that an affiliate's server
    knows how long the relay had been waiting when its answer went out, however late the
    server got to read the request on a loaded machine."""

    def __init__(self) -> None:
        self._opened: dict[int, float] = {}
        self._lock = threading.Lock()

    def install(self, monkeypatch: Any) -> None:
        real_connect = socket.socket.connect
        owner = self

        def connect(sock: socket.socket, address: Any) -> None:
            started = time.monotonic()
            real_connect(sock, address)
            if isinstance(address, tuple) and address[0] == "127.0.0.1":
                with contextlib.suppress(OSError), owner._lock:
                    owner._opened[sock.getsockname()[1]] = started

        monkeypatch.setattr(socket.socket, "connect", connect)

    def opened_at(self, port: int) -> float | None:
        with self._lock:
            return self._opened.get(port)


CONNECTS = Connects()


@dataclass
class Answered:
    """One answer of an affiliate's endpoint, as the endpoint itself saw it: the witness a
    resend is judged by, independent of the relay's own attempt log."""

    key: str
    status: int
    received_at: float  # monotonic: the request read
    opened_at: float  # monotonic: the relay opened the connection (the request read, if unknown)
    done_at: float | None = None  # its last byte written; None: the write failed
    # The relay was gone before the answer was written, or reset the connection with the
    # answer unread (a client that timed out closes with it still in its buffer).
    hung_up: bool = False

    @property
    def taken(self) -> bool:
        return 200 <= self.status < 300

    def heard(self, read_timeout_s: float) -> bool:
        """Could the relay have read it in time? Written whole within its read timeout of the
        relay opening the connection (or of the request, if that is unknown), on a connection
        the relay had not given up on."""
        return self.done_at is not None and not self.hung_up and self.done_at - self.opened_at <= read_timeout_s


class FaultyAffiliate:
    """A ThreadingHTTPServer on 127.0.0.1 playing one affiliate's endpoint.

    A postback's delivery key is its `cid` query value and its path. `received[key]` counts
    the postbacks the affiliate took (answered 2xx, late or not); `attempts[key]` every request;
    `answers` each answer with when it was written, and whether the relay hung up on it.
    """

    def __init__(
        self,
        behaviour: Misbehaviour,
        *,
        late_s: float = 0.6,
        trickle_s: float = 0.05,
        slowloris_bytes: int = 60,
        retry_after: str = "120",
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.behaviour = behaviour
        self.read_timeout_s = read_timeout_s
        self.attempts: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.answers: list[Answered] = []
        self.webhook_signatures: list[str] = []  # the `webhook-signature` headers received
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            last: Answered | None = None  # this connection's last answer

            def handle(self) -> None:
                try:
                    super().handle()
                except ConnectionResetError:
                    # Reset after an answer: the relay closed with it unread (it gave up on it).
                    if self.last is not None:
                        self.last.hung_up = True

            def _gone(self) -> bool:
                """The relay closed its side already (it gave up waiting)."""
                try:
                    readable, _, _ = select.select([self.connection], [], [], 0)
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def _serve(self) -> None:
                received_at = time.monotonic()
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                parts = urlsplit(self.path)
                key = f"{parts.path}?{(parse_qs(parts.query).get('cid') or [''])[0]}"
                with owner._lock:
                    owner.attempts[key] += 1
                    if self.headers.get("webhook-signature"):
                        owner.webhook_signatures.append(self.headers["webhook-signature"])
                    action = owner.behaviour.answer(owner.attempts[key])
                    owner.actions[action] += 1
                if action == "reset":
                    # SO_LINGER 0: close() sends RST, the client sees "connection reset by peer".
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if action == "late-ok":
                    time.sleep(late_s)  # plays an overloaded server: answers after the relay gave up
                status = {"500": 500, "503": 503, "404": 404, "429": 429, "redirect": 302}.get(action, 200)
                opened_at = CONNECTS.opened_at(self.client_address[1]) or received_at
                answer = Answered(key, status, received_at, min(opened_at, received_at), hung_up=self._gone())
                if answer.taken:
                    with owner._lock:
                        owner.received[key] += 1
                payload = b"OK" if status == 200 else b"error"
                # The relay may have given up on a late or slow answer and closed its side.
                with contextlib.suppress(OSError):
                    self._answer(action, status, payload)
                    answer.done_at = time.monotonic()
                self.last = answer
                with owner._lock:
                    owner.answers.append(answer)

            def _answer(self, action: str, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                length = slowloris_bytes if action == "slowloris" else len(payload)
                self.send_header("content-length", str(length))
                if status == 429:
                    self.send_header("retry-after", retry_after)
                if status == 302:
                    self.send_header("location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                if action in ("slow-ok", "slowloris"):
                    if action == "slowloris":
                        payload = b"." * slowloris_bytes
                    for byte in payload:
                        self.wfile.flush()
                        time.sleep(trickle_s)  # plays a slow link: each byte within the read timeout
                        self.wfile.write(bytes([byte]))
                else:
                    self.wfile.write(payload)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the counters are the record."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"affiliate-{behaviour.name}")
        self._thread.daemon = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FaultyAffiliate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def unheard(self, key: str) -> int:
        """How many times the endpoint took the postback without the relay hearing it (late,
        or on a connection the relay had given up on): each allows one more send."""
        with self._lock:
            return sum(1 for a in self.answers if a.key == key and a.taken and not a.heard(self.read_timeout_s))

    def unheard_then_taken_again(self, key: str) -> int:
        """The takings of the postback the relay could not hear that another taking followed
        (by when the requests were read): only those can explain a resend. An unheard answer
        to the last send explains nothing: nothing came after it (on a loaded machine the
        answer to a resend that should not have happened may itself go out late)."""
        with self._lock:
            takings = sorted((a for a in self.answers if a.key == key and a.taken), key=lambda a: a.received_at)
        return sum(1 for a in takings[:-1] if not a.heard(self.read_timeout_s))

    def resends_unexplained(self, explained: Mapping[str, int] | None = None) -> dict[str, tuple[int, int, int]]:
        """The postbacks taken more often than at-least-once allows: once, plus once per taking
        the relay could not hear and that another taking followed (this endpoint's own record),
        plus `explained[key]` (a fault the harness injected after a send). key -> (taken,
        unheard and taken again, explained); empty when every resend is accounted for."""
        found: dict[str, tuple[int, int, int]] = {}
        for key, count in list(self.received.items()):
            unheard, excused = self.unheard_then_taken_again(key), (explained or {}).get(key, 0)
            if count - 1 > unheard + excused:
                found[key] = (count, unheard, excused)
        return found

    def heard_takings(self, key: str) -> list[Answered]:
        """The answers taking the postback that the relay could hear, in order."""
        with self._lock:
            return [a for a in self.answers if a.key == key and a.taken and a.heard(self.read_timeout_s)]


# --- the relay -----------------------------------------------------------------------------


def affiliate_config(affiliate_id: str, base_url: str, *, postbacks: int = 1) -> dict[str, object]:
    """An affiliate with `postbacks` postbacks on a sale, all to `base_url`."""
    specs: list[dict[str, object]] = [
        {"events": ["sale"], "url": f"{base_url}/pb{index}?cid={{clickid}}&tx={{transaction_id}}"}
        for index in range(postbacks)
    ]
    return {
        "affiliate_id": affiliate_id,
        "name": f"Affiliate {affiliate_id}",
        "tracker": {"fields": ["affid", "transid", "clickid", "whateverid"], "separator": "-"},
        "postbacks": specs,
    }


def conversion(transaction_id: str, affiliate_id: str, clickid: str) -> dict[str, object]:
    return {
        "transaction_id": transaction_id,
        "event": "sale",
        "offer": {"id": "89", "type": "revshare"},
        "amount": "25.00",
        "currency": "EUR",
        "link": LINK.format(affiliate_id=affiliate_id, clickid=clickid),
        "occurred_at": "2026-11-25T12:00:00Z",
    }


@dataclass
class IngestTally:
    requests: int = 0
    answers: Counter[int] = field(default_factory=Counter)


class Relay:
    """The deployed system, in-process: ingest handler, queue, dispatch handler, tables."""

    def __init__(self, outputs: Mapping[str, str]) -> None:
        self.outputs = outputs
        self.now = float(EVENT_TIME)
        self.sqs = boto3.client("sqs")
        self.dynamodb = boto3.client("dynamodb")
        self.affiliates = DynamoAffiliateStore(
            outputs["AffiliatesTableName"], client=self.dynamodb, allow_loopback=True
        )
        self.deliveries = DynamoDeliveryLog(outputs["DeliveriesTableName"], client=self.dynamodb)
        self.ingest_tally = IngestTally()
        self.batches: list[BatchOutcome] = []
        self.invocations = 0
        self.crashes = 0
        # Decides, after each dispatch invocation, whether the function died before answering.
        self.crash: Callable[[], bool] | None = None
        # The same for the outbox function, and its tally.
        self.outbox_crash: Callable[[], bool] | None = None
        self.outbox_invocations = 0
        self.outbox_crashes = 0
        self.outbox_batches: list[StreamBatchOutcome] = []
        # The event source mappings' own clients: Lambda's, untouched by the injected faults.
        lambda_service = boto3.session.Session()
        self.clock = time.time
        stream_mapping = template_stream_mapping(outputs)
        self.outbox = StreamPoller(
            lambda_service.client("dynamodbstreams"),
            StreamMapping(**{**stream_mapping.__dict__, "batching_window_s": 0.0}),
            self._invoke_outbox,
            region="eu-west-1",
            sqs=lambda_service.client("sqs"),
            clock=lambda: self.clock(),
        )
        mapping = EventSourceMapping(
            queue_url=outputs["PostbackQueueUrl"],
            queue_arn="arn:aws:sqs:eu-west-1:123456789012:postback-relay-test-PostbackQueue",
            batch_size=10,
            report_batch_item_failures=True,
            concurrency=1,
        )
        # One batch per call; `poller` returns at once when nothing is visible, `waiter` long-polls
        # (up to 1 s) for a message whose visibility timeout is about to end.
        self.poller = SqsPoller(self.sqs, mapping, self._invoke, region="eu-west-1", max_wait_s=0)
        self.waiter = SqsPoller(self.sqs, mapping, self._invoke, region="eu-west-1", max_wait_s=1)

    # ingest ---------------------------------------------------------------------------

    def add_affiliate(self, config: Mapping[str, object]) -> None:
        self.affiliates.put(parse_config(config, allow_loopback=True), expected_version=None, updated_by="test")

    def post_raw(self, body: str, *, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        stamp = int(self.now)
        signed = {
            "x-postback-timestamp": str(stamp),
            "x-postback-signature": sign_conversion_request(SECRET, stamp, body.encode()),
            **(headers or {}),
        }
        response = ingest_handler.lambda_handler(http_event(body, signed), LambdaContext())
        document = json.loads(response["body"]) if response.get("body") else {}
        check_documented(response["statusCode"], document, response.get("headers", {}))
        self.ingest_tally.requests += 1
        self.ingest_tally.answers[response["statusCode"]] += 1
        return response["statusCode"], document

    def post(self, document: object) -> tuple[int, dict[str, Any]]:
        """Post once, signed; no retry."""
        return self.post_raw(json.dumps(document))

    def post_until_taken(self, document: object, *, max_tries: int = 20) -> tuple[int, dict[str, Any]]:
        """Post as the platform does: a 503 is retried with the very same request."""
        body = json.dumps(document)
        for _ in range(max_tries):
            status, answer = self.post_raw(body)
            if status != 503:
                return status, answer
        raise AssertionError(f"still 503 after {max_tries} tries")

    # outbox ---------------------------------------------------------------------------

    def _invoke_outbox(self, event: dict[str, Any]) -> Any:
        self.outbox_invocations += 1
        answer = outbox_handler.lambda_handler(event, OutboxContext())
        if self.outbox_crash is not None and self.outbox_crash():
            # Dies after sending, before Lambda reads the answer: the batch is retried (bisected).
            self.outbox_crashes += 1
            raise RuntimeError("the outbox invocation died before answering")
        return answer

    def run_outbox(self, *, max_batches: int = 10_000, or_stop: bool = False) -> None:
        """Run the stream's event source mapping until it handled every record (or gave up on
        it); with `or_stop`, at most `max_batches` batches (their retries included)."""
        for _ in range(max_batches):
            outcome = self.outbox.poll_once()
            if outcome is None:
                return
            self.outbox_batches.append(outcome)
        if not or_stop:
            raise AssertionError(f"the outbox did not catch up in {max_batches} batches")

    def recover_outbox(self, *, streams: Any = None) -> list[RecoveredBatch]:
        """What ops do when the on-failure queue's alarm fires: `postback outbox recover`
        (`streams`: the DynamoDB Streams client to read with, one serving empty pages say)."""
        lambda_service = boto3.session.Session()
        return OutboxRecovery(
            dynamodb=lambda_service.client("dynamodb"),
            streams=streams or lambda_service.client("dynamodbstreams"),
            sqs=lambda_service.client("sqs"),
            conversions_table=self.outputs["ConversionsTableName"],
            failure_queue_url=self.outputs["OutboxFailureQueueUrl"],
            queue=SqsPostbackQueue(self.outputs["PostbackQueueUrl"], client=lambda_service.client("sqs")),
        ).recover()

    def requeue_parked(self) -> list[ParkedRecord]:
        """What ops do when the parked queue's alarm fires, the item fixed: `postback outbox
        parked --requeue`."""
        lambda_service = boto3.session.Session()
        return ParkedRecovery(
            dynamodb=lambda_service.client("dynamodb"),
            sqs=lambda_service.client("sqs"),
            conversions_table=self.outputs["ConversionsTableName"],
            parked_queue_url=self.outputs["OutboxParkedQueueUrl"],
            queue=SqsPostbackQueue(self.outputs["PostbackQueueUrl"], client=lambda_service.client("sqs")),
        ).run(requeue=True)

    # dispatch -------------------------------------------------------------------------

    def _invoke(self, event: dict[str, Any]) -> Any:
        self.invocations += 1
        answer = dispatch_handler.lambda_handler(event, FakeLambdaContext())
        if self.crash is not None and self.crash():
            # The function dies (timeout, out of memory) after the work, before Lambda reads
            # the answer: nothing of the batch is deleted.
            self.crashes += 1
            raise RuntimeError("the dispatch invocation died before answering")
        return answer

    def handovers(self) -> Counter[str]:
        """How often the dispatcher's event source mapping handed each delivery over (a message
        received again, or another message of the same postback): the harness's own count, so
        that a test knows a delivered postback did come back."""
        found: Counter[str] = Counter()
        for batch in self.batches:
            for record in batch.records:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    found[json.loads(record["body"])["delivery_id"]] += 1
        return found

    def queue_depth(self) -> tuple[int, int]:
        """(visible, in flight); a delayed copy (a waiting postback) counts as visible here."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.outputs["PostbackQueueUrl"],
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesDelayed"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def drain(self, *, timeout_s: float = 120.0) -> None:
        """Run the outbox's stream until it caught up, then the dispatcher's event source mapping
        until the queue holds nothing, visible or in flight."""
        self.run_outbox()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            outcome = self.poller.poll_once()
            if outcome is None:
                if self.queue_depth() == (0, 0):
                    return
                outcome = self.waiter.poll_once()  # long-polls up to 1 s: a delayed copy may come due
            if outcome is not None:
                self.batches.append(outcome)
        left = self.sqs.receive_message(
            QueueUrl=self.outputs["PostbackQueueUrl"], MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", [])
        sample = [(json.loads(m["Body"])["affiliate_id"], m["Attributes"]["ApproximateReceiveCount"]) for m in left]
        raise AssertionError(
            f"the queue did not drain in {timeout_s} s: {self.queue_depth()} (visible, in flight); "
            f"some left (affiliate, receives): {sample}"
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        letters: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.outputs["DeadLetterQueueUrl"],
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=600,
            ).get("Messages", [])
            if not got:
                return letters
            letters.extend(dict(message) for message in got)

    def _delivery_items(self) -> Iterator[Any]:
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.outputs["DeliveriesTableName"]):
            yield from page["Items"]

    def delivery_states(self) -> dict[str, DeliveryState]:
        return {ref_of(item).delivery_id: DeliveryState(item["state"]["S"]) for item in self._delivery_items()}

    def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        """A delivery by its ID alone (the log's key also holds the affiliate and the creation
        time, which a test does not always know): found by a scan, as a test may afford."""
        for item in self._delivery_items():
            if ref_of(item).delivery_id == delivery_id:
                return record_of(item)
        return None

    def conversion_ids(self) -> set[str]:
        found: set[str] = set()
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.outputs["ConversionsTableName"]):
            found.update(item["conversion_id"]["S"] for item in page["Items"])
        return found


class QueueWatch:
    """Polls the postback queue's counters while a run goes on, as CloudWatch would, and keeps
    their peaks: in flight (ApproximateNumberOfMessagesNotVisible: received and not deleted;
    moto, like SQS, counts a delayed message there only once it is received), delayed, visible.
    `on_tick` runs at each poll (e.g. to note when a postback reached its affiliate)."""

    NAMES: tuple[QueueAttributeNameType, ...] = (
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessages",
    )

    def __init__(self, queue_url: str, *, every_s: float = 0.05, on_tick: Callable[[], None] | None = None) -> None:
        self._sqs = boto3.client("sqs")  # no fault rule touches GetQueueAttributes
        self._queue_url = queue_url
        self._every_s = every_s
        self._on_tick = on_tick
        self.samples: list[tuple[float, int, int, int]] = []  # (monotonic, in flight, delayed, visible)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            attributes = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=list(self.NAMES))[
                "Attributes"
            ]
            in_flight, delayed, visible = (int(attributes[name]) for name in self.NAMES)
            self.samples.append((time.monotonic(), in_flight, delayed, visible))
            if self._on_tick is not None:
                self._on_tick()
            self._stop.wait(self._every_s)

    @property
    def peak_in_flight(self) -> int:
        return max((s[1] for s in self.samples), default=0)

    @property
    def peak_delayed(self) -> int:
        return max((s[2] for s in self.samples), default=0)

    def __enter__(self) -> QueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def chunks(items: Sequence[Any], sizes: Sequence[int]) -> Iterator[list[Any]]:
    """Cut `items` into consecutive requests of the given sizes, cycling."""
    start, turn = 0, 0
    while start < len(items):
        size = sizes[turn % len(sizes)]
        yield list(items[start : start + size])
        start += size
        turn += 1

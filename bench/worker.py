"""The benchmark's child process: one handler (or two), imported with its Lambda environment.

`python -m bench.worker TASK OUT [args]` writes its figures as JSON to OUT. Tasks:

- ingest-warm N BATCH MODE: N warm invocations of the ingest handler with BATCH conversions
  per request. MODE `fakes`: AWS answered by in-memory fakes (bench/fakes.py) behind the
  handler's own seams; `botocore`: the handler's own adapters and boto3 clients, AWS answered
  in memory at botocore's `before-send` (serialising, signing, parsing all counted).
- dispatch-warm N URL MODE: N warm invocations of the dispatch handler with 10 records each,
  the postbacks going to the affiliate server at URL (run by the parent process).
- dispatch-concurrency: 10 postbacks to 10 servers that answer after 200 ms; 9 fast servers
  and one that never answers.
- portal-warm N MODE: N warm requests of each of the portal's pages (bench/portal_page.py),
  MODE `fakes` or `moto`.
- aws-calls: one conversion through ingest then dispatch on moto, with a warm cache, every
  AWS call counted through botocore's `before-call` event; the items' sizes as DynamoDB
  counts them.

Everything the handlers log or print goes to a sink that counts the bytes (what CloudWatch
Logs would ingest); the worker's own figures go to OUT, never to stdout.
"""

from __future__ import annotations

import io
import json
import os
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class CountingSink(io.TextIOBase):
    """stdout as CloudWatch Logs sees it: only byte counts are kept, in all and of the lines
    that the production log level (WARNING) keeps: warnings and errors, and every line that is
    not a log record (the metrics' EMF documents, printed whatever the level)."""

    _KEPT_AT_WARNING = ('"level":"WARNING"', '"level":"ERROR"', '"level":"CRITICAL"')

    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0
        self.bytes_at_warning = 0
        self._partial = ""

    def write(self, text: str) -> int:
        self.bytes += len(text.encode("utf-8", errors="replace"))
        self.lines += text.count("\n")
        *complete, self._partial = (self._partial + text).split("\n")
        for line in complete:
            is_record = '"level":"' in line
            if not is_record or any(level in line for level in self._KEPT_AT_WARNING):
                self.bytes_at_warning += len(line.encode("utf-8", errors="replace")) + 1
        return len(text)

    def writable(self) -> bool:
        return True


@dataclass(frozen=True)
class LambdaContextStub:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = "bench-request"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/bench"
    log_stream_name: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _context(name: str) -> LambdaContextStub:
    return LambdaContextStub(
        function_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", name),
        memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")),
        invoked_function_arn=f"arn:aws:lambda:eu-west-1:123456789012:function:{name}",
    )


def _vm_hwm_mb() -> float | None:
    """The kernel's high-water mark of this process's own memory, to cross-check ru_maxrss."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux: the peak resident set of this process so far.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# Before anything but the standard library is imported: the interpreter's own footprint.
INTERPRETER_RSS_MB = _rss_mb()


def _summary(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[int(len(ordered) * 0.9) - 1], 1),
        "min": round(ordered[0], 1),
        "n": len(ordered),
    }


def _fake_secret(secret: str) -> None:
    """Powertools' secrets provider answered from memory; its cache (max_age) stays real."""
    from aws_lambda_powertools.utilities.parameters.base import BaseProvider
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    class MemorySecrets(BaseProvider):
        def _get(self, name: str, **sdk_options: Any) -> str:
            return secret

        def _get_multiple(self, path: str, **sdk_options: Any) -> dict[str, str]:
            return {}

    DEFAULT_PROVIDERS["secrets"] = MemorySecrets()  # type: ignore[no-untyped-call]


def new_trace() -> None:
    """What the Lambda runtime does before each invocation when tracing is on: a new trace ID."""
    if "_X_AMZN_TRACE_ID" in os.environ:
        root = f"1-{int(time.time()):08x}-{os.urandom(12).hex()}"
        os.environ["_X_AMZN_TRACE_ID"] = f"Root={root};Parent={os.urandom(8).hex()};Sampled=1"


def _timed(prepare: Callable[[], Any], invoke: Callable[[Any], Any], sink: CountingSink, runs: int) -> dict[str, Any]:
    """Time `invoke(prepare())` runs times, `prepare` untimed and its event dropped after use
    (a list of thousands of prepared events would count as the handler's memory)."""
    wall: list[float] = []
    cpu: list[float] = []
    logged, logged_at_warning = sink.bytes, sink.bytes_at_warning
    for _ in range(runs):
        event = prepare()
        new_trace()
        c0, w0 = time.process_time(), time.perf_counter()
        invoke(event)
        wall.append((time.perf_counter() - w0) * 1e6)
        cpu.append((time.process_time() - c0) * 1e6)
        del event
    return {
        "wall_us": _summary(wall),
        "cpu_us": _summary(cpu),
        "log_bytes_per_invocation": round((sink.bytes - logged) / runs, 1),
        "log_bytes_per_invocation_at_warning": round((sink.bytes_at_warning - logged_at_warning) / runs, 1),
    }


# --- AWS answered at the HTTP layer: the real adapters and botocore, no network ---------------


def answer_aws_in_memory(affiliate_item: Mapping[str, Any] | None = None) -> None:
    """Every botocore client answers from memory at `before-send`: parameters are validated and
    serialised, requests signed, answers parsed, as against AWS; only the round trip is gone.

    Registered as a builtin handler, so it reaches the sessions created later (the handlers'
    clients and Powertools' own), the way moto hooks in.
    """
    import hashlib

    import botocore.handlers
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    class RawBody(io.BytesIO):
        def stream(self, **kwargs: Any) -> Any:
            contents = self.read()
            while contents:
                yield contents
                contents = self.read()

    def answer(request: Any, **_: Any) -> AWSResponse:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else str(target)).rpartition(".")[2]
        document: dict[str, Any] = {}
        if operation == "SendMessageBatch":
            entries = json.loads(request.body)["Entries"]
            document = {
                "Successful": [
                    {
                        "Id": e["Id"],
                        "MessageId": f"m-{e['Id']}",
                        "MD5OfMessageBody": hashlib.md5(e["MessageBody"].encode(), usedforsecurity=False).hexdigest(),
                    }
                    for e in entries
                ],
                "Failed": [],
            }
        elif operation == "GetItem" and affiliate_item is not None:
            document = {"Item": dict(affiliate_item)}
        body = json.dumps(document).encode()
        headers = HTTPHeaders.from_dict({"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "bench"})
        return AWSResponse(request.url, 200, headers, RawBody(body))

    botocore.handlers.BUILTIN_HANDLERS.append(("before-send", answer))


# --- ingest ------------------------------------------------------------------------------


def ingest_warm(runs: int, batch: int, mode: str, sink: CountingSink) -> dict[str, Any]:
    """`mode` fakes: the service's ports are in-memory fakes (the handler's seam);
    botocore: the handler's own adapters and clients, AWS answered at the HTTP layer."""
    from bench import events as support
    from bench import fakes
    from postback_relay import wiring
    from postback_relay.domain.config import parse_config

    rss_before_import = _rss_mb()
    import ingest_handler

    rss_after_import = _rss_mb()
    _fake_secret(support.SECRET)
    config_data = support.affiliate_config_data("https://track.bench.example")
    store = fakes.AffiliateStoreFake(parse_config(config_data))
    conversions = fakes.ConversionLogFake()
    if mode == "fakes":
        # The handler's seam: the service it uses, built by the wiring on the fakes.
        ingest_handler.ingest_service.use(
            wiring.ingest_service(ingest_handler.settings, affiliates=store, conversions=conversions)
        )
    else:
        answer_aws_in_memory(support.affiliate_item(config_data))
    context = _context("ingest")

    serial = iter(range(10**9))

    def event() -> dict[str, Any]:
        # Signing is the platform's work, not the handler's: events are built untimed.
        n = next(serial)
        return support.http_event(support.request_body([f"T-{n}-{i}" for i in range(batch)]))

    def invoke(event: dict[str, Any]) -> None:
        answer = ingest_handler.lambda_handler(event, context)
        if answer["statusCode"] != 202:
            raise RuntimeError(f"ingest answered {answer['statusCode']}: {answer.get('body')}")

    for _ in range(20):  # warm: caches filled, lazy imports done
        invoke(event())
    gets_warm, writes_warm = store.gets, conversions.writes
    timing = _timed(event, invoke, sink, runs)
    return {
        **timing,
        "mode": mode,
        "batch": batch,
        "affiliate_reads_per_request": (store.gets - gets_warm) / runs,
        "conversion_writes_per_request": (conversions.writes - writes_warm) / runs,
        "rss_mb": {
            "interpreter": INTERPRETER_RSS_MB,
            "before_import": rss_before_import,
            "after_import": rss_after_import,
            "peak": _rss_mb(),
            "vm_hwm": _vm_hwm_mb() or 0.0,
        },
    }


# --- dispatch ------------------------------------------------------------------------------


def _message_body(url: str, n: int) -> str:
    from datetime import UTC, datetime

    from postback_relay.domain.delivery import PostbackMessage, delivery_id_for
    from postback_relay.domain.events import Event

    transaction_id = f"D-{n}"
    return PostbackMessage(
        delivery_id=delivery_id_for(transaction_id, Event.SALE, "1234567", 0),
        affiliate_id="1234567",
        transaction_id=transaction_id,
        event=Event.SALE,
        offer_id="89",
        url=f"{url}/postback?cid=c123&payout=25.00&cur=EUR&ev=sale&offer=89&tx={transaction_id}",
        created_at=datetime.now(UTC),
    ).model_dump_json()


def _dispatch_with_fakes(mode: str = "fakes") -> tuple[Any, Any]:
    """The dispatch handler module, its dispatcher built on fakes through its seam (or, in
    mode botocore, on its own adapters with AWS answered at the HTTP layer)."""
    import dispatch_handler
    from bench import fakes

    deliveries = fakes.DeliveryLogFake()
    if mode != "fakes":
        answer_aws_in_memory()
        return dispatch_handler, deliveries
    dispatch_handler.dispatcher.use(_dispatcher_on_fakes(dispatch_handler.settings, deliveries))
    return dispatch_handler, deliveries


def _dispatcher_on_fakes(settings: Any, deliveries: Any = None) -> Any:
    """The wiring's dispatcher with the real HTTP sender and in-memory fakes for the rest."""
    from bench import fakes
    from postback_relay import wiring

    return wiring.dispatcher(
        settings,
        deliveries=fakes.DeliveryLogFake() if deliveries is None else deliveries,
        retries=fakes.RetryControlFake(),
        endpoints=fakes.EndpointStoreFake(),
        notices=False,
        affiliates=fakes.AffiliateStoreFake(),
    )


def dispatch_warm(runs: int, url: str, mode: str, sink: CountingSink) -> dict[str, Any]:
    rss_before_import = _rss_mb()
    handler, deliveries = _dispatch_with_fakes(mode)
    rss_after_import = _rss_mb()
    context = _context("dispatch")
    counter = iter(range(10**9))

    def batch_event() -> dict[str, Any]:
        records = []
        for _ in range(10):
            n = next(counter)
            records.append(_sqs_record(_message_body(url, n), f"m-{n}"))
        return {"Records": records}

    def check(answer: Mapping[str, Any]) -> None:
        if answer.get("batchItemFailures"):
            raise RuntimeError(f"dispatch left records on the queue: {answer}")

    def invoke(event: dict[str, Any]) -> None:
        check(handler.lambda_handler(event, context))

    for _ in range(10):
        invoke(batch_event())
    timing = _timed(batch_event, invoke, sink, runs)
    return {
        **timing,
        "mode": mode,
        "postbacks_per_invocation": 10,
        "attempts_logged": deliveries.attempts,
        "rss_mb": {
            "interpreter": INTERPRETER_RSS_MB,
            "before_import": rss_before_import,
            "after_import": rss_after_import,
            "peak": _rss_mb(),
            "vm_hwm": _vm_hwm_mb() or 0.0,
        },
    }


def _sqs_record(body: str, message_id: str) -> dict[str, Any]:
    from bench import events as support

    return support.sqs_record(body, message_id)


def dispatch_concurrency(repeats: int) -> dict[str, Any]:
    """Slow endpoints in one batch overlap; a dead endpoint does not hold up the others."""
    from bench import events as support

    handler, _ = _dispatch_with_fakes()
    context = _context("dispatch")
    warm = support.AffiliateServer()
    handler.lambda_handler({"Records": [_sqs_record(_message_body(warm.url, -1), "warm")]}, context)
    serial = 0

    def records(urls: list[str]) -> dict[str, Any]:
        nonlocal serial
        out = []
        for url in urls:
            serial += 1
            out.append(_sqs_record(_message_body(url, serial), f"c-{serial}"))
        return {"Records": out}

    slow_walls: list[float] = []
    for _ in range(repeats):
        slow = [support.AffiliateServer(delay_s=0.2) for _ in range(10)]
        event = records([s.url for s in slow])
        start = time.perf_counter()
        handler.lambda_handler(event, context)
        slow_walls.append(time.perf_counter() - start)
        for server in slow:
            server.stop()

    isolation: list[float] = []
    whole: list[float] = []
    outcome: dict[str, Any] = {}
    for _ in range(max(1, repeats // 2)):
        fast = [support.AffiliateServer() for _ in range(9)]
        dead = support.AffiliateServer(hang=True)
        event = records([dead.url] + [s.url for s in fast])
        start = time.monotonic()
        answer = handler.lambda_handler(event, context)
        whole.append(time.monotonic() - start)
        if not all(s.wait_for(1, timeout_s=1) for s in fast):
            raise RuntimeError("a fast endpoint never got its postback")
        isolation.append(max(s.arrivals[0] for s in fast) - start)
        outcome = {"batch_item_failures": len(answer.get("batchItemFailures", []))}
        for server in [*fast, dead]:
            server.stop()
    warm.stop()
    return {
        "slow_batch_wall_s": [round(w, 3) for w in slow_walls],
        "dispatch_concurrency_ratio": round(statistics.median(slow_walls) / 0.2, 2),
        "isolation_s": round(statistics.median(isolation), 3),
        "isolation_samples_s": [round(i, 3) for i in isolation],
        "dead_endpoint_batch_s": round(statistics.median(whole), 2),
        "read_timeout_s": handler.settings.read_timeout_s,
        "dead_endpoint_outcome": outcome,
    }


def dispatch_batch_sizes(sizes: list[int], repeats: int) -> dict[str, Any]:
    """Wall and CPU time of one warm dispatch batch, per batch size, against loopback servers
    that answer after 50 to 200 ms (spread evenly): Lambda bills a batch's wall time, so
    what a postback costs depends on how many share the wait. Every postback of a batch is
    sent at once (as many workers as the batch has records)."""
    from bench import events as support

    handler, _ = _dispatch_with_fakes()
    s = handler.settings
    context = _context("dispatch")
    delays = [0.05 + 0.15 * i / 19 for i in range(20)]
    servers = [support.AffiliateServer(delay_s=d) for d in delays]
    serial = 0
    figures: dict[str, Any] = {}
    try:
        for size in sizes:
            # As many workers and pooled connections as the batch has records.
            handler.dispatcher.use(_dispatcher_on_fakes(s.model_copy(update={"max_workers": size})))
            walls: list[float] = []
            cpus: list[float] = []
            for run in range(repeats + 1):
                records = []
                for i in range(size):
                    serial += 1
                    url = servers[i % len(servers)].url
                    records.append(_sqs_record(_message_body(url, serial), f"g-{serial}"))
                c0, w0 = time.process_time(), time.perf_counter()
                answer = handler.lambda_handler({"Records": records}, context)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                if answer.get("batchItemFailures"):
                    raise RuntimeError(f"dispatch left records on the queue: {answer}")
                if run:  # the first run of each size warms its pool
                    walls.append(wall)
                    cpus.append(cpu)
            figures[str(size)] = {
                "wall_s": round(statistics.median(walls), 4),
                "cpu_s": round(statistics.median(cpus), 4),
                "walls_s": [round(w, 4) for w in walls],
            }
    finally:
        for server in servers:
            server.stop()
    return {"server_delays_s": [round(d, 3) for d in delays], "by_batch_size": figures}


# --- AWS calls on moto -----------------------------------------------------------------------

READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
SENDS = {"SendMessage", "SendMessageBatch"}


class CallCounter:
    """Counts API calls through botocore's `before-call` event, on every session created."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.enabled = False

    def __call__(self, *, event_name: str, **kwargs: Any) -> None:
        if self.enabled:
            _, service, operation = event_name.split(".", 2)
            self.calls[f"{service}.{operation}"] += 1

    def take(self) -> Counter[str]:
        calls, self.calls = self.calls, Counter()
        return calls


def by_kind(calls: Mapping[str, int]) -> dict[str, int]:
    kinds = {"dynamodb_reads": 0, "dynamodb_writes": 0, "sqs_sends": 0, "other": 0}
    for name, count in calls.items():
        service, operation = name.split(".", 1)
        if service == "dynamodb" and operation in READS:
            kinds["dynamodb_reads"] += count
        elif service == "dynamodb" and operation in WRITES:
            kinds["dynamodb_writes"] += count
        elif service == "sqs" and operation in SENDS:
            kinds["sqs_sends"] += count
        else:
            kinds["other"] += count
    return kinds


def aws_calls(stack_name: str) -> dict[str, Any]:
    import botocore.handlers

    counter = CallCounter()
    # Every botocore session (the default one, and those Powertools makes) gets the builtin
    # handlers at creation: the counter sees every client's calls, as moto's own hook does.
    botocore.handlers.BUILTIN_HANDLERS.append(("before-call", counter))

    import boto3
    from moto import mock_aws

    from bench import cost
    from bench import events as support
    from postback_ops.local.resources import create_resources, function_environment
    from postback_ops.template import load_template
    from postback_relay import wiring
    from postback_relay.adapters.dynamodb_deliveries import key_of
    from postback_relay.domain.config import parse_config
    from postback_relay.domain.delivery import PostbackMessage

    template = load_template()
    with mock_aws():
        stack = create_resources(boto3.Session(), stack_name=stack_name, signing_secret=support.SECRET)
        # The handlers were given the names moto would create (see bench.__main__); check.
        for logical_id in ("IngestFunction", "OutboxFunction", "DispatchFunction"):
            for key, value in function_environment(stack, logical_id, template=template).items():
                if key.endswith(("_TABLE", "_URL")) and os.environ.get(key) != value:
                    raise RuntimeError(f"{key}: the worker's environment does not match moto ({value})")
        receiver = support.AffiliateServer()
        wiring.affiliate_store(stack.outputs["AffiliatesTableName"], allow_loopback=True).put(
            parse_config(support.affiliate_config_data(receiver.url), allow_loopback=True),
            expected_version=None,
            updated_by="bench",
        )
        import dispatch_handler
        import ingest_handler
        import outbox_handler
        from postback_ops.local.stream import StreamMapping, StreamPoller, stream_mapping
        from postback_ops.template import parameter_defaults

        sqs = boto3.client("sqs")
        dynamodb = boto3.client("dynamodb")
        queue_url = stack.outputs["PostbackQueueUrl"]
        # The outbox: Lambda's stream event source mapping (its own reads, not counted: they are
        # the mapping's, free to the function) invoking the outbox handler, whose calls count.
        (outbox_event,) = template["Resources"]["OutboxFunction"]["Properties"]["Events"].values()
        by_arn = {arn: stack.refs[logical_id] for (logical_id, attr), arn in stack.attrs.items() if attr == "Arn"}
        mapping = stream_mapping(
            outbox_event["Properties"],
            function_arn="arn:aws:lambda:eu-west-1:123456789012:function:outbox",
            resolve=lambda value: stack.resolve(value, parameter_defaults(template)),
            queue_url_for_arn=lambda arn: by_arn[arn],
        )
        outbox_calls: Counter[str] = Counter()
        outbox_invocations = [0]

        def invoke_outbox(event: dict[str, Any]) -> Any:
            outbox_invocations[0] += 1
            counter.enabled = True
            try:
                return outbox_handler.lambda_handler(event, _context("outbox"))
            finally:
                outbox_calls.update(counter.take())
                counter.enabled = False

        outbox = StreamPoller(
            boto3.client("dynamodbstreams"),
            StreamMapping(**{**mapping.__dict__, "batching_window_s": 0.0}),
            invoke_outbox,
            region="eu-west-1",
            sqs=sqs,
        )

        def one(
            transaction_ids: list[str],
        ) -> tuple[dict[str, int], dict[str, int], dict[str, int], list[dict[str, Any]]]:
            counter.enabled = True
            answer = ingest_handler.lambda_handler(
                support.http_event(support.request_body(transaction_ids)), _context("ingest")
            )
            ingest_calls = dict(counter.take())
            counter.enabled = False
            if answer["statusCode"] != 202:
                raise RuntimeError(f"ingest answered {answer['statusCode']}: {answer.get('body')}")
            outbox_calls.clear()
            while outbox.poll_once() is not None:
                pass
            outbox_single = dict(outbox_calls)
            records: list[dict[str, Any]] = []
            while len(records) < len(transaction_ids):
                got = sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
                ).get("Messages", [])
                if not got:
                    raise RuntimeError("the postbacks never reached the queue")
                records.extend(
                    support.sqs_record(
                        m["Body"],
                        m["MessageId"],
                        receipt_handle=m["ReceiptHandle"],
                        receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                    )
                    for m in got
                )
            dispatch_calls: Counter[str] = Counter()
            for start in range(0, len(records), 10):
                batch = records[start : start + 10]
                counter.enabled = True
                result = dispatch_handler.lambda_handler({"Records": batch}, _context("dispatch"))
                dispatch_calls.update(counter.take())
                counter.enabled = False
                if result.get("batchItemFailures"):
                    raise RuntimeError(f"dispatch left records on the queue: {result}")
                # What Lambda's event source mapping does with the successes (not the handler's calls).
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(batch)],
                )
            return ingest_calls, outbox_single, dict(dispatch_calls), records

        # The first builds the clients and reads the secret and the affiliate's config.
        ingest_first, outbox_first, dispatch_first, _ = one(["WARM-1"])
        ingest_single, outbox_single, dispatch_single, records = one(["C-1"])
        ingest_batch, outbox_batch, dispatch_batch, _ = one([f"CB-{i}" for i in range(100)])
        if not receiver.wait_for(102, timeout_s=10):
            raise RuntimeError(f"the receiver got {len(receiver.arrivals)} postbacks, wanted 102")

        conversion_item = dynamodb.get_item(
            TableName=stack.outputs["ConversionsTableName"], Key={"conversion_id": {"S": "C-1#sale"}}
        )["Item"]
        delivery_ref = PostbackMessage.model_validate_json(records[0]["body"]).ref
        delivery_item = dynamodb.get_item(TableName=stack.outputs["DeliveriesTableName"], Key=key_of(delivery_ref))[
            "Item"
        ]
        message_bytes = len(records[0]["body"].encode())
        receiver.stop()

    return {
        "ingest": {"calls": ingest_single, **by_kind(ingest_single)},
        # The outbox function's calls, per conversion (one postback each): the stream's batch
        # of 1 for a single conversion, of 100 for a batch request.
        "outbox": {"calls": outbox_single, **by_kind(outbox_single)},
        "dispatch": {"calls": dispatch_single, **by_kind(dispatch_single)},
        "ingest_first_invocation": {"calls": ingest_first, **by_kind(ingest_first)},
        "outbox_first_invocation": {"calls": outbox_first, **by_kind(outbox_first)},
        "dispatch_first_invocation": {"calls": dispatch_first, **by_kind(dispatch_first)},
        "ingest_batch_of_100": {"calls": ingest_batch, **by_kind(ingest_batch)},
        "outbox_batch_of_100": {"calls": outbox_batch, **by_kind(outbox_batch)},
        "dispatch_batch_of_100": {"calls": dispatch_batch, **by_kind(dispatch_batch)},
        "outbox_invocations": outbox_invocations[0],
        "conversion_item_bytes": cost.dynamodb_item_size(conversion_item),
        "delivery_item_bytes": cost.dynamodb_item_size(delivery_item),
        "postback_message_bytes": message_bytes,
        "delivery_item_attributes": sorted(delivery_item),
    }


def main(argv: list[str]) -> int:
    task, out, *args = argv
    sink = CountingSink()
    # Before any handler import: Powertools' Logger binds the stream it writes to at creation.
    sys.stdout = sink
    if task == "ingest-warm":
        result = ingest_warm(int(args[0]), int(args[1]), args[2], sink)
    elif task == "dispatch-warm":
        result = dispatch_warm(int(args[0]), args[1], args[2], sink)
    elif task == "dispatch-concurrency":
        result = dispatch_concurrency(int(args[0]))
    elif task == "dispatch-batch-sizes":
        result = dispatch_batch_sizes([int(a) for a in args[1:]], int(args[0]))
    elif task == "aws-calls":
        result = aws_calls(args[0])
    elif task == "portal-warm":
        from bench import portal_page

        result = portal_page.warm(int(args[0]), args[1])
    else:
        raise SystemExit(f"unknown task {task}")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What a million conversions cost on AWS at list prices: the model and its price tables.

Prices: eu-west-1 (Europe, Ireland) and us-east-1 (US East, N. Virginia), arm64, on demand,
without free tiers, as read on the AWS pricing pages on PRICES_AS_OF (each line names its
page). DynamoDB on-demand request units are the prices after the 50% on-demand reduction of
2024-11-01 (Ireland: $1.4135 / $0.283 per million before it). Step Functions is excluded
(test links only).

The design priced (issue 13, the outbox): the API (one request per conversion or per batch of
up to 100), ingest (one Lambda invocation per request and one conditional PutItem per
conversion, the item carrying the postback messages: its size decides its write units), the
conversions table's stream (free when a Lambda trigger reads it), the outbox function (one
invocation per stream batch; SendMessageBatch of 10 messages, one request per 64 KB of
payload), the dispatcher (ReceiveMessage and DeleteMessageBatch take at most 10 messages, so
the event source mapping makes one of each per 10 messages of a batch, whatever BatchSize
is; one invocation per batch, billed for the batch's wall time), and the delivery log (one
UpdateItem per attempt and one consistent GetItem before each send; no index).

DynamoDB bills a write by the item's size in 1 KB units (for UpdateItem, the larger of the
item before and after), and every write that puts an item in a global secondary index costs
again in that index, by the size of the index entry (its keys, projected attributes and 100
bytes): `dynamodb_item_size` counts an item's bytes the way DynamoDB documents it (attribute
names + values). The old design's keys-only index is kept as a knob (`delivery_gsi_count`) so
that the bill before issue 13 can be priced beside the new one.

Batches fill only as fast as conversions arrive: `expected_batch` gives the mean size of a
batch an event source mapping hands over with a batching window, for arrivals spread evenly
over the month (a Poisson process at the monthly rate): the first record opens the window,
the batch closes when it is full or the window ends.

Encryption at rest costs nothing here: the tables use the AWS owned key (`SSEEnabled: false`)
and the queues SSE-SQS, neither billed per request, so the model has no KMS line.

The observability lines (CloudWatch Logs ingestion, X-Ray traces) are part of the bill the
template causes: JSON logs on every function at the production level (WARNING: what remains
is the warnings, the metrics' EMF lines and the API's access log), X-Ray when `TracingMode`
is Active.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

# Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB. A Graviton2
# vCPU is taken to be worth one core of the machine the benchmark runs on.
LAMBDA_MB_PER_VCPU = 1769
PRICES_AS_OF = "2026-11-26"
REGION = "eu-west-1"
PRICE_PAGES = {
    "http_api_per_million_requests": "https://aws.amazon.com/api-gateway/pricing/ (HTTP APIs, first 300 million)",
    "lambda_per_million_requests": "https://aws.amazon.com/lambda/pricing/ (requests)",
    "lambda_arm64_per_gb_second": "https://aws.amazon.com/lambda/pricing/ (Arm, first 7.5 billion GB-s)",
    "sqs_per_million_requests": "https://aws.amazon.com/sqs/pricing/ (standard queue, per 64 KB chunk of a request)",
    "dynamodb_per_million_wru": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (standard table class)",
    "dynamodb_per_million_rru": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (standard table class)",
    "dynamodb_streams_lambda_reads": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (Change data capture: "
    "GetRecords calls by Lambda triggers are not charged); also the DynamoDB developer guide, "
    "CostOptimization_StreamsUsage: read requests made by Lambda-based consumers of DynamoDB Streams are free",
    "cloudwatch_logs_per_gb_ingested": "https://aws.amazon.com/cloudwatch/pricing/ (Logs, Standard class, ingested)",
    "cloudwatch_logs_ia_per_gb_ingested": "https://aws.amazon.com/cloudwatch/pricing/ (Logs, Infrequent Access class, "
    "ingested)",
    "xray_per_million_traces_recorded": "https://aws.amazon.com/xray/pricing/ (traces recorded)",
    "function_url_per_million_requests": "https://aws.amazon.com/lambda/pricing/ (Function URLs: no charge beyond "
    "the invocation's requests and duration)",
}
# What the stack costs a month whatever the volume, and what it keeps (storage), shown apart from
# the bill per million conversions. Same pages, same date.
FIXED_PRICE_PAGES = {
    "alarm_per_month": "https://aws.amazon.com/cloudwatch/pricing/ (Alarms, standard resolution, per alarm metric)",
    "dashboard_per_month": "https://aws.amazon.com/cloudwatch/pricing/ (Dashboards, per dashboard, beyond the free 3)",
    "custom_metric_per_month": "https://aws.amazon.com/cloudwatch/pricing/ (Metrics, first 10,000 a month; EMF "
    "metrics are custom metrics, prorated by the hour they are emitted in)",
    "secret_per_month": "https://aws.amazon.com/secrets-manager/pricing/ (per secret per month)",
    "sqs_per_million_requests": "https://aws.amazon.com/sqs/pricing/ (the queue mapping's empty long polls)",
    "dynamodb_storage_per_gb_month": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (Data storage, standard "
    "table class, beyond the free 25 GB)",
    "dynamodb_pitr_per_gb_month": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (Continuous backups, PITR)",
}
FIXED_PRICES_BY_REGION: dict[str, dict[str, float]] = {
    "eu-west-1": {
        "alarm_per_month": 0.10,
        "dashboard_per_month": 3.00,
        "custom_metric_per_month": 0.30,
        "secret_per_month": 0.40,
        "sqs_per_million_requests": 0.40,
        "dynamodb_storage_per_gb_month": 0.283,
        "dynamodb_pitr_per_gb_month": 0.2264,
    },
    "us-east-1": {
        "alarm_per_month": 0.10,
        "dashboard_per_month": 3.00,
        "custom_metric_per_month": 0.30,
        "secret_per_month": 0.40,
        "sqs_per_million_requests": 0.40,
        "dynamodb_storage_per_gb_month": 0.25,
        "dynamodb_pitr_per_gb_month": 0.20,
    },
}
# Lambda polls each shard of a DynamoDB stream 4 times a second ("Polling and batching streams",
# https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html): without a batching window, a batch
# is what arrived since the last poll. Lambda's SQS mapping long-polls (20 s), starting at five
# concurrent batches (https://aws.amazon.com/blogs/compute/understanding-how-aws-lambda-scales-
# when-subscribed-to-amazon-sqs-queues/): taken as 5 pollers, 3 empty receives a minute each.
STREAM_POLLS_PER_S = 4.0
SQS_IDLE_POLLERS = 5
SQS_LONG_POLL_S = 20
PRICES_BY_REGION: dict[str, dict[str, float]] = {
    "eu-west-1": {
        "http_api_per_million_requests": 1.11,
        "lambda_per_million_requests": 0.20,
        "lambda_arm64_per_gb_second": 0.0000133334,
        "sqs_per_million_requests": 0.40,
        "dynamodb_per_million_wru": 0.7068,
        "dynamodb_per_million_rru": 0.1413,
        "dynamodb_streams_lambda_reads": 0.0,
        "cloudwatch_logs_per_gb_ingested": 0.57,
        "cloudwatch_logs_ia_per_gb_ingested": 0.285,
        "xray_per_million_traces_recorded": 5.00,
    },
    "us-east-1": {
        "http_api_per_million_requests": 1.00,
        "lambda_per_million_requests": 0.20,
        "lambda_arm64_per_gb_second": 0.0000133334,
        "sqs_per_million_requests": 0.40,
        "dynamodb_per_million_wru": 0.625,
        "dynamodb_per_million_rru": 0.125,
        "dynamodb_streams_lambda_reads": 0.0,
        "cloudwatch_logs_per_gb_ingested": 0.50,
        "cloudwatch_logs_ia_per_gb_ingested": 0.25,
        "xray_per_million_traces_recorded": 5.00,
    },
}
PRICES_USD = PRICES_BY_REGION[REGION]
SQS_CHUNK_BYTES = 64 * 1024
SQS_BATCH_ENTRIES = 10
SECONDS_PER_MONTH = 30 * 24 * 3600


@dataclass(frozen=True)
class Workload:
    """One million conversions, each firing `postbacks_per_conversion` postbacks, delivered at
    the first attempt. Batch sizes are means (full, or as `expected_batch` fills them)."""

    conversions: int = 1_000_000
    conversions_per_request: int = 1  # the platform posts one conversion per request
    postbacks_per_conversion: int = 1
    ingest_ms: float = 20.0  # billed duration per ingest invocation (measured: see bench)
    ingest_memory_mb: int = 512
    # The outbox: stream records (conversions) per invocation, and per-invocation duration.
    # 0 records per batch: no outbox (the design before issue 13: ingest sends to SQS).
    outbox_batch_size: float = 100.0
    outbox_ms_per_batch: float = 30.0
    outbox_memory_mb: int = 256
    # SendMessageBatch calls per outbox invocation; None: ceil(messages / 10), full batches.
    outbox_sends_per_batch: float | None = None
    message_bytes: float = 600.0  # one postback message (SQS body)
    dispatch_batch_size: float = 10  # messages per dispatcher invocation (the ESM's BatchSize, or its fill)
    dispatch_ms_per_batch: float = 150.0  # billed duration per dispatcher invocation (the batch's wall time)
    dispatch_memory_mb: int = 256
    conversion_item_kb: float = 0.9  # the ConversionsTable record, messages included
    delivery_item_kb: float = 0.5  # the DeliveriesTable item after one attempt
    dynamodb_writes_per_conversion: int = 1  # ingest: the conditional put
    dynamodb_writes_per_postback: int = 1  # dispatch: the attempt + state update
    dynamodb_reads_per_postback: float = 1.0  # dispatch: the consistent read before the send (<= 4 KB)
    # The design before issue 13 had one keys-only GSI on DeliveriesTable (by_affiliate): a
    # postback's entry (its keys + 100 bytes, about 200 bytes) was written once.
    delivery_gsi_count: int = 0
    delivery_gsi_writes_per_postback: float = 1.0
    delivery_gsi_entry_kb: float = 0.2
    dynamodb_reads_per_conversion: float = 0.0  # ingest: affiliate configs cached
    # Ingest's own SQS calls per request (the design before issue 13); 0 with the outbox.
    sqs_sends_per_request: float = 0.0
    log_bytes_per_conversion: float = 0.0  # CloudWatch Logs ingested: functions, platform lines, API access log
    xray_traces_per_conversion: float = 0.0
    log_bytes_infrequent_per_conversion: float = 0.0  # into Infrequent Access log groups (the API access log)
    front: str = "http_api"  # the conversion API: "http_api" (API Gateway) or "function_url" (no charge)


def _billed_ms(ms: float) -> float:
    return float(math.ceil(ms))  # Lambda bills per 1 ms


def _number_size(text: str) -> int:
    """DynamoDB: 1 byte per two significant digits, plus 1 byte (leading/trailing zeros trimmed)."""
    # Stored as a mantissa and an exponent: leading and trailing zeros take no room.
    digits = text.lstrip("-").replace(".", "").strip("0")
    significant = max(1, len(digits))
    return (significant + 1) // 2 + 1


def attribute_value_size(value: Mapping[str, Any]) -> int:
    """The size of one attribute value in DynamoDB's low-level format ({"S": ...}, {"M": ...})."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode("utf-8"))
    if kind == "N":
        return _number_size(str(data))
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_value_size({kind[0]: member}) for member in data)
    if kind == "L":
        return 3 + sum(1 + attribute_value_size(member) for member in data)
    if kind == "M":
        return 3 + sum(1 + len(name.encode("utf-8")) + attribute_value_size(member) for name, member in data.items())
    raise ValueError(f"unknown attribute type {kind}")


def dynamodb_item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size as DynamoDB bills it: the sum of attribute name and value sizes, in bytes."""
    return sum(len(name.encode("utf-8")) + attribute_value_size(value) for name, value in item.items())


def write_units(item_bytes: float) -> int:
    """Write request units for one standard write of an item this size (1 KB each, rounded up)."""
    return max(1, math.ceil(item_bytes / 1024))


def sqs_requests_for_batch(messages: int, message_bytes: float) -> int:
    """SQS requests billed for sending `messages`: SendMessageBatch takes 10 entries, and each
    call is billed per 64 KB chunk of its payload."""
    if messages <= 0:
        return 0
    calls = 0
    for start in range(0, messages, SQS_BATCH_ENTRIES):
        entries = min(SQS_BATCH_ENTRIES, messages - start)
        calls += max(1, math.ceil(entries * message_bytes / SQS_CHUNK_BYTES))
    return calls


def _poisson(mean: float, k: int) -> float:
    return math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1)) if mean > 0 else float(k == 0)


def expected_batch(rate_per_s: float, window_s: float, max_size: int, *, per_record: int = 1) -> dict[str, float]:
    """The mean batch an event source mapping hands over, records arriving as a Poisson process
    at `rate_per_s`: the first record opens the `window_s` window; the batch is that record and
    those that arrive within the window, at most `max_size`. `per_record` messages per record
    give the mean SendMessageBatch calls per batch (`sends`, 10 entries each)."""
    mean = rate_per_s * window_s
    size = sends = 0.0
    remaining = 1.0
    for k in range(max_size - 1):
        p = _poisson(mean, k)
        remaining -= p
        records = 1 + k
        size += p * records
        sends += p * math.ceil(records * per_record / SQS_BATCH_ENTRIES)
    remaining = max(0.0, remaining)
    size += remaining * max_size
    sends += remaining * math.ceil(max_size * per_record / SQS_BATCH_ENTRIES)
    return {"size": round(size, 4), "sends": round(sends, 4)}


def polled_batch(rate_per_s: float, interval_s: float, max_size: int, *, per_record: int = 1) -> dict[str, float]:
    """The mean batch of a mapping without a batching window that polls every `interval_s`: the
    records that arrived since the last poll, given that at least one did (a Poisson count at
    `rate_per_s`), at most `max_size`; `sends` as in `expected_batch`."""
    mean = rate_per_s * interval_s
    if mean <= 0:
        return {"size": 1.0, "sends": float(math.ceil(per_record / SQS_BATCH_ENTRIES))}
    some = 1.0 - _poisson(mean, 0)
    size = sends = 0.0
    remaining = some
    k = 1
    while remaining > 1e-12 and k < max_size:
        p = _poisson(mean, k)
        remaining -= p
        size += p * k
        sends += p * math.ceil(k * per_record / SQS_BATCH_ENTRIES)
        k += 1
    remaining = max(0.0, remaining)
    size += remaining * max_size
    sends += remaining * math.ceil(max_size * per_record / SQS_BATCH_ENTRIES)
    return {"size": round(size / some, 4), "sends": round(sends / some, 4)}


def stream_batch(rate_per_s: float, window_s: float, max_size: int, *, per_record: int = 1) -> dict[str, float]:
    """The outbox's stream batch: with a window, `expected_batch`; without, what one of Lambda's
    polls (STREAM_POLLS_PER_S) finds."""
    if window_s > 0:
        return expected_batch(rate_per_s, window_s, max_size, per_record=per_record)
    return polled_batch(rate_per_s, 1 / STREAM_POLLS_PER_S, max_size, per_record=per_record)


def dispatch_batch(
    rate_per_s: float, window_s: float, max_size: int, *, outbox_batch: float, clumped: bool = True
) -> float:
    """The dispatcher's mean batch. The outbox sends a stream batch's postbacks together
    (SendMessageBatch, 10 at a time), and a long-polling receive returns the messages there are,
    up to 10: without a window a batch is one such send (`clumped`, an estimate: Lambda's several
    pollers may split it); a window adds what arrives within it. `clumped=False` ignores the
    sends' grouping: a batch is then only what arrives within the window (`expected_batch`),
    the bound for pollers that always split a send."""
    if not clumped:
        return expected_batch(rate_per_s, window_s, max_size)["size"]
    clump = min(outbox_batch, SQS_BATCH_ENTRIES)
    if window_s <= 0:
        return min(float(max_size), clump)
    return min(float(max_size), outbox_batch + rate_per_s * window_s)


def monthly_rate(conversions_per_month: float) -> float:
    """Conversions per second, spread evenly over a 30-day month."""
    return conversions_per_month / SECONDS_PER_MONTH


def cost_per_million(workload: Workload, region: str = REGION) -> dict[str, float]:
    """The bill for `workload.conversions` conversions, per line, in USD.

    `request_path` sums what the request path costs (API, Lambda, SQS, DynamoDB); `total` adds
    the observability lines.
    """
    p = PRICES_BY_REGION[region]
    n = workload.conversions
    postbacks = n * workload.postbacks_per_conversion
    requests = n / workload.conversions_per_request
    outbox_invocations = n / workload.outbox_batch_size if workload.outbox_batch_size else 0.0
    dispatch_invocations = postbacks / workload.dispatch_batch_size
    if workload.outbox_sends_per_batch is not None:
        outbox_sends_per_batch = workload.outbox_sends_per_batch
    else:
        messages = round(workload.outbox_batch_size * workload.postbacks_per_conversion)
        outbox_sends_per_batch = float(sqs_requests_for_batch(messages, workload.message_bytes))
    delivery_units = math.ceil(workload.delivery_item_kb)
    index_writes_per_postback = (
        workload.delivery_gsi_count
        * workload.delivery_gsi_writes_per_postback
        * math.ceil(workload.delivery_gsi_entry_kb)
    )
    gb_s = (
        requests * _billed_ms(workload.ingest_ms) / 1000 * workload.ingest_memory_mb / 1024
        + outbox_invocations * _billed_ms(workload.outbox_ms_per_batch) / 1000 * workload.outbox_memory_mb / 1024
        + dispatch_invocations * _billed_ms(workload.dispatch_ms_per_batch) / 1000 * workload.dispatch_memory_mb / 1024
    )
    write_units_total = (
        n * workload.dynamodb_writes_per_conversion * math.ceil(workload.conversion_item_kb)
        + postbacks * workload.dynamodb_writes_per_postback * delivery_units
        + postbacks * index_writes_per_postback
    )
    read_units_total = postbacks * workload.dynamodb_reads_per_postback + n * workload.dynamodb_reads_per_conversion
    lines = {
        "api_gateway": requests / 1e6 * p["http_api_per_million_requests"] if workload.front == "http_api" else 0.0,
        "lambda_requests": (requests + outbox_invocations + dispatch_invocations)
        / 1e6
        * p["lambda_per_million_requests"],
        "lambda_duration": gb_s * p["lambda_arm64_per_gb_second"],
        # ingest's own sends (before issue 13) or the outbox's SendMessageBatch calls; the
        # event source mapping: a ReceiveMessage and a DeleteMessageBatch per 10 messages.
        "sqs": (
            requests * workload.sqs_sends_per_request
            + outbox_invocations * outbox_sends_per_batch
            + 2 * dispatch_invocations * max(1, math.ceil(workload.dispatch_batch_size / SQS_BATCH_ENTRIES))
        )
        / 1e6
        * p["sqs_per_million_requests"],
        "dynamodb": write_units_total / 1e6 * p["dynamodb_per_million_wru"]
        + read_units_total / 1e6 * p["dynamodb_per_million_rru"],
        # GetRecords by the outbox's Lambda trigger (about one per batch): not charged.
        "dynamodb_streams": outbox_invocations / 1e6 * p["dynamodb_streams_lambda_reads"],
    }
    lines["request_path"] = sum(lines.values())
    lines["cloudwatch_logs"] = (
        n * workload.log_bytes_per_conversion / 1e9 * p["cloudwatch_logs_per_gb_ingested"]
        + n * workload.log_bytes_infrequent_per_conversion / 1e9 * p["cloudwatch_logs_ia_per_gb_ingested"]
    )
    lines["xray"] = n * workload.xray_traces_per_conversion / 1e6 * p["xray_per_million_traces_recorded"]
    lines["total"] = lines["request_path"] + lines["cloudwatch_logs"] + lines["xray"]
    lines["lambda_gb_s"] = gb_s
    lines["dynamodb_write_units"] = write_units_total
    lines["dynamodb_read_units"] = read_units_total
    return {k: round(v, 4) for k, v in lines.items()}


def before_issue_13(workload: Workload) -> Workload:
    """The same workload on the design before issue 13: ingest sends each postback to SQS
    (SendMessageBatch of 10 per request), no outbox, the conversion item without the messages,
    and the delivery log's keys-only index entry (one more write unit per postback)."""
    return replace(
        workload,
        outbox_batch_size=0.0,
        sqs_sends_per_request=math.ceil(workload.conversions_per_request * workload.postbacks_per_conversion / 10),
        conversion_item_kb=min(workload.conversion_item_kb, 1.0),
        delivery_gsi_count=1,
    )


def xray_traces(invocations: float, seconds: float, *, reservoir_per_s: float = 1.0, rate: float = 0.05) -> float:
    """Traces the default sampling rule records: the first request each second, 5% of the rest."""
    reserved = min(invocations, seconds * reservoir_per_s)
    return reserved + rate * (invocations - reserved)


def fixed_monthly(
    *, alarms: int, dashboards: int, custom_metrics: int, secrets: int, region: str = REGION
) -> dict[str, float]:
    """What the stack costs a month at any volume: alarms, dashboards, the metrics the code
    emits, secrets, and the queue mapping's empty long polls (SQS_IDLE_POLLERS)."""
    p = FIXED_PRICES_BY_REGION[region]
    idle_receives = SQS_IDLE_POLLERS * SECONDS_PER_MONTH / SQS_LONG_POLL_S
    lines = {
        "alarms": alarms * p["alarm_per_month"],
        "dashboards": dashboards * p["dashboard_per_month"],
        "custom_metrics": custom_metrics * p["custom_metric_per_month"],
        "secrets": secrets * p["secret_per_month"],
        "sqs_idle_polls": idle_receives / 1e6 * p["sqs_per_million_requests"],
    }
    lines["total"] = sum(lines.values())
    return {k: round(v, 4) for k, v in lines.items()}


def storage_monthly(
    conversions_per_month: float,
    *,
    conversion_bytes: float,
    conversion_days: float,
    delivery_bytes: float,
    delivery_days: float,
    region: str = REGION,
) -> dict[str, float]:
    """DynamoDB storage and point-in-time recovery once the tables hold their retention's worth
    (TTL deletions are free): each item plus DynamoDB's 100 bytes of overhead."""
    p = FIXED_PRICES_BY_REGION[region]
    months = 30.0
    gb = (
        conversions_per_month * conversion_days / months * (conversion_bytes + 100)
        + conversions_per_month * delivery_days / months * (delivery_bytes + 100)
    ) / 1e9
    lines = {
        "gb": gb,
        "storage": gb * p["dynamodb_storage_per_gb_month"],
        "pitr": gb * p["dynamodb_pitr_per_gb_month"],
    }
    lines["total"] = lines["storage"] + lines["pitr"]
    return {k: round(v, 4) for k, v in lines.items()}


def describe(workload: Workload, region: str = REGION) -> dict[str, object]:
    return {
        "prices_as_of": PRICES_AS_OF,
        "region": region,
        "prices_usd": PRICES_BY_REGION[region],
        "price_pages": PRICE_PAGES,
        "assumptions": asdict(workload),
    }

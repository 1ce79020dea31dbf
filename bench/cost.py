"""What a million conversions cost on AWS at list prices: the model and its price table.

Prices: eu-west-1 (Europe, Ireland), arm64, on-demand, without free tiers, as read on the
AWS pricing pages on 2026-11-26 (each line names its page). DynamoDB on-demand request units
are half the pre-November-2024 Ireland list price ($1.4135 / $0.283 per million), after the
50% on-demand reduction of 2024-11-01. Step Functions is excluded (test links only).

DynamoDB bills a write by the item's size in 1 KB units (for UpdateItem, the larger of the
item before and after), and every write that puts an item in a global secondary index or
changes a projected attribute costs again in that index, by the size of the index entry (its
keys, projected attributes and 100 bytes): `dynamodb_item_size` counts an item's bytes the
way DynamoDB documents it (attribute names + values).

The observability lines (CloudWatch Logs ingestion, X-Ray traces) are part of the bill the
template causes: `Tracing: Active` and JSON logs on every function, an access log on the API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

PRICES_AS_OF = "2026-11-26"
REGION = "eu-west-1"
PRICES_USD = {
    # https://aws.amazon.com/api-gateway/pricing/ (HTTP APIs, first 300 million a month, Ireland)
    "http_api_per_million_requests": 1.11,
    # https://aws.amazon.com/lambda/pricing/ (Arm, Ireland)
    "lambda_per_million_requests": 0.20,
    "lambda_arm64_per_gb_second": 0.0000133334,
    # https://aws.amazon.com/sqs/pricing/ (standard queue, per 64 KB chunk of a request)
    "sqs_per_million_requests": 0.40,
    # https://aws.amazon.com/dynamodb/pricing/on-demand/ (Ireland, standard table class)
    "dynamodb_per_million_wru": 0.7068,
    "dynamodb_per_million_rru": 0.1413,
    # https://aws.amazon.com/cloudwatch/pricing/ (Logs, Standard class, data ingested, Ireland)
    "cloudwatch_logs_per_gb_ingested": 0.57,
    # https://aws.amazon.com/xray/pricing/ (traces recorded)
    "xray_per_million_traces_recorded": 5.00,
}


@dataclass(frozen=True)
class Workload:
    """One million conversions, each firing one postback, delivered at the first attempt."""

    conversions: int = 1_000_000
    conversions_per_request: int = 1  # the platform posts one conversion per request
    ingest_ms: float = 20.0  # billed duration per ingest invocation (measured: see bench)
    ingest_memory_mb: int = 512
    dispatch_batch_size: int = 10  # messages per dispatcher invocation (the ESM's BatchSize)
    dispatch_ms_per_batch: float = 150.0  # billed duration per dispatcher invocation
    dispatch_memory_mb: int = 256
    conversion_item_kb: float = 0.6  # the ConversionsTable record
    delivery_item_kb: float = 0.9  # the DeliveriesTable item after one attempt
    dynamodb_writes_per_conversion: int = 1  # ingest: the conditional put
    dynamodb_writes_per_postback: int = 1  # dispatch: the attempt + state update
    dynamodb_reads_per_postback: float = 0.0  # dispatch reads only on redelivery
    # DeliveriesTable's one GSI, by_affiliate, projection KEYS_ONLY: a postback's entry is
    # written once, when its item is first logged (its attempts change neither index key nor
    # any projected attribute, so they cost the index nothing). An entry is its keys plus
    # DynamoDB's 100 bytes of index overhead: about 200 bytes, one write unit.
    delivery_gsi_count: int = 1
    delivery_gsi_writes_per_postback: float = 1.0
    delivery_gsi_entry_kb: float = 0.2
    dynamodb_reads_per_conversion: float = 0.0  # ingest: affiliate configs cached
    sqs_sends_per_request: float | None = None  # measured; None: one SendMessageBatch per 10 postbacks
    log_bytes_per_conversion: float = 0.0  # CloudWatch Logs ingested: functions, platform lines, API access log
    xray_traces_per_conversion: float = 0.0


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


def cost_per_million(workload: Workload) -> dict[str, float]:
    """The bill for `workload.conversions` conversions, per line, in USD.

    `request_path` sums what the request path costs (API, Lambda, SQS, DynamoDB); `total` adds
    the observability lines.
    """
    p = PRICES_USD
    n = workload.conversions
    requests = n / workload.conversions_per_request
    dispatch_invocations = n / workload.dispatch_batch_size
    sends_per_request = (
        workload.sqs_sends_per_request
        if workload.sqs_sends_per_request is not None
        else math.ceil(workload.conversions_per_request / 10)
    )
    delivery_units = math.ceil(workload.delivery_item_kb)
    index_writes_per_postback = (
        workload.delivery_gsi_count
        * workload.delivery_gsi_writes_per_postback
        * math.ceil(workload.delivery_gsi_entry_kb)
    )
    lines = {
        "api_gateway": requests / 1e6 * p["http_api_per_million_requests"],
        "lambda_requests": (requests + dispatch_invocations) / 1e6 * p["lambda_per_million_requests"],
        "lambda_duration": (
            requests * _billed_ms(workload.ingest_ms) / 1000 * workload.ingest_memory_mb / 1024
            + dispatch_invocations
            * _billed_ms(workload.dispatch_ms_per_batch)
            / 1000
            * workload.dispatch_memory_mb
            / 1024
        )
        * p["lambda_arm64_per_gb_second"],
        # ingest: SendMessageBatch calls per request (one per 10 postbacks); the event source
        # mapping: one ReceiveMessage and one DeleteMessageBatch per batch.
        "sqs": (requests * sends_per_request + 2 * dispatch_invocations) / 1e6 * p["sqs_per_million_requests"],
        "dynamodb": (
            n * workload.dynamodb_writes_per_conversion * math.ceil(workload.conversion_item_kb)
            + n * workload.dynamodb_writes_per_postback * delivery_units
            + n * index_writes_per_postback
        )
        / 1e6
        * p["dynamodb_per_million_wru"]
        + n
        * (workload.dynamodb_reads_per_postback + workload.dynamodb_reads_per_conversion)
        / 1e6
        * p["dynamodb_per_million_rru"],
    }
    lines["request_path"] = sum(lines.values())
    lines["cloudwatch_logs"] = n * workload.log_bytes_per_conversion / 1e9 * p["cloudwatch_logs_per_gb_ingested"]
    lines["xray"] = n * workload.xray_traces_per_conversion / 1e6 * p["xray_per_million_traces_recorded"]
    lines["total"] = lines["request_path"] + lines["cloudwatch_logs"] + lines["xray"]
    return {k: round(v, 4) for k, v in lines.items()}


def xray_traces(invocations: float, seconds: float, *, reservoir_per_s: float = 1.0, rate: float = 0.05) -> float:
    """Traces the default sampling rule records: the first request each second, 5% of the rest."""
    reserved = min(invocations, seconds * reservoir_per_s)
    return reserved + rate * (invocations - reserved)


def describe(workload: Workload) -> dict[str, object]:
    return {"prices_as_of": PRICES_AS_OF, "region": REGION, "prices_usd": PRICES_USD, "assumptions": asdict(workload)}

"""What a million conversions cost on AWS at list prices: the model and its price table.

Prices: eu-west-1 (Europe, Ireland), arm64, on-demand, without free tiers, as read on the
AWS pricing pages on 2026-11-26 (each line names its page). DynamoDB on-demand request units
are half the pre-November-2024 Ireland list price ($1.4135 / $0.283 per million), after the
50% on-demand reduction of 2024-11-01. Step Functions is excluded (test links only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

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


def _billed_ms(ms: float) -> float:
    return float(math.ceil(ms))  # Lambda bills per 1 ms


def cost_per_million(workload: Workload) -> dict[str, float]:
    """The bill for `workload.conversions` conversions, per line, in USD."""
    p = PRICES_USD
    n = workload.conversions
    requests = n / workload.conversions_per_request
    dispatch_invocations = n / workload.dispatch_batch_size
    lines = {
        "api_gateway": requests / 1e6 * p["http_api_per_million_requests"],
        "lambda_requests": (requests + dispatch_invocations) / 1e6 * p["lambda_per_million_requests"],
        "lambda_duration": (
            requests * _billed_ms(workload.ingest_ms) / 1000 * workload.ingest_memory_mb / 1024
            + dispatch_invocations * _billed_ms(workload.dispatch_ms_per_batch) / 1000 * workload.dispatch_memory_mb / 1024
        )
        * p["lambda_arm64_per_gb_second"],
        # ingest: one SendMessage(Batch) per request (batched by 10 for batch requests);
        # the event source mapping: one ReceiveMessage and one DeleteMessageBatch per batch.
        "sqs": (
            requests * math.ceil(workload.conversions_per_request / 10) + 2 * dispatch_invocations
        )
        / 1e6
        * p["sqs_per_million_requests"],
        "dynamodb": (
            n * workload.dynamodb_writes_per_conversion * math.ceil(workload.conversion_item_kb)
            + n * workload.dynamodb_writes_per_postback * math.ceil(workload.delivery_item_kb)
        )
        / 1e6
        * p["dynamodb_per_million_wru"]
        + n * workload.dynamodb_reads_per_postback / 1e6 * p["dynamodb_per_million_rru"],
    }
    lines["total"] = sum(lines.values())
    return {k: round(v, 4) for k, v in lines.items()}


def describe(workload: Workload) -> dict[str, object]:
    return {"prices_as_of": PRICES_AS_OF, "region": REGION, "prices_usd": PRICES_USD, "assumptions": asdict(workload)}

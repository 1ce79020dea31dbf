"""The benchmark's cost model (bench/cost.py): arithmetic checked against hand-computed bills,
so that a change to the model or its prices cannot go unnoticed. `make bench` itself stays out
of `make test`."""

from __future__ import annotations

import pytest

from bench import cost


def test_a_known_workload_costs_the_hand_computed_bill() -> None:
    # GIVEN a million conversions, one per request, one postback each, with logs and traces
    workload = cost.Workload(
        conversions=1_000_000,
        conversions_per_request=1,
        ingest_ms=20.0,
        ingest_memory_mb=512,
        dispatch_batch_size=10,
        dispatch_ms_per_batch=150.0,
        dispatch_memory_mb=256,
        conversion_item_kb=0.6,
        delivery_item_kb=0.9,
        dynamodb_writes_per_conversion=1,
        dynamodb_writes_per_postback=1,
        dynamodb_reads_per_postback=0.0,
        delivery_gsi_count=2,
        log_bytes_per_conversion=1000.0,
        xray_traces_per_conversion=0.1,
    )

    # WHEN the model prices it
    bill = cost.cost_per_million(workload)

    # THEN each line is what the price table gives by hand
    assert bill["api_gateway"] == pytest.approx(1.11)  # 1M requests x $1.11/M
    assert bill["lambda_requests"] == pytest.approx(0.22)  # (1M ingest + 100k dispatch) x $0.20/M
    # (1M x 0.020 s x 0.5 GB + 100k x 0.150 s x 0.25 GB) = 13,750 GB-s x $0.0000133334
    assert bill["lambda_duration"] == pytest.approx(0.1833)
    assert bill["sqs"] == pytest.approx(0.48)  # (1M sends + 2 x 100k ESM calls) x $0.40/M
    # 1 WRU per conversion + 1 WRU per postback in the table and again in each of 2 GSIs
    assert bill["dynamodb"] == pytest.approx(2.8272)
    assert bill["request_path"] == pytest.approx(4.8205)
    assert bill["cloudwatch_logs"] == pytest.approx(0.57)  # 1 GB x $0.57
    assert bill["xray"] == pytest.approx(0.5)  # 100k traces x $5/M
    assert bill["total"] == pytest.approx(5.8905)


def test_a_keys_only_index_costs_one_small_write_per_postback() -> None:
    # GIVEN the default workload: DeliveriesTable's one keys-only index, entered once per postback
    workload = cost.Workload()

    # WHEN the model prices it
    bill = cost.cost_per_million(workload)

    # THEN DynamoDB is 3 WRU per conversion: its record, the delivery item and one index entry
    assert bill["dynamodb"] == pytest.approx(3 * 0.7068)
    # AND an index entry over 1 KB (a wide INCLUDE) would cost two units
    wide = cost.cost_per_million(cost.Workload(delivery_gsi_entry_kb=1.2))
    assert wide["dynamodb"] == pytest.approx(4 * 0.7068)


def test_batched_requests_divide_the_per_request_lines() -> None:
    # GIVEN the same conversions posted 100 per request, SendMessageBatch by 10
    single = cost.cost_per_million(cost.Workload())
    batched = cost.cost_per_million(cost.Workload(conversions_per_request=100))

    # THEN API Gateway costs a hundredth, SQS only the ingest sends shrink, DynamoDB stays
    assert batched["api_gateway"] == pytest.approx(single["api_gateway"] / 100)
    assert batched["sqs"] == pytest.approx((10_000 * 10 + 200_000) / 1e6 * 0.40)
    assert batched["dynamodb"] == single["dynamodb"]


def test_item_sizes_count_names_and_values_as_dynamodb_does() -> None:
    # GIVEN an item with a string, a number, a map and a list
    item = {
        "pk": {"S": "abc"},  # 2 + 3
        "n": {"N": "123.450"},  # 1 + (5 significant digits -> 3 bytes + 1)
        "m": {"M": {"a": {"BOOL": True}}},  # 1 + 3 + (1 + 1 + 1)
        "l": {"L": [{"S": "xy"}]},  # 1 + 3 + (1 + 2)
    }

    # WHEN its size is counted
    size = cost.dynamodb_item_size(item)

    # THEN it is the sum of the documented sizes
    assert size == 24
    assert cost.write_units(1024) == 1
    assert cost.write_units(1025) == 2


def test_the_default_sampling_rule_keeps_one_trace_a_second_and_five_percent_of_the_rest() -> None:
    # GIVEN a 30-day month
    month = 30 * 24 * 3600

    # THEN a million invocations spread over it are all traced, ten million mostly not
    assert cost.xray_traces(1_000_000, month) == pytest.approx(1_000_000)
    assert cost.xray_traces(10_000_000, month) == pytest.approx(month + 0.05 * (10_000_000 - month))

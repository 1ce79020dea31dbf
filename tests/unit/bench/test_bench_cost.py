"""The benchmark's cost model (bench/cost.py): arithmetic checked against hand-computed bills,
so that a change to the model or its prices cannot go unnoticed. `make bench` itself stays out
of `make test`."""

from __future__ import annotations

from typing import Any

import pytest

from bench import cost


def test_a_known_workload_costs_the_hand_computed_bill() -> None:
    # GIVEN a million conversions, one per request, one postback each, through the outbox, with logs and traces
    workload = cost.Workload(
        conversions=1_000_000,
        conversions_per_request=1,
        ingest_ms=20.0,
        ingest_memory_mb=512,
        outbox_batch_size=100,
        outbox_ms_per_batch=40.0,
        outbox_memory_mb=256,
        message_bytes=600.0,
        dispatch_batch_size=10,
        dispatch_ms_per_batch=150.0,
        dispatch_memory_mb=256,
        conversion_item_kb=0.9,
        delivery_item_kb=0.5,
        dynamodb_writes_per_conversion=1,
        dynamodb_writes_per_postback=1,
        dynamodb_reads_per_postback=1.0,
        log_bytes_per_conversion=1000.0,
        xray_traces_per_conversion=0.1,
    )

    # WHEN the model prices it in eu-west-1
    bill = cost.cost_per_million(workload, "eu-west-1")

    # THEN each line is what the price table gives by hand
    assert bill["api_gateway"] == pytest.approx(1.11)  # 1M requests x $1.11/M
    # (1M ingest + 10k outbox + 100k dispatch) x $0.20/M
    assert bill["lambda_requests"] == pytest.approx(0.222)
    # 1M x 0.020 s x 0.5 GB + 10k x 0.040 s x 0.25 GB + 100k x 0.150 s x 0.25 GB = 13,850 GB-s
    assert bill["lambda_gb_s"] == pytest.approx(13_850)
    assert bill["lambda_duration"] == pytest.approx(13_850 * 0.0000133334, abs=1e-4)
    # the outbox: 10 SendMessageBatch of 10 per batch of 100 (6 KB each: one 64 KB chunk) = 100k;
    # the dispatcher's mapping: 2 x 100k
    assert bill["sqs"] == pytest.approx(0.12)
    # 1 WRU per conversion record + 1 WRU per delivery item; 1 RRU per consistent read; no index
    assert bill["dynamodb_write_units"] == 2_000_000
    assert bill["dynamodb_read_units"] == 1_000_000
    assert bill["dynamodb"] == pytest.approx(2 * 0.7068 + 0.1413)
    assert bill["dynamodb_streams"] == 0.0  # GetRecords by a Lambda trigger are free
    assert bill["request_path"] == pytest.approx(1.11 + 0.222 + 0.1847 + 0.12 + 1.5549, abs=1e-3)
    assert bill["cloudwatch_logs"] == pytest.approx(0.57)  # 1 GB x $0.57
    assert bill["xray"] == pytest.approx(0.5)  # 100k traces x $5/M
    assert bill["total"] == pytest.approx(bill["request_path"] + 1.07)


def test_us_east_1_prices_the_same_workload_lower() -> None:
    workload = cost.Workload()
    eu = cost.cost_per_million(workload, "eu-west-1")
    us = cost.cost_per_million(workload, "us-east-1")
    assert us["api_gateway"] == pytest.approx(1.00)
    assert us["dynamodb"] == pytest.approx(2 * 0.625 + 0.125)
    assert us["lambda_duration"] == eu["lambda_duration"]
    assert us["sqs"] == eu["sqs"]


def test_a_record_carrying_messages_over_one_kilobyte_costs_two_write_units() -> None:
    small = cost.cost_per_million(cost.Workload(conversion_item_kb=0.99))
    large = cost.cost_per_million(cost.Workload(conversion_item_kb=1.2))
    assert large["dynamodb_write_units"] - small["dynamodb_write_units"] == 1_000_000
    assert large["dynamodb"] - small["dynamodb"] == pytest.approx(0.7068)


def test_the_design_before_issue_13_paid_an_index_entry_and_an_sqs_send_per_conversion() -> None:
    # GIVEN the default workload, and the same on the old design
    new = cost.Workload(conversion_item_kb=0.9)
    old = cost.before_issue_13(new)

    # WHEN both are priced
    new_bill, old_bill = cost.cost_per_million(new), cost.cost_per_million(old)

    # THEN the old one wrote 3 units per conversion (record, delivery item, index entry)
    assert old_bill["dynamodb_write_units"] == 3_000_000
    assert new_bill["dynamodb_write_units"] == 2_000_000
    # AND sent one SQS request per conversion, where the outbox sends one per 10
    assert old_bill["sqs"] == pytest.approx((1_000_000 + 2 * 100_000) / 1e6 * 0.40)
    assert new_bill["sqs"] == pytest.approx((100_000 + 2 * 100_000) / 1e6 * 0.40)
    # AND an index entry over 1 KB (a wide INCLUDE) would have cost two units
    wide = cost.cost_per_million(cost.before_issue_13(cost.Workload(delivery_gsi_entry_kb=1.2)))
    assert wide["dynamodb_write_units"] == 4_000_000


def test_batched_requests_divide_the_per_request_lines() -> None:
    # GIVEN the same conversions posted 100 per request
    single = cost.cost_per_million(cost.Workload())
    batched = cost.cost_per_million(cost.Workload(conversions_per_request=100))

    # THEN API Gateway and the ingest invocations cost a hundredth; DynamoDB and SQS stay
    assert batched["api_gateway"] == pytest.approx(single["api_gateway"] / 100)
    assert batched["lambda_requests"] == pytest.approx((10_000 + 10_000 + 100_000) / 1e6 * 0.20)
    assert batched["dynamodb"] == single["dynamodb"]
    assert batched["sqs"] == single["sqs"]


def test_a_dispatch_batch_over_ten_messages_still_receives_and_deletes_by_ten() -> None:
    # GIVEN dispatch batches of 50 instead of 10
    by_ten = cost.cost_per_million(cost.Workload(dispatch_batch_size=10))
    by_fifty = cost.cost_per_million(cost.Workload(dispatch_batch_size=50))
    # THEN the invocations are a fifth, the SQS calls the same: ReceiveMessage and
    # DeleteMessageBatch take at most 10 messages each
    assert by_fifty["sqs"] == by_ten["sqs"]
    assert by_ten["lambda_requests"] - by_fifty["lambda_requests"] == pytest.approx(80_000 / 1e6 * 0.20)


def test_sqs_bills_a_batch_per_64_kb_chunk() -> None:
    assert cost.sqs_requests_for_batch(0, 600) == 0
    assert cost.sqs_requests_for_batch(10, 600) == 1  # 6 KB: one chunk
    assert cost.sqs_requests_for_batch(11, 600) == 2  # two calls
    assert cost.sqs_requests_for_batch(10, 7_000) == 2  # 70 KB in one call: two chunks
    assert cost.sqs_requests_for_batch(100, 600) == 10


def test_a_batching_window_fills_a_batch_as_fast_as_records_arrive() -> None:
    # GIVEN 1 M and 10 M conversions a month, spread evenly (0.39/s and 3.9/s)
    slow, fast = cost.monthly_rate(1_000_000), cost.monthly_rate(10_000_000)
    assert slow == pytest.approx(0.3858, abs=1e-4)

    # WHEN a 1 s window collects them into batches of at most 100
    at_1m = cost.expected_batch(slow, 1.0, 100)
    at_10m = cost.expected_batch(fast, 1.0, 100)

    # THEN a batch is its first record plus those arriving within the window: 1 + rate x window
    assert at_1m["size"] == pytest.approx(1 + slow, abs=1e-3)
    assert at_10m["size"] == pytest.approx(1 + fast, abs=1e-3)
    assert at_1m["sends"] == pytest.approx(1.0)  # fewer than 10 records: one SendMessageBatch
    # AND the cap holds when records arrive faster than the window can take them
    assert cost.expected_batch(1000.0, 1.0, 10)["size"] == pytest.approx(10.0)
    assert cost.expected_batch(1000.0, 1.0, 100)["sends"] == pytest.approx(10.0)
    # AND no window means one record a batch
    assert cost.expected_batch(fast, 0.0, 10)["size"] == pytest.approx(1.0)


def test_item_sizes_count_names_and_values_as_dynamodb_does() -> None:
    # GIVEN an item with a string, a number, a map and a list
    item: dict[str, dict[str, Any]] = {
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


def test_a_stream_without_a_window_hands_over_what_one_poll_finds() -> None:
    # GIVEN 4 conversions a second, Lambda polling the stream 4 times a second (no window)
    batch = cost.stream_batch(4.0, 0.0, 100)
    # THEN a batch is a Poisson(1) count given at least one: 1 / (1 - e^-1)
    assert batch["size"] == pytest.approx(1 / (1 - 2.718281828**-1), rel=1e-3)
    # AND with a 1 s window, the opening record and the 4 a second that follow it
    assert cost.stream_batch(4.0, 1.0, 100)["size"] == pytest.approx(5.0, rel=1e-3)


def test_the_dispatcher_takes_an_outbox_send_together_unless_pollers_split_it() -> None:
    # GIVEN outbox batches of 5 postbacks at 4 conversions a second
    # WHEN the dispatcher has no window THEN a batch is one send (at most 10, at most its size)
    assert cost.dispatch_batch(4.0, 0.0, 10, outbox_batch=5.0) == 5.0
    assert cost.dispatch_batch(4.0, 0.0, 10, outbox_batch=30.0) == 10.0
    assert cost.dispatch_batch(4.0, 0.0, 1, outbox_batch=5.0) == 1.0
    # AND with a 1 s window, the send and what arrives within the window
    assert cost.dispatch_batch(4.0, 1.0, 50, outbox_batch=5.0) == 9.0
    # AND if the pollers split every send, a batch without a window is one message
    assert cost.dispatch_batch(4.0, 0.0, 10, outbox_batch=5.0, clumped=False) == 1.0


def test_a_function_url_front_costs_nothing_and_the_access_log_is_priced_as_infrequent_access() -> None:
    # GIVEN one workload behind each front, 1,000 standard and 200 infrequent-access log bytes per conversion
    base = cost.Workload(log_bytes_per_conversion=1000.0, log_bytes_infrequent_per_conversion=200.0)
    http = cost.cost_per_million(base, "eu-west-1")
    url = cost.cost_per_million(cost.Workload(**{**base.__dict__, "front": "function_url"}), "eu-west-1")
    # THEN the API line is $1.11 behind the HTTP API and nothing behind the URL, all else equal
    assert http["api_gateway"] == 1.11
    assert url["api_gateway"] == 0.0
    assert http["lambda_requests"] == url["lambda_requests"]
    # AND the logs are 1 GB standard ($0.57) and 0.2 GB infrequent access ($0.285 a GB)
    assert http["cloudwatch_logs"] == pytest.approx(0.57 + 0.2 * 0.285, abs=1e-4)


def test_fixed_and_kept_costs_are_the_price_tables_by_hand() -> None:
    # GIVEN 6 alarms, 1 dashboard, 24 metrics, 1 secret
    fixed = cost.fixed_monthly(alarms=6, dashboards=1, custom_metrics=24, secrets=1, region="eu-west-1")
    # THEN $0.60 + $3.00 + $7.20 + $0.40 + 5 pollers x 3 empty receives a minute (648,000: $0.2592)
    assert fixed["total"] == pytest.approx(0.60 + 3.00 + 7.20 + 0.40 + 0.2592, abs=1e-4)
    # AND a million conversions a month kept 30 days at 900 bytes (+100 overhead) and deliveries
    # kept 30 days at 400 (+100): 1.5 GB at $0.283 + $0.2264 a GB-month
    kept = cost.storage_monthly(
        1e6, conversion_bytes=900, conversion_days=30, delivery_bytes=400, delivery_days=30, region="eu-west-1"
    )
    assert kept["gb"] == pytest.approx(1.5)
    assert kept["total"] == pytest.approx(1.5 * (0.283 + 0.2264), abs=1e-3)

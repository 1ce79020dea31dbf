"""The cost model of waits (bench/waits.py): hops counted as SQS counts them, prices in order."""

from bench import waits


def test_a_wait_is_one_message_per_fifteen_minutes() -> None:
    assert [waits.hops(s) for s in (1, 900, 901, 36_000, 43_200)] == [1, 1, 2, 40, 48]
    # the whole schedule of a postback failing every attempt: 5 s ... 10 h
    assert waits.retry_costs()["hops_per_postback_failing_every_attempt"] == 112


def test_short_waits_cost_the_same_every_way_and_long_ones_favour_a_scheduler() -> None:
    costs = waits.retry_costs()["usd_per_million_waits_by_step_s"]
    # GIVEN waits within SQS's 15 minutes, THEN every way is one delayed message
    assert len(set(costs["300"].values())) == 1
    # GIVEN a 10-hour wait, THEN 40 hops cost more than one schedule or one swept item
    ten_hours = costs["36000"]
    assert ten_hours["eventbridge_scheduler"] < ten_hours["dynamodb_sweeper"] < ten_hours["chained_hops"]

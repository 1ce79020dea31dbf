"""Circuit notices: one message per opening and per closing, however many dispatcher
instances see the transition; a failed publish never costs or doubles a postback."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import FakeDeliveryLog, FakeEndpointStore, FakeRetryControl, RecordingNotifier, ScriptedSender
from fakes.clocks import Clock

from postback_relay.domain.delivery import FAILURE_THRESHOLD, CircuitStatus, PostbackMessage
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.notices import CircuitChange
from postback_relay.domain.records import ReceivedPostback, SendResult
from postback_relay.services.circuit import CircuitBreakers
from postback_relay.services.dispatch import Dispatcher, DispatchOutcome

URL = "https://flaky.example:8443/pb?cid=secret-click"
ENDPOINT = "https://flaky.example:8443"


def received(message: PostbackMessage, n: int) -> ReceivedPostback:
    return ReceivedPostback(f"m{n}", f"r{n}", 1, message.model_dump_json())


def instance(
    store: FakeEndpointStore, notifier: RecordingNotifier, clock: Clock, sender: ScriptedSender, log: FakeDeliveryLog
) -> Dispatcher:
    """One dispatcher instance: its own breakers in memory, the store shared."""
    return Dispatcher(
        deliveries=log,
        sender=sender,
        retries=FakeRetryControl(),
        breakers=CircuitBreakers(store, notifier=notifier, clock=clock),
    )


@pytest.fixture
def world(
    endpoints: FakeEndpointStore, sender: ScriptedSender, clock: Clock, deliveries: FakeDeliveryLog
) -> dict[str, Any]:
    return {"store": endpoints, "sender": sender, "clock": clock, "log": deliveries, "notifier": RecordingNotifier()}


def test_an_opening_seen_by_three_instances_is_announced_once(world: dict[str, Any], new_message: Any) -> None:
    # GIVEN three dispatcher instances sharing one circuit store, and an endpoint answering 503
    notifier: RecordingNotifier = world["notifier"]
    instances = [instance(world["store"], notifier, world["clock"], world["sender"], world["log"]) for _ in range(3)]
    world["sender"].answer(URL, SendResult(503, 5, "down"))
    # WHEN each instance sees enough failures to open the circuit, in turns (so that none has
    # learnt of another's opening yet), two affiliates' postbacks among them
    n = 0
    for _ in range(FAILURE_THRESHOLD):
        for dispatcher in instances:
            n += 1
            affiliate = "1111111" if n % 2 else "2222222"
            outcome = dispatcher.dispatch(received(new_message(n, url=URL, affiliate_id=affiliate), n)).outcome
            assert outcome is DispatchOutcome.RETRIED
    # THEN one notice went out: the instance whose conditional write recorded the opening sent it
    assert [(x.change, x.endpoint) for x in notifier.notices] == [(CircuitChange.OPENED, ENDPOINT)]
    notice = notifier.notices[0]
    assert notice.affiliates == ("1111111", "2222222")
    assert notice.failure_reasons == (("503", FAILURE_THRESHOLD),)  # what the winner saw
    # AND the text names the endpoint without its path or query, the reasons and the command to run
    assert "secret-click" not in notice.text + notice.subject
    assert "/pb" not in notice.text
    assert f"503 x{FAILURE_THRESHOLD}" in notice.text
    assert "postback health --affiliate 1111111" in notice.text
    assert "postback health --affiliate 2222222" in notice.text
    assert "circuit open" in notice.subject
    # AND the opening was counted once for the metrics, by the instance that announced it
    assert sum(d.breakers.drain_transitions().get(CircuitChange.OPENED, 0) for d in instances) == 1
    assert world["store"].circuits[ENDPOINT].status is CircuitStatus.OPEN


def test_a_closing_is_announced_once_with_the_reasons_of_the_opening(world: dict[str, Any], new_message: Any) -> None:
    # GIVEN an endpoint whose circuit two instances saw open
    notifier: RecordingNotifier = world["notifier"]
    clock: Clock = world["clock"]
    first, second = (instance(world["store"], notifier, clock, world["sender"], world["log"]) for _ in range(2))
    world["sender"].answer(URL, SendResult(None, 3000, None, error_kind="timeout"))
    for n in range(FAILURE_THRESHOLD):
        first.dispatch(received(new_message(n, url=URL), n))
        second.dispatch(received(new_message(100 + n, url=URL), 100 + n))
    assert [x.change for x in notifier.notices] == [CircuitChange.OPENED]
    # WHEN the endpoint recovers: after the cool-down one instance takes the trial and succeeds,
    # and the other, which still thinks the circuit open, then sees a success too
    world["sender"].answer(URL, SendResult(200, 5, "OK"))
    clock.now += 61
    assert first.dispatch(received(new_message(200, url=URL), 200)).outcome is DispatchOutcome.DELIVERED
    clock.now += 10
    second.dispatch(received(new_message(201, url=URL), 201))
    first.dispatch(received(new_message(202, url=URL), 202))
    # THEN one "closed" notice follows the "open" one, naming the affiliate and the reasons it failed for
    assert [x.change for x in notifier.notices] == [CircuitChange.OPENED, CircuitChange.CLOSED]
    closed = notifier.notices[1]
    assert (closed.affiliates, closed.failure_reasons) == (("1234567",), (("timeout", FAILURE_THRESHOLD),))
    assert "circuit closed" in closed.subject
    assert world["store"].circuits[ENDPOINT].status is CircuitStatus.CLOSED


def test_a_failed_trial_reopens_without_a_second_notice(world: dict[str, Any], new_message: Any) -> None:
    notifier: RecordingNotifier = world["notifier"]
    clock: Clock = world["clock"]
    dispatcher = instance(world["store"], notifier, clock, world["sender"], world["log"])
    world["sender"].answer(URL, SendResult(503, 5, "down"))
    for n in range(FAILURE_THRESHOLD):
        dispatcher.dispatch(received(new_message(n, url=URL), n))
    # WHEN the trial after each cool-down fails again, twice
    for n in (50, 51):
        clock.now += 3700
        assert dispatcher.dispatch(received(new_message(n, url=URL), n)).outcome is DispatchOutcome.RETRIED
    # THEN the outage was announced once, when it began
    assert [x.change for x in notifier.notices] == [CircuitChange.OPENED]
    assert world["store"].circuits[ENDPOINT].status is CircuitStatus.OPEN


def test_a_failed_publish_neither_loses_nor_doubles_a_postback(world: dict[str, Any], new_message: Any) -> None:
    # GIVEN an alarm topic that refuses every publish
    notifier = RecordingNotifier(fail=True)
    clock: Clock = world["clock"]
    dispatcher = instance(world["store"], notifier, clock, world["sender"], world["log"])
    world["sender"].answer(URL, *[SendResult(503, 5, "down")] * FAILURE_THRESHOLD, SendResult(200, 5, "OK"))
    # WHEN the circuit opens (the notice fails), then closes (it fails again)
    outcomes = [dispatcher.dispatch(received(new_message(n, url=URL), n)).outcome for n in range(FAILURE_THRESHOLD)]
    clock.now += 61
    last = dispatcher.dispatch(received(new_message(99, url=URL), 99))
    # THEN each postback was handled once, as without notices: retried, then delivered
    assert outcomes == [DispatchOutcome.RETRIED] * FAILURE_THRESHOLD
    assert last.outcome is DispatchOutcome.DELIVERED
    assert world["sender"].calls_to(URL) == FAILURE_THRESHOLD + 1
    assert [len(r.attempts) for r in world["log"].records.values()] == [1] * (FAILURE_THRESHOLD + 1)
    # AND both notices were tried once each, never retried into a second message
    assert [x.change for x in notifier.notices] == [CircuitChange.OPENED, CircuitChange.CLOSED]


def test_a_store_that_cannot_be_written_announces_nothing(
    sender: ScriptedSender, clock: Clock, deliveries: FakeDeliveryLog, new_message: Any
) -> None:
    # GIVEN a circuit store that is down: nobody can know whether another instance announced it
    class DownStore(FakeEndpointStore):
        def save(self, circuit: Any, **conditions: Any) -> bool:
            raise InfrastructureError("down")

    notifier = RecordingNotifier()
    dispatcher = instance(DownStore(), notifier, clock, sender, deliveries)
    sender.answer(URL, SendResult(503, 5, "down"))
    for n in range(FAILURE_THRESHOLD + 1):
        dispatcher.dispatch(received(new_message(n, url=URL), n))
    # THEN the breaker still opens locally (the last postback is deferred) but no notice is sent
    assert notifier.notices == []


def test_a_hanging_alarm_topic_cannot_hold_a_batch_past_the_lambda_timeout() -> None:
    # GIVEN the dispatcher's timeouts, its Lambda timeout and the notices' own budget
    from template_support import TEMPLATE

    from postback_ops.template import template_value
    from postback_relay import wiring
    from postback_relay.adapters.sns_notifier import NOTICE_ATTEMPTS, NOTICE_BUDGET_S

    dispatch = TEMPLATE["Resources"]["DispatchFunction"]["Properties"]
    variables = dispatch["Environment"]["Variables"]
    per_postback = float(variables["CONNECT_TIMEOUT_S"]) + float(variables["READ_TIMEOUT_S"])
    workers, batch = (
        int(template_value(TEMPLATE, variables["MAX_WORKERS"])),
        int(template_value(TEMPLATE, dispatch["Events"]["Postbacks"]["Properties"]["BatchSize"])),
    )
    rounds = -(-batch // workers)
    # THEN a batch whose postbacks all hang, each worker also publishing a notice into a hanging
    # topic, still ends inside the function's timeout, with room for DynamoDB and SQS
    assert rounds * (per_postback + NOTICE_BUDGET_S) + 5 <= int(dispatch["Timeout"])
    # AND the notices' client config carries that budget (test_aws_budget: the wiring builds it)
    config: Any = wiring.aws_config(attempts=NOTICE_ATTEMPTS)  # botocore-stubs do not declare its options
    assert config.connect_timeout + config.read_timeout <= NOTICE_BUDGET_S / 2
    assert config.retries["total_max_attempts"] == 2  # the first attempt and one retry

"""What the SQS adapters do when SQS refuses: the dispatcher's retry control turns each refusal
into an InfrastructureError saying which step failed (the batch then leaves the message to come
back), and the outbox's parking keeps the records SQS refused for the next try."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.stub import Stubber
from mypy_boto3_sqs import SQSClient

from postback_relay.adapters.sqs_parked import SqsParkedRecords
from postback_relay.adapters.sqs_retry import SqsRetryControl
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.records import OutboxRecord

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/postback-relay-test-PostbackQueue"
DLQ_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/postback-relay-test-DeadLetterQueue"
PARKED_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/postback-relay-test-OutboxParkedQueue"


@pytest.fixture
def sqs() -> Iterator[tuple[SQSClient, Stubber]]:
    """GIVEN an SQS client whose answers the test writes (nothing leaves the process)."""
    client = boto3.client("sqs", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("operation", "call", "step"),
    [
        ("send_message", lambda control: control.requeue("{}", delay_s=900), "Queueing the next copy"),
        ("change_message_visibility", lambda control: control.delay("receipt-1", 60), "Delaying a postback"),
        (
            "send_message",
            lambda control: control.dead_letter("{}", reason="gone", delivery_id="d-1"),
            "to the DLQ failed",
        ),
    ],
    ids=["requeue", "delay", "dead-letter"],
)
def test_a_refused_retry_step_is_an_infrastructure_error_naming_the_step(
    sqs: tuple[SQSClient, Stubber], operation: str, call: Callable[[SqsRetryControl], None], step: str
) -> None:
    client, stubber = sqs
    # GIVEN SQS refuses the step's call
    stubber.add_client_error(operation, service_error_code="ServiceUnavailable", http_status_code=503)
    control = SqsRetryControl(QUEUE_URL, DLQ_URL, client=client)

    # WHEN the dispatcher takes the step, THEN it fails in the domain's terms, saying which
    with pytest.raises(InfrastructureError) as raised:
        call(control)
    assert step in str(raised.value)


def test_retry_steps_clamp_to_what_sqs_allows(sqs: tuple[SQSClient, Stubber]) -> None:
    client, stubber = sqs
    # GIVEN SQS expects a delay of at most 15 minutes and a visibility of at most 12 hours
    stubber.add_response(
        "send_message", {"MessageId": "m-1"}, {"QueueUrl": QUEUE_URL, "MessageBody": "{}", "DelaySeconds": 900}
    )
    stubber.add_response(
        "change_message_visibility",
        {},
        {"QueueUrl": QUEUE_URL, "ReceiptHandle": "receipt-1", "VisibilityTimeout": 43_200},
    )
    control = SqsRetryControl(QUEUE_URL, DLQ_URL, client=client)

    # WHEN asked for longer waits, THEN the calls carry the ceilings (the stub checks the parameters)
    control.requeue("{}", delay_s=3_600)
    control.delay("receipt-1", 86_400)


def test_a_parked_record_sqs_refuses_is_kept_for_the_next_try(sqs: tuple[SQSClient, Stubber]) -> None:
    client, stubber = sqs
    # GIVEN two unreadable records to park, and SQS taking the first and refusing the second
    records = [
        OutboxRecord(sequence_number="100", conversion_id="T-1#sale", unreadable="no postbacks field", image="{}"),
        OutboxRecord(sequence_number="101", conversion_id="T-2#sale", unreadable="no postbacks field", image="{}"),
    ]
    stubber.add_response("send_message", {"MessageId": "m-1"})
    stubber.add_client_error("send_message", service_error_code="ServiceUnavailable", http_status_code=503)

    # WHEN they are parked
    left = SqsParkedRecords(PARKED_URL, client=client).park(records)

    # THEN only the refused one is left, for the stream to hand over again
    assert [record.conversion_id for record in left] == ["T-2#sale"]

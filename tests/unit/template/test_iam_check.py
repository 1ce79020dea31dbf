"""The IAM sufficiency check itself: it must allow what the roles allow and name what they
do not. The roles come from the SAM translation of (copies of) template.yaml, offline."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from template_support import TEMPLATE

from postback_ops.awsrules import iam, unused_grants
from postback_ops.awsrules.calls import Authorization, authorizations
from postback_ops.awsrules.translate import translate

REGION = "eu-west-1"
ACCOUNT = "123456789012"
POSTBACK_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:postback-relay-test-PostbackQueue"
DELIVERIES = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/postback-relay-test-DeliveriesTable"
CONVERSIONS = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/postback-relay-test-ConversionsTable"


@cache
def _translated() -> dict[str, Any]:
    return translate(TEMPLATE, region=REGION)


def _call(principal: str, action: str, resource: str, kind: str = "function") -> dict[str, str]:
    return {"principal": principal, "action": action, "resource": resource, "kind": kind}


def _evaluate(calls: list[dict[str, str]], translated: dict[str, Any] | None = None, sam: Any = None) -> iam.Report:
    return iam.evaluate(calls, translated or _translated(), sam or TEMPLATE)


def test_batch_operations_are_authorized_as_the_action_iam_checks() -> None:
    # GIVEN the calls the handlers make in batches
    send = list(
        authorizations(
            "sqs", "SendMessageBatch", {"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q"}, region=REGION
        )
    )
    delete = list(authorizations("sqs", "DeleteMessageBatch", {"QueueUrl": "q"}, region=REGION, account="1"))
    writes = list(
        authorizations("dynamodb", "BatchWriteItem", {"RequestItems": {"a": [], "b": []}}, region=REGION, account="1")
    )
    invoke = list(authorizations("lambda", "Invoke", {"FunctionName": "f"}, region=REGION, account="1"))
    # THEN each is checked as IAM checks it
    assert send == [Authorization("sqs:SendMessage", "arn:aws:sqs:eu-west-1:1:q")]
    assert delete == [Authorization("sqs:DeleteMessage", "arn:aws:sqs:eu-west-1:1:q")]
    assert writes == [
        Authorization("dynamodb:BatchWriteItem", "arn:aws:dynamodb:eu-west-1:1:table/a"),
        Authorization("dynamodb:BatchWriteItem", "arn:aws:dynamodb:eu-west-1:1:table/b"),
    ]
    assert invoke == [Authorization("lambda:InvokeFunction", "arn:aws:lambda:eu-west-1:1:function:f")]
    assert list(authorizations("sts", "GetCallerIdentity", {}, region=REGION)) == []
    # AND a schedule that runs as a role needs iam:PassRole on it as well
    schedule = {"Name": "s", "Target": {"RoleArn": "arn:aws:iam::1:role/r", "Arn": "x"}}
    assert list(authorizations("scheduler", "CreateSchedule", schedule, region=REGION, account="1")) == [
        Authorization("scheduler:CreateSchedule", "arn:aws:scheduler:eu-west-1:1:schedule/default/s"),
        Authorization("iam:PassRole", "arn:aws:iam::1:role/r"),
    ]


def test_a_stream_read_is_authorized_on_the_stream_its_shard_iterator_names() -> None:
    # GIVEN GetRecords, which names no stream: DynamoDB Streams' iterators begin with its ARN
    stream = (
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/postback-relay-test-ConversionsTable/stream/2026-11-29T00:00:00.000"
    )
    read = list(authorizations("dynamodbstreams", "GetRecords", {"ShardIterator": f"{stream}|1|AAAA"}, region=REGION))
    opaque = list(authorizations("dynamodbstreams", "GetRecords", {"ShardIterator": "AAAA"}, region=REGION))
    # THEN it is checked on that stream; an iterator of another shape on every resource
    assert read == [Authorization("dynamodb:GetRecords", stream)]
    assert opaque == [Authorization("dynamodb:GetRecords", "*")]


def test_the_template_roles_allow_what_each_function_does() -> None:
    # GIVEN calls each function makes (the names the tests give the stack's resources)
    calls = [
        _call("IngestFunction", "dynamodb:PutItem", CONVERSIONS),
        _call("OutboxFunction", "sqs:SendMessage", POSTBACK_QUEUE),
        _call("DispatchFunction", "dynamodb:UpdateItem", DELIVERIES),
        _call("DispatchFunction", "sqs:ChangeMessageVisibility", POSTBACK_QUEUE),
        _call("TestLinkFunction", "dynamodb:Query", f"{DELIVERIES}/index/by_affiliate"),
        _call(
            "IngestFunction",
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:postback-relay-test-SigningSecret-AbC123",
        ),
        _call(
            "StepFunctions",
            "lambda:InvokeFunction",
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:TestLinkFunction",
            "state_machine",
        ),
    ]
    # THEN none is denied
    report = _evaluate(calls)
    assert report.denied == []


def test_a_call_outside_the_role_is_named_with_function_action_and_resource() -> None:
    # GIVEN the test-link function writing the delivery log it may only read
    report = _evaluate([_call("TestLinkFunction", "dynamodb:PutItem", DELIVERIES)])
    # THEN the check names the function, the action and the resource
    (denied,) = report.denied
    assert str(denied) == (
        f"TestLinkFunction: dynamodb:PutItem on {DELIVERIES} is not allowed by role TestLinkFunctionRole"
    )


def test_removing_a_policy_template_denies_the_call_it_allowed() -> None:
    # GIVEN a template whose outbox function lost its SQSSendMessagePolicy
    sam = copy.deepcopy(TEMPLATE)
    policies = sam["Resources"]["OutboxFunction"]["Properties"]["Policies"]
    sam["Resources"]["OutboxFunction"]["Properties"]["Policies"] = [
        p for p in policies if "SQSSendMessagePolicy" not in p
    ]
    translated = translate(sam, region=REGION)
    # WHEN the outbox function's recorded SendMessageBatch is checked
    report = iam.evaluate([_call("OutboxFunction", "sqs:SendMessage", POSTBACK_QUEUE)], translated, sam)
    # THEN the check names exactly that call
    assert [str(d) for d in report.denied] == [
        f"OutboxFunction: sqs:SendMessage on {POSTBACK_QUEUE} is not allowed by role OutboxFunctionRole"
    ]


def test_the_state_machine_needs_invoke_on_the_function_its_tasks_name() -> None:
    # GIVEN a state machine without its LambdaInvokePolicy
    sam = copy.deepcopy(TEMPLATE)
    sam["Resources"]["TestLinkStateMachine"]["Properties"]["Policies"] = []
    translated = translate(sam, region=REGION)
    # THEN every Task state of its definition is denied, by name
    report = iam.evaluate([], translated, sam)
    denied = {(d.principal, d.action, d.resource) for d in report.denied}
    function_arn = "arn:aws:lambda:{region}:{account}:function:<<TestLinkFunction>>"
    assert ("TestLinkStateMachine (state FollowLink)", "lambda:InvokeFunction", function_arn) in denied
    assert ("TestLinkStateMachine (state RecordVerdict)", "lambda:InvokeFunction", function_arn) in denied


def test_a_call_by_a_function_the_template_does_not_have_is_denied() -> None:
    report = _evaluate([_call("GhostFunction", "sqs:SendMessage", POSTBACK_QUEUE)])
    assert [d.role for d in report.denied] == ["no role in the translated template"]


def test_the_readme_operator_policy_covers_the_cli_and_nothing_else_is_assumed() -> None:
    # GIVEN the CLI's calls: one the README's policy allows, one it does not
    cli = iam.CLI_PRINCIPAL
    allowed = _call(cli, "sqs:SendMessage", POSTBACK_QUEUE, "cli")
    outside = _call(cli, "dynamodb:DeleteTable", DELIVERIES, "cli")
    report = _evaluate([allowed, outside])
    assert [(d.principal, d.action) for d in report.denied] == [(cli, "dynamodb:DeleteTable")]


def test_unused_grants_are_listed_per_principal() -> None:
    report = _evaluate([_call("IngestFunction", "dynamodb:PutItem", CONVERSIONS)])
    # GIVEN only the ingest function's put recorded THEN its other grants are listed, by resource
    assert "ConversionsTable: dynamodb:PutItem" not in report.unused["IngestFunction"]
    assert "SigningSecret: secretsmanager:GetSecretValue" in report.unused["IngestFunction"]


def test_the_generated_operator_policy_writes_resources_as_the_readme_does() -> None:
    policy = iam.policy_for(
        [_call(iam.CLI_PRINCIPAL, "dynamodb:Query", f"{DELIVERIES}/index/by_affiliate", "cli")], TEMPLATE["Resources"]
    )
    assert policy["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": "arn:aws:dynamodb:*:*:table/<stack>-DeliveriesTable-*/index/by_affiliate",
        }
    ]


@pytest.mark.parametrize(
    ("arn", "canonical"),
    [
        (POSTBACK_QUEUE, "arn:aws:sqs:{region}:{account}:<<PostbackQueue>>"),
        (
            f"{DELIVERIES}/index/by_affiliate",
            "arn:aws:dynamodb:{region}:{account}:table/<<DeliveriesTable>>/index/by_affiliate",
        ),
        (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:local-TestLinkFunction",
            "arn:aws:lambda:{region}:{account}:function:<<TestLinkFunction>>",
        ),
        (f"arn:aws:sqs:{REGION}:{ACCOUNT}:some-other-queue", "arn:aws:sqs:{region}:{account}:some-other-queue"),
    ],
)
def test_recorded_names_map_back_to_their_logical_ids(arn: str, canonical: str) -> None:
    assert iam.canonical_resource(arn, TEMPLATE["Resources"]) == canonical


def _with_stream_consumer(destination: dict[str, Any]) -> dict[str, Any]:
    """A copy of the template where the test-link function also reads ConversionsTable's stream."""
    sam = copy.deepcopy(TEMPLATE)
    sam["Resources"]["ConversionsTable"]["Properties"]["StreamSpecification"] = {"StreamViewType": "NEW_IMAGE"}
    sam["Resources"]["TestLinkFunction"]["Properties"]["Events"] = {}
    sam["Resources"]["TestLinkFunction"]["Properties"]["Events"]["Changes"] = {
        "Type": "DynamoDB",
        "Properties": {
            "Stream": {"Fn::GetAtt": ["ConversionsTable", "StreamArn"]},
            "StartingPosition": "LATEST",
            "DestinationConfig": {"OnFailure": destination},
        },
    }
    return sam


def test_an_event_source_needs_its_polling_and_on_failure_permissions_in_the_function_role() -> None:
    # GIVEN a stream event source whose on-failure queue SAM is not told about (no Type)
    sam = _with_stream_consumer({"Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}})
    report = iam.evaluate([], translate(sam, region=REGION), sam)
    # THEN the send to the on-failure queue is named as denied; the stream reads are allowed
    assert [(d.principal, d.action, d.resource) for d in report.denied] == [
        (
            "TestLinkFunction (event source TestLinkFunctionChanges)",
            "sqs:SendMessage",
            "arn:aws:sqs:{region}:{account}:<<DeadLetterQueue>>",
        )
    ]
    # WHEN SAM is told the destination is a queue, it grants the send itself
    sam = _with_stream_consumer({"Type": "SQS", "Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}})
    assert iam.evaluate([], translate(sam, region=REGION), sam).denied == []


# --- the README's operator policy: each statement is needed ----------------------------------


def _concrete(pattern: str) -> str:
    """A resource of the README's policy as a call the CLI makes names it (the tests' stack)."""
    text = re.sub(r"^arn:aws:(\w+):\*:\*:", rf"arn:aws:\1:{REGION}:{ACCOUNT}:", pattern)
    text = re.sub(r"<stack>-(\w+)-\*", r"postback-relay-test-\1", text)
    text = text.replace("<stack>", "postback-relay-test")
    text = re.sub(r"\*(\w+)\*", r"postback-relay-test-\1", text)
    return text.replace("/stream/*", "/stream/2026-11-29T00:00:00.000").replace("*", "run-1")


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _operator_calls(policy: dict[str, Any]) -> list[list[dict[str, str]]]:
    """Per statement, one CLI call of each of its actions on its resources."""
    return [
        [
            _call(iam.CLI_PRINCIPAL, action, _concrete(resource), "cli")
            for action in statement["Action"]
            for resource in (
                [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
            )
        ]
        for statement in policy["Statement"]
    ]


OPERATOR_POLICY = iam.operator_policy()


@pytest.mark.parametrize(
    "dropped", range(len(OPERATOR_POLICY["Statement"])), ids=lambda i: OPERATOR_POLICY["Statement"][i]["Resource"]
)
def test_dropping_a_statement_of_the_readme_operator_policy_denies_the_calls_it_allowed(
    dropped: int, tmp_path: Path
) -> None:
    # GIVEN the CLI's calls on every resource the README's operator policy names, all allowed
    calls = _operator_calls(OPERATOR_POLICY)
    every_call = [call for statement in calls for call in statement]
    assert _evaluate(every_call).denied == []
    # AND a README whose policy lost one statement
    readme = tmp_path / "README.md"
    policy = copy.deepcopy(OPERATOR_POLICY)
    del policy["Statement"][dropped]
    text = iam.README.read_text(encoding="utf-8")
    head, tail = text.split("<!-- operator-policy -->", 1)
    block = tail.split("```json", 1)[1].split("```", 1)[0]
    readme.write_text(head + "<!-- operator-policy -->" + tail.replace(block, "\n" + json.dumps(policy) + "\n", 1))

    # WHEN the same calls are checked against it
    report = iam.evaluate(every_call, _translated(), TEMPLATE, readme=readme)

    # THEN exactly the calls of the dropped statement are denied, each named
    assert sorted((d.principal, d.action, d.resource) for d in report.denied) == sorted(
        (c["principal"], c["action"], c["resource"]) for c in calls[dropped]
    )


# --- grants no call uses ---------------------------------------------------------------------


def test_a_grant_no_call_uses_fails_the_check_and_says_what_to_add() -> None:
    # GIVEN the ingest function granted a read of TestRunsTable, which its code never makes
    sam = copy.deepcopy(TEMPLATE)
    sam["Resources"]["IngestFunction"]["Properties"]["Policies"].append(
        {"DynamoDBReadPolicy": {"TableName": {"Ref": "TestRunsTable"}}}
    )
    before = [
        g for g in _evaluate([]).unused_grants if g.resource == "TestRunsTable" and g.principal == "IngestFunction"
    ]
    assert before == []

    # WHEN the grants are checked
    report = iam.evaluate([], translate(sam, region=REGION), sam)
    added = [
        g
        for g in unused_grants.unexplained(report.unused_grants)
        if (g.principal, g.resource) == ("IngestFunction", "TestRunsTable")
    ]

    # THEN each of its actions is an unexplained unused grant, named with the policy it came
    # from, and the failure says the line to add to the allow-list if it must stay
    assert {g.action for g in added} == {
        "dynamodb:GetItem",
        "dynamodb:Scan",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "dynamodb:DescribeTable",
    }
    assert {g.policy for g in added} == {"DynamoDBReadPolicy"}
    (line, *_) = unused_grants.failures(sorted(added, key=lambda g: g.action))
    assert line.startswith("UNUSED: IngestFunction: dynamodb:BatchGetItem on TestRunsTable (from DynamoDBReadPolicy)")
    assert line.endswith('Unused("IngestFunction", "TestRunsTable", ("dynamodb:BatchGetItem",), "<why it must stay>"),')


def test_every_allowed_unused_grant_carries_a_reason_and_is_granted() -> None:
    # GIVEN every grant of the template's roles and the README's policy (no call recorded)
    granted = {(g.principal, g.resource, g.action) for g in _evaluate([]).unused_grants}
    for entry in unused_grants.ALLOWED:
        # THEN each allowed one has a reason of its own and names a grant that exists
        assert len(entry.reason) > 20 and "<why" not in entry.reason, entry
        for action in entry.actions:
            assert (entry.principal, entry.resource, action) in granted, entry


def test_every_front_is_checked_and_a_denial_is_named_once() -> None:
    # GIVEN the ingest function putting a conversion (allowed) and writing the delivery log (not)
    calls = [
        _call("IngestFunction", "dynamodb:PutItem", CONVERSIONS),
        _call("IngestFunction", "dynamodb:PutItem", DELIVERIES),
    ]
    # WHEN the calls are checked against the template deployed with each IngestFront
    report = iam.evaluate_every_variant(calls, copy.deepcopy(TEMPLATE))
    # THEN the conversion put is allowed under both, and the other is denied, named once
    (denied,) = report.denied
    assert (denied.principal, denied.action, denied.resource) == ("IngestFunction", "dynamodb:PutItem", DELIVERIES)
